package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/routekit/routekit/pool"
)

// Subscriber receives vLLM KV events over ZeroMQ and applies them to an
// Index, in order per source. It supports both deployment topologies:
// connecting a SUB socket to each engine's PUB socket (vLLM's default, the
// engine binds), and binding one SUB socket that many engines connect to
// (llm-d's centralized mode), identifying each engine by its topic
// kv@<endpoint>@<model>.
//
// Per source it tracks sequence numbers: a gap triggers a replay request to
// the engine's replay socket (bounded in concurrency and time); a sequence
// that goes back (engine restart) or a gap that cannot be filled clears the
// source's blocks. Every decoded event reaches the Index exactly once, in
// order: duplicate stores of one hash (vLLM holding it in several physical
// blocks, or its offloading connector storing it again) and their removals
// all pass through, and the Index counts the copies (kvcache.Index does).
//
// A Subscriber is safe for concurrent use. Run does the work; Add and
// Remove may be called before or during Run.
type Subscriber struct {
	index Index
	cfg   config

	mu       sync.Mutex         // guards sources, byTopic, running, pool-managed set
	sources  map[string]*source // by Source.ID
	byTopic  map[topicKey]*source
	running  *runState       // set while Run's goroutines run
	active   bool            // a Run call is in progress
	fromPool map[string]bool // IDs added by pool reconciliation

	seed  maphash.Seed
	stats counters
}

// Source is one KV-event publisher: one vLLM engine core, that is one
// endpoint and data-parallel rank.
// It is a plain value, safe to copy and to share read-only.
type Source struct {
	// ID names the source in the Index, for example a pool.Endpoint's ID.
	ID string
	// Endpoint is the engine's PUB address to connect to, such as
	// "tcp://10.0.0.7:5557" (already offset by the rank). Empty for sources
	// that connect to the Subscriber's bound socket.
	Endpoint string
	// ReplayEndpoint is the engine's replay ROUTER address; empty means the
	// engine has none, and gaps cannot be filled.
	ReplayEndpoint string
}

type config struct {
	pool        *pool.Pool
	poolSource  func(*pool.Endpoint) (Source, bool)
	bind        string
	bindRanks   int
	resolve     func(topic string, rank int) (Source, bool)
	topic       string
	shards      int
	maxGap      uint64
	maxReplays  int
	replayIdle  time.Duration
	replayTotal time.Duration
	replayCool  time.Duration
	maxPending  int
	dialRetry   time.Duration
	clock       func() time.Time
}

// Option configures a Subscriber.
// Options are immutable; one may be shared by several NewSubscriber
// calls, also concurrently.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithPool makes the pool's membership drive the subscriptions: every
// endpoint becomes a Source through src (nil means PoolSource(5557, 0)),
// endpoints added to the pool are subscribed, and removed ones are
// unsubscribed and dropped from the Index. Run reacts to each membership
// change as it is published (it waits on pool.Snapshot.Changed; it does not
// poll). Removing a pool-driven source with Remove lasts until the pool's
// membership next changes. In the bind topology, topics
// resolve to the pool endpoint whose Address (or ID) is the topic's
// endpoint and whose DPRank is the receiving socket's rank; messages from
// engines not in the pool are ignored.
func WithPool(p *pool.Pool, src func(*pool.Endpoint) (Source, bool)) Option {
	return optionFunc(func(c *config) {
		c.pool = p
		if src == nil {
			src = PoolSource(5557, 0)
		}
		c.poolSource = src
	})
}

// WithBind adds the bind topology: Run binds a SUB socket on endpoint, and
// on endpoint's port + r for each data-parallel rank r < dpRanks (vLLM
// offsets the port its publisher connects to by its rank).
func WithBind(endpoint string, dpRanks int) Option {
	return optionFunc(func(c *config) { c.bind, c.bindRanks = endpoint, max(dpRanks, 1) })
}

// WithResolve sets how the bind topology maps a message's topic and the
// rank of the socket it arrived on to a Source. The default parses
// kv@<endpoint>@<model>: with a pool it finds the endpoint there (see
// WithPool); without one the Source ID is <endpoint>, or
// <endpoint>@dp<rank> for ranks above 0, without replay.
func WithResolve(f func(topic string, rank int) (Source, bool)) Option {
	return optionFunc(func(c *config) { c.resolve = f })
}

// WithTopic sets the SUB subscription prefix (default "", every message:
// vLLM's default topic is empty). llm-d's publishers use "kv@".
func WithTopic(prefix string) Option { return optionFunc(func(c *config) { c.topic = prefix }) }

// WithShards sets how many goroutines apply events (default 8). Each source
// is applied by one shard, in order.
func WithShards(n int) Option { return optionFunc(func(c *config) { c.shards = n }) }

// WithMaxGap sets the longest gap, in messages, worth replaying (default
// 10000, vLLM's replay buffer). A longer gap, or any gap that replay cannot
// fill, clears the source's blocks. A gap with no replay socket is counted
// and the events after it applied; it clears only if longer than this.
func WithMaxGap(n uint64) Option { return optionFunc(func(c *config) { c.maxGap = n }) }

// WithReplayLimits bounds replay: at most concurrent requests at once
// across all sources (default 8), idle is how long to wait for each reply
// (default 2 s), total the whole replay, retries included (default 2 min).
// An attempt that fails is retried after 100 ms from where it stopped,
// up to three times in a row without progress. After a failed replay a
// source is not replayed again for 30 s.
func WithReplayLimits(concurrent int, idle, total time.Duration) Option {
	return optionFunc(func(c *config) { c.maxReplays, c.replayIdle, c.replayTotal = concurrent, idle, total })
}

// WithClock sets the clock used for lag and replay cool-down (default
// time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }

// PoolSource returns the default mapping of pool endpoints to sources:
// the host of the endpoint's Address, with KV events on pubPort + DPRank
// and, if replayPort is not 0, replay on replayPort + DPRank.
func PoolSource(pubPort, replayPort int) func(*pool.Endpoint) (Source, bool) {
	return func(ep *pool.Endpoint) (Source, bool) {
		host := ep.Address
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		if host == "" {
			return Source{}, false
		}
		s := Source{ID: ep.ID, Endpoint: fmt.Sprintf("tcp://%s:%d", host, pubPort+ep.DPRank)}
		if replayPort != 0 {
			s.ReplayEndpoint = fmt.Sprintf("tcp://%s:%d", host, replayPort+ep.DPRank)
		}
		return s, true
	}
}

// ErrRunning is returned by Run when the Subscriber is already running. It is
// a wiring bug: call Run once, from the goroutine that owns the Subscriber.
var ErrRunning = errors.New("kvevents: subscriber already running")

// NewSubscriber returns a Subscriber applying events to index.
func NewSubscriber(index Index, opts ...Option) (*Subscriber, error) {
	if index == nil {
		return nil, errors.New("kvevents: nil index")
	}
	c := config{
		shards:      8,
		maxGap:      10000,
		maxReplays:  8,
		replayIdle:  2 * time.Second,
		replayTotal: 2 * time.Minute,
		replayCool:  30 * time.Second,
		maxPending:  10000,
		dialRetry:   250 * time.Millisecond,
		clock:       time.Now,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.shards < 1 || c.maxReplays < 1 || c.replayIdle <= 0 || c.replayTotal <= 0 {
		return nil, errors.New("kvevents: shards and replay limits must be positive")
	}
	s := &Subscriber{
		index:    index,
		cfg:      c,
		sources:  make(map[string]*source),
		byTopic:  make(map[topicKey]*source),
		fromPool: make(map[string]bool),
		seed:     maphash.MakeSeed(),
	}
	return s, nil
}

// source is one subscribed publisher. The fields after the marker are
// owned by the source's shard goroutine.
type source struct {
	Source
	shard  int
	cancel context.CancelFunc // stops the connect reader; nil otherwise

	// published by the shard for SourceStats
	pub sourceCounters

	// owned by the shard
	dropped  bool
	has      bool   // last is valid
	last     uint64 // last applied sequence number
	hasLive  bool   // lastLive is valid
	lastLive uint64 // newest sequence number received live
	// disconnected: the connection dropped since the last live message
	disconnected bool
	catchUps     int // proactive replays repeated while no live message came
	replaying    bool
	pending      []message
	coolUntil    time.Time
}

type topicKey struct {
	topic string
	rank  int
}

type message struct {
	seq     uint64
	payload []byte
	// restart marks a live message, received while a replay ran, whose
	// sequence number showed that the publisher had restarted.
	restart bool
}

type itemKind uint8

const (
	itemLive itemKind = iota
	itemReplay
	itemDrop
	itemDisconnect
	itemConnected
)

type item struct {
	kind itemKind
	src  *source
	msg  message
	// itemReplay
	from      uint64
	replayed  []message
	err       error
	proactive bool // asked on connecting, not for a gap
}

type runState struct {
	ctx    context.Context
	shards []chan item
	sem    chan struct{}
	wg     sync.WaitGroup
}

// Add subscribes to src (replacing a source with the same ID, whose
// blocks are dropped). In the connect topology src.Endpoint must be set.
func (s *Subscriber) Add(src Source) error {
	if src.ID == "" {
		return errors.New("kvevents: source with an empty ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.sources[src.ID]; ok {
		if old.Source == src {
			return nil
		}
		s.removeLocked(old)
	}
	s.addLocked(src)
	return nil
}

func (s *Subscriber) addLocked(src Source) *source {
	h := maphash.String(s.seed, src.ID)
	sr := &source{Source: src, shard: int(h % uint64(s.cfg.shards))}
	s.sources[src.ID] = sr
	if s.running != nil && src.Endpoint != "" {
		s.startConnect(s.running, sr)
	}
	return sr
}

// Remove unsubscribes the source with ID id and drops its blocks from the
// Index, after any of its events already received. It reports whether
// the source was known.
func (s *Subscriber) Remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr, ok := s.sources[id]
	if ok {
		s.removeLocked(sr)
	}
	return ok
}

func (s *Subscriber) removeLocked(sr *source) {
	delete(s.sources, sr.ID)
	delete(s.fromPool, sr.ID)
	for k, v := range s.byTopic {
		if v == sr {
			delete(s.byTopic, k)
		}
	}
	if sr.cancel != nil {
		sr.cancel()
	}
	rs := s.running
	if rs == nil {
		if err := s.index.Drop(sr.ID); err != nil {
			s.stats.applyErrors.Add(1)
		}
		return
	}
	// Ordered after the source's queued messages; never blocks the caller
	// (which may be a pool callback) on a busy shard.
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		select {
		case rs.shards[sr.shard] <- item{kind: itemDrop, src: sr}:
		case <-rs.ctx.Done():
			if err := s.index.Drop(sr.ID); err != nil {
				s.stats.applyErrors.Add(1) // counted as when no Run is under way
			}
		}
	}()
}

// Run subscribes and applies events until ctx is done; then it closes its
// sockets and returns nil. It returns an error if a bind socket cannot be
// bound, and ErrRunning if the Subscriber is already running.
func (s *Subscriber) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.active {
		s.mu.Unlock()
		return ErrRunning
	}
	s.active = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active = false
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &runState{ctx: ctx, sem: make(chan struct{}, s.cfg.maxReplays)}
	for range s.cfg.shards {
		rs.shards = append(rs.shards, make(chan item, 1024))
	}
	var binds []zmq4.Socket
	if s.cfg.bind != "" {
		for r := range s.cfg.bindRanks {
			ep, err := OffsetEndpoint(s.cfg.bind, r)
			if err != nil {
				closeAll(binds)
				return err
			}
			sock := zmq4.NewSub(ctx)
			_ = sock.SetOption(zmq4.OptionSubscribe, s.cfg.topic)
			if err := sock.Listen(ep); err != nil {
				sock.Close()
				closeAll(binds)
				return fmt.Errorf("kvevents: bind %s: %w", ep, err)
			}
			binds = append(binds, sock)
		}
	}
	s.mu.Lock()
	s.running = rs
	for _, sr := range s.sources {
		if sr.Endpoint != "" {
			s.startConnect(rs, sr)
		}
	}
	s.mu.Unlock()

	for i := range rs.shards {
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			s.shardLoop(rs, rs.shards[i])
		}()
	}
	for r, sock := range binds {
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			s.bindLoop(rs, sock, r)
		}()
	}
	if s.cfg.pool != nil {
		// Follow the pool: every published membership change (addition,
		// removal, new address) closes the snapshot's Changed channel, so
		// nothing is polled and no change is missed; changes made while
		// reconciling coalesce into one more pass over the newest snapshot.
		snap := s.cfg.pool.Snapshot()
		for {
			s.reconcile(snap)
			select {
			case <-ctx.Done():
			case <-snap.Changed():
				snap = s.cfg.pool.Snapshot()
				continue
			}
			break
		}
	} else {
		<-ctx.Done()
	}

	s.mu.Lock()
	s.running = nil
	for _, sr := range s.sources {
		if sr.cancel != nil {
			sr.cancel()
			sr.cancel = nil
		}
	}
	s.mu.Unlock()
	closeAll(binds)
	rs.wg.Wait()
	return nil
}

func closeAll(socks []zmq4.Socket) {
	for _, s := range socks {
		s.Close()
	}
}

// reconcile makes the sources follow the pool's membership in snap.
func (s *Subscriber) reconcile(snap *pool.Snapshot) {
	want := make(map[string]Source, snap.Len())
	for _, ep := range snap.Endpoints() {
		if src, ok := s.cfg.poolSource(ep); ok {
			src.ID = ep.ID
			want[ep.ID] = src
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.fromPool {
		if w, ok := want[id]; !ok || (s.cfg.bind == "" && s.sources[id] != nil && s.sources[id].Source != w) {
			if sr := s.sources[id]; sr != nil {
				s.removeLocked(sr)
			}
		}
	}
	if s.cfg.bind != "" {
		return // bind-topology sources are created by their first message
	}
	for id, src := range want {
		if _, ok := s.sources[id]; !ok {
			s.addLocked(src)
			s.fromPool[id] = true
		}
	}
}

// startConnect starts the reader of a connect-topology source; s.mu held.
func (s *Subscriber) startConnect(rs *runState, sr *source) {
	ctx, cancel := context.WithCancel(rs.ctx)
	sr.cancel = cancel
	sock := zmq4.NewSub(ctx, zmq4.WithAutomaticReconnect(true), zmq4.WithDialerMaxRetries(-1),
		zmq4.WithDialerRetry(s.cfg.dialRetry))
	_ = sock.SetOption(zmq4.OptionSubscribe, s.cfg.topic)
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		if err := sock.Dial(sr.Endpoint); err != nil {
			return // only when ctx is done: retries are unlimited
		}
		select {
		case rs.shards[sr.shard] <- item{kind: itemConnected, src: sr}:
		case <-ctx.Done():
			return
		}
		s.readLoop(ctx, rs, sock, func(topic []byte) *source { return sr }, sr)
	}()
	go func() { <-ctx.Done(); sock.Close() }()
}

func (s *Subscriber) bindLoop(rs *runState, sock zmq4.Socket, rank int) {
	s.readLoop(rs.ctx, rs, sock, func(topic []byte) *source { return s.resolveTopic(string(topic), rank) }, nil)
}

// readLoop receives messages and hands them to their source's shard. A
// receive error (zmq4 reports each disconnection) is retried with backoff;
// for a connect-topology socket it is reported to the shard of peer.
func (s *Subscriber) readLoop(ctx context.Context, rs *runState, sock zmq4.Socket, route func(topic []byte) *source, peer *source) {
	backoff := time.Millisecond
	for {
		msg, err := sock.Recv()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if peer != nil {
				select {
				case rs.shards[peer.shard] <- item{kind: itemDisconnect, src: peer}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 200*time.Millisecond)
			continue
		}
		backoff = time.Millisecond
		s.stats.messages.Add(1)
		if len(msg.Frames) != 3 || len(msg.Frames[1]) != 8 {
			s.stats.decodeErrors.Add(1)
			continue
		}
		sr := route(msg.Frames[0])
		if sr == nil {
			s.stats.unknownSources.Add(1)
			continue
		}
		it := item{kind: itemLive, src: sr, msg: message{seq: binary.BigEndian.Uint64(msg.Frames[1]), payload: msg.Frames[2]}}
		select {
		case rs.shards[sr.shard] <- it:
		case <-ctx.Done():
			return
		}
	}
}

// resolveTopic finds or creates the bind-topology source of a topic.
func (s *Subscriber) resolveTopic(topic string, rank int) *source {
	k := topicKey{topic, rank}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sr, ok := s.byTopic[k]; ok {
		return sr
	}
	src, ok := s.defaultResolve(topic, rank)
	if s.cfg.resolve != nil {
		src, ok = s.cfg.resolve(topic, rank)
	}
	if !ok || src.ID == "" {
		return nil
	}
	src.Endpoint = "" // it connects to us
	sr, exists := s.sources[src.ID]
	if !exists || sr.Source != src {
		if exists {
			s.removeLocked(sr)
		}
		sr = s.addLocked(src)
		if s.cfg.pool != nil {
			s.fromPool[src.ID] = true
		}
	}
	s.byTopic[k] = sr
	return sr
}

// ParseTopic splits an llm-d style topic kv@<endpoint>@<model>.
func ParseTopic(topic string) (endpoint, model string, ok bool) {
	rest, found := strings.CutPrefix(topic, "kv@")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '@')
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

func (s *Subscriber) defaultResolve(topic string, rank int) (Source, bool) {
	ep, _, ok := ParseTopic(topic)
	if !ok {
		return Source{}, false
	}
	if s.cfg.pool == nil {
		id := ep
		if rank > 0 {
			id = fmt.Sprintf("%s@dp%d", ep, rank)
		}
		return Source{ID: id}, true
	}
	for _, e := range s.cfg.pool.Snapshot().Endpoints() {
		if (e.Address == ep || e.ID == ep) && e.DPRank == rank {
			src, ok := s.cfg.poolSource(e)
			src.ID = e.ID
			return src, ok
		}
	}
	return Source{}, false
}

// shardLoop applies the items of one shard in order.
func (s *Subscriber) shardLoop(rs *runState, ch chan item) {
	var b Batch
	for {
		select {
		case <-rs.ctx.Done():
			return
		case it := <-ch:
			switch it.kind {
			case itemLive:
				s.live(rs, it.src, it.msg, &b)
			case itemReplay:
				s.replayDone(rs, it, &b)
			case itemDisconnect:
				it.src.disconnected = true
			case itemConnected:
				// Fetch what the publisher buffered before we subscribed, as
				// llm-d does: no later message may come to reveal the gap.
				// Until a live message arrives, this repeats a few times (see
				// replayDone) to cover the window in which the subscription
				// has not reached the publisher yet.
				sr := it.src
				if !sr.dropped && !sr.hasLive && !sr.replaying && sr.ReplayEndpoint != "" && !s.cfg.clock().Before(sr.coolUntil) {
					from := uint64(0)
					if sr.has {
						from = sr.last + 1
					}
					s.startReplay(rs, sr, from, nil)
				}
			case itemDrop:
				it.src.dropped = true
				it.src.pending = nil
				if err := s.index.Drop(it.src.ID); err != nil {
					s.stats.applyErrors.Add(1)
				}
			}
		}
	}
}

// live handles one message as it arrives from the publisher.
func (s *Subscriber) live(rs *runState, sr *source, m message, b *Batch) {
	if sr.dropped {
		return
	}
	// Two watermarks: lastLive is the newest sequence seen live, last the
	// newest applied (which replay can move past live messages still in
	// flight). Only a live sequence that goes back means a restart.
	// After a disconnection, anything but the next sequence number means
	// the publisher may have restarted and advanced past the old sequence
	// before we reconnected: treat it as a restart too.
	restarted := sr.hasLive && (m.seq <= sr.lastLive || (sr.disconnected && m.seq != sr.lastLive+1))
	sr.hasLive, sr.lastLive, sr.disconnected = true, m.seq, false
	if sr.replaying {
		switch {
		case restarted:
			// What waited came from the publisher's previous life, which
			// the restart clears anyway; replayDone handles the restart
			// after applying the replay.
			m.restart = true
			sr.pending = append(sr.pending[:0], m)
		case len(sr.pending) < s.cfg.maxPending:
			sr.pending = append(sr.pending, m)
		default:
			s.stats.missed.Add(1)
		}
		return
	}
	s.handle(rs, sr, m, restarted, b)
}

// handle applies, replays or drops one live message, in sequence order;
// restarted says that its sequence number showed a publisher restart.
func (s *Subscriber) handle(rs *runState, sr *source, m message, restarted bool, b *Batch) {
	canReplay := sr.ReplayEndpoint != "" && !s.cfg.clock().Before(sr.coolUntil)
	switch {
	case restarted:
		// The sequence went back: the publisher restarted and its cache with
		// it.
		s.stats.resets.Add(1)
		s.clear(sr)
		if m.seq > 0 && canReplay && m.seq <= s.cfg.maxGap {
			s.startReplay(rs, sr, 0, &m)
			return
		}
	case !sr.has:
		// First message: fetch what the publisher still buffers before it.
		if m.seq > 0 && canReplay && m.seq <= s.cfg.maxGap {
			s.startReplay(rs, sr, 0, &m)
			return
		}
	case m.seq <= sr.last:
		return // already applied from a replay
	case m.seq == sr.last+1:
	default:
		gap := m.seq - sr.last - 1
		s.stats.gaps.Add(1)
		sr.pub.gaps.Add(1)
		s.stats.missed.Add(gap)
		if canReplay && gap <= s.cfg.maxGap {
			s.startReplay(rs, sr, sr.last+1, &m)
			return
		}
		if gap > s.cfg.maxGap || sr.ReplayEndpoint != "" {
			s.clear(sr)
		}
	}
	s.apply(sr, m, b)
}

// clear forgets a source's blocks and sequence state.
func (s *Subscriber) clear(sr *source) {
	s.stats.clears.Add(1)
	sr.pub.clears.Add(1)
	sr.has = false
	if err := s.index.Clear(sr.ID); err != nil {
		s.stats.applyErrors.Add(1)
	}
}

// apply decodes one message and applies its events.
func (s *Subscriber) apply(sr *source, m message, b *Batch) {
	sr.has, sr.last = true, m.seq
	sr.pub.lastSeq.Store(m.seq)
	if err := Decode(m.payload, b); err != nil {
		s.stats.decodeErrors.Add(1)
		return
	}
	s.stats.batches.Add(1)
	s.stats.skipped.Add(uint64(b.Skipped))
	if b.TS > 0 && !math.IsInf(b.TS, 0) {
		sec, frac := math.Modf(b.TS)
		lag := s.cfg.clock().Sub(time.Unix(int64(sec), int64(frac*1e9)))
		s.stats.lagNanos.Store(int64(lag))
		sr.pub.lagNanos.Store(int64(lag))
	}
	for i := range b.Events {
		err := s.index.Apply(sr.ID, &b.Events[i])
		switch {
		case err == nil:
			s.stats.applied.Add(1)
			sr.pub.applied.Add(1)
		case errors.Is(err, ErrNotIndexed):
			s.stats.skipped.Add(1)
		default:
			s.stats.applyErrors.Add(1)
		}
	}
}

// startReplay asks the source's replay socket for messages from `from`;
// live messages wait in pending meanwhile.
// A nil trigger marks a proactive replay, asked on connecting.
func (s *Subscriber) startReplay(rs *runState, sr *source, from uint64, trigger *message) {
	s.stats.replays.Add(1)
	sr.replaying = true
	sr.pending = sr.pending[:0]
	if trigger != nil {
		sr.pending = append(sr.pending, *trigger)
	}
	ep := sr.ReplayEndpoint
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		it := item{kind: itemReplay, src: sr, from: from, proactive: trigger == nil}
		select {
		case rs.sem <- struct{}{}:
			it.replayed, it.err = s.fetchReplay(rs.ctx, ep, from)
			<-rs.sem
		case <-rs.ctx.Done():
			return
		}
		select {
		case rs.shards[sr.shard] <- it:
		case <-rs.ctx.Done():
		}
	}()
}

var (
	errReplayTimeout = errors.New("kvevents: replay timed out")
	errReplayTooLong = errors.New("kvevents: replay longer than the gap limit")
)

// Catch-up replays after connecting, until the first live message.
const (
	maxCatchUps  = 3
	catchUpDelay = 500 * time.Millisecond
)

// fetchReplay fetches the messages from `from` on, within the total time
// limit. A failed attempt is retried after 100 ms from where it stopped;
// three attempts in a row without progress give up.
func (s *Subscriber) fetchReplay(ctx context.Context, endpoint string, from uint64) ([]message, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.replayTotal)
	defer cancel()
	// No replay is worth more messages than the longest gap and the live
	// messages that may wait meanwhile: a publisher that sends more (or
	// never sends the end marker) must not grow memory without bound.
	limit := uint64(math.MaxUint64)
	if extra := uint64(s.cfg.maxPending) + 1; s.cfg.maxGap < limit-extra {
		limit = s.cfg.maxGap + extra
	}
	var out []message
	for stalled := 0; ; {
		got, err := s.replayAttempt(ctx, endpoint, from, limit-uint64(len(out)))
		out = append(out, got...)
		if err == nil || errors.Is(err, errReplayTooLong) {
			return out, err
		}
		if len(got) > 0 {
			from, stalled = got[len(got)-1].seq+1, 0
		} else {
			stalled++
		}
		if stalled >= 3 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replayAttempt runs one replay exchange over a DEALER socket: it sends
// ["", from] and collects replies in either of vLLM's layouts until the
// end marker, within the idle time limit and at most limit messages.
func (s *Subscriber) replayAttempt(ctx context.Context, endpoint string, from, limit uint64) ([]message, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sock := zmq4.NewDealer(ctx, zmq4.WithDialerTimeout(s.cfg.replayIdle), zmq4.WithDialerMaxRetries(0))
	defer sock.Close()
	type recvd struct {
		msg zmq4.Msg
		err error
	}
	ch := make(chan recvd, 16)
	go func() {
		if err := sock.Dial(endpoint); err != nil {
			ch <- recvd{err: err}
			return
		}
		if err := sock.Send(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, from))); err != nil {
			ch <- recvd{err: err}
			return
		}
		for {
			m, err := sock.Recv()
			select {
			case ch <- recvd{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var out []message
	idle := time.NewTimer(s.cfg.replayIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%w: %s", errReplayTimeout, endpoint)
		case <-idle.C:
			return out, fmt.Errorf("%w: %s: no reply for %v", errReplayTimeout, endpoint, s.cfg.replayIdle)
		case r := <-ch:
			if r.err != nil {
				return out, fmt.Errorf("kvevents: replay from %s: %w", endpoint, r.err)
			}
			idle.Reset(s.cfg.replayIdle)
			f := r.msg.Frames
			if len(f) > 0 && len(f[0]) == 0 {
				f = f[1:] // the empty delimiter
			}
			var seq, payload []byte
			switch len(f) {
			case 3: // [topic, seq, payload], vLLM ≥ 0.26
				seq, payload = f[1], f[2]
			case 2: // [seq, payload]
				seq, payload = f[0], f[1]
			default:
				return out, fmt.Errorf("kvevents: replay from %s: reply of %d frames", endpoint, len(f))
			}
			if len(seq) != 8 {
				return out, fmt.Errorf("kvevents: replay from %s: %d-byte sequence frame", endpoint, len(seq))
			}
			n := binary.BigEndian.Uint64(seq)
			if n == EndSeq {
				return out, nil
			}
			if len(out) > 0 && n <= out[len(out)-1].seq {
				continue // out of order: ignore
			}
			if uint64(len(out)) >= limit {
				return out, fmt.Errorf("%w: %s: more than %d messages", errReplayTooLong, endpoint, limit)
			}
			s.stats.replayed.Add(1)
			out = append(out, message{seq: n, payload: payload})
		}
	}
}

// replayDone applies a replay's messages, then the live messages that
// waited for it.
func (s *Subscriber) replayDone(rs *runState, it item, b *Batch) {
	sr := it.src
	sr.replaying = false
	if sr.dropped {
		return
	}
	if it.proactive && it.err == nil && !sr.hasLive && sr.catchUps < maxCatchUps {
		sr.catchUps++
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			select {
			case <-time.After(catchUpDelay):
			case <-rs.ctx.Done():
				return
			}
			select {
			case rs.shards[sr.shard] <- item{kind: itemConnected, src: sr}:
			case <-rs.ctx.Done():
			}
		}()
	}
	pending := sr.pending
	sr.pending = nil
	// A proactive replay returns whatever history is buffered, possibly
	// none; a gap replay must reach back to the gap.
	ok := it.err == nil && (it.proactive || (len(it.replayed) > 0 && it.replayed[0].seq <= it.from))
	if !ok {
		// The events in the gap are lost: the blocks we hold may be stale.
		// Asking again at once would get the same answer (and the live
		// messages below would ask again): cool down.
		s.stats.replayFailures.Add(1)
		sr.coolUntil = s.cfg.clock().Add(s.cfg.replayCool)
		s.clear(sr)
	}
	for _, m := range it.replayed {
		if sr.has && m.seq <= sr.last {
			continue
		}
		if sr.has && m.seq != sr.last+1 {
			// A hole in the replay itself (a catch-up replay whose buffer
			// moved on, or a publisher that lost messages): it cannot be
			// filled.
			s.stats.gaps.Add(1)
			sr.pub.gaps.Add(1)
			s.stats.missed.Add(m.seq - sr.last - 1)
			s.clear(sr)
		}
		s.apply(sr, m, b)
	}
	// The live messages that waited go through the same checks as if they
	// had just arrived: one may reveal a restart or a new gap.
	for i, m := range pending {
		if sr.replaying {
			// An earlier one started another replay: the rest wait for it.
			sr.pending = append(sr.pending, pending[i:]...)
			break
		}
		s.handle(rs, sr, m, m.restart, b)
	}
}

// Stats are a Subscriber's operator metrics, cumulative since it was
// created.
// A Stats is a copy, not a live view: a plain value, safe to share read-only.
type Stats struct {
	// Sources is the number of subscribed sources.
	Sources int
	// Messages counts ZeroMQ messages received (live only).
	Messages uint64
	// Batches counts event batches decoded and applied.
	Batches uint64
	// EventsApplied counts events the Index applied.
	EventsApplied uint64
	// EventsSkipped counts events of unknown types and events the Index
	// chose not to index (ErrNotIndexed).
	EventsSkipped uint64
	// ApplyErrors counts Index errors (for example a store whose parent
	// block is unknown).
	ApplyErrors uint64
	// DecodeErrors counts malformed messages and payloads, skipped.
	DecodeErrors uint64
	// Gaps counts sequence gaps detected; MissedMessages the messages in
	// them (before any replay).
	Gaps, MissedMessages uint64
	// Replays counts replay requests; ReplayFailures those that timed out,
	// failed or could not go back far enough; ReplayedMessages the messages
	// they returned.
	Replays, ReplayFailures, ReplayedMessages uint64
	// Resets counts sequence resets (publisher restarts); Clears the times
	// a source's blocks were cleared for a reset or an unrecoverable gap.
	Resets, Clears uint64
	// UnknownSources counts messages whose topic resolved to no source.
	UnknownSources uint64
	// Lag is how old the last applied batch was when applied (the
	// publisher's timestamp against the Subscriber's clock).
	Lag time.Duration
}

type counters struct {
	messages, batches, applied, skipped, applyErrors, decodeErrors atomic.Uint64
	gaps, missed, replays, replayFailures, replayed                atomic.Uint64
	resets, clears, unknownSources                                 atomic.Uint64
	lagNanos                                                       atomic.Int64
}

// Stats returns the current metrics.
func (s *Subscriber) Stats() Stats {
	s.mu.Lock()
	n := len(s.sources)
	s.mu.Unlock()
	c := &s.stats
	return Stats{
		Sources:          n,
		Messages:         c.messages.Load(),
		Batches:          c.batches.Load(),
		EventsApplied:    c.applied.Load(),
		EventsSkipped:    c.skipped.Load(),
		ApplyErrors:      c.applyErrors.Load(),
		DecodeErrors:     c.decodeErrors.Load(),
		Gaps:             c.gaps.Load(),
		MissedMessages:   c.missed.Load(),
		Replays:          c.replays.Load(),
		ReplayFailures:   c.replayFailures.Load(),
		ReplayedMessages: c.replayed.Load(),
		Resets:           c.resets.Load(),
		Clears:           c.clears.Load(),
		UnknownSources:   c.unknownSources.Load(),
		Lag:              time.Duration(c.lagNanos.Load()),
	}
}

// SourceStats are one source's metrics.
// A SourceStats is a copy, not a live view: a plain value, safe to share
// read-only.
type SourceStats struct {
	// LastSeq is the sequence number of the last message applied.
	LastSeq uint64
	// EventsApplied counts the source's events the Index applied.
	EventsApplied uint64
	// Gaps counts the sequence gaps detected.
	Gaps uint64
	// Clears counts the times the source's blocks were cleared.
	Clears uint64
	// Lag is how old the source's last applied batch was when applied.
	Lag time.Duration
}

type sourceCounters struct {
	lastSeq, applied, gaps, clears atomic.Uint64
	lagNanos                       atomic.Int64
}

// SourceStats returns the metrics of the source with ID id, if subscribed.
func (s *Subscriber) SourceStats(id string) (SourceStats, bool) {
	s.mu.Lock()
	sr, ok := s.sources[id]
	s.mu.Unlock()
	if !ok {
		return SourceStats{}, false
	}
	c := &sr.pub
	return SourceStats{
		LastSeq:       c.lastSeq.Load(),
		EventsApplied: c.applied.Load(),
		Gaps:          c.gaps.Load(),
		Clears:        c.clears.Load(),
		Lag:           time.Duration(c.lagNanos.Load()),
	}, true
}
