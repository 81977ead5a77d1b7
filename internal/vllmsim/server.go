package vllmsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix/vllmhash"
)

// Server is one simulated vLLM replica behind vLLM's OpenAI-compatible HTTP
// API: an Engine driven in real time by Run, and an http.Handler serving
// /v1/completions, /v1/chat/completions (JSON and SSE streaming),
// /v1/models, /health, /tokenize, /detokenize and /metrics. It optionally
// publishes KV events over ZeroMQ exactly as vLLM does, and plays either
// side of NixlConnector P/D disaggregation.
//
// With Config.DataParallelSize N > 1 it is vLLM's one API server in front
// of N engine cores (--data-parallel-size N): each core has its own
// scheduler, KV cache and KV-event publisher (ports + rank), /metrics has
// every per-engine series once per engine, and a request goes to the core
// vLLM's internal load balancer would pick, or to the one its
// X-data-parallel-rank header names.
//
// Server is safe for concurrent use. NewServer starts nothing: call Run
// (owning its goroutine) and serve the handler, or use StartFleet.
type Server struct {
	cfg    Config
	cores  []*core // by data-parallel rank
	tok    Tokenizer
	tmpl   ChatTemplate
	clock  func() time.Time
	start  time.Time
	seed   uint64
	algo   string
	engID  string
	host   string
	port   int
	peers  func(engineID string) *Server
	kv     *KVEventsConfig // nil: no KV events
	schema kvevents.Schema
	mux    *http.ServeMux

	hasherOpt BlockHasher

	closing atomic.Bool
	running atomic.Bool
	nextID  atomic.Uint64

	mu      sync.Mutex // guards the cores' engines and metrics, streams, lb
	streams map[*Seq]*stream
	lb      balancer
}

// core is one data-parallel engine core (vLLM's EngineCore process): its
// engine, its KV-event publisher, its histograms and the channel that wakes
// its loop. Its engine and metrics are guarded by Server.mu.
type core struct {
	rank    int
	id      string // NIXL engine id: the server's, plus "_dp<rank>" with N > 1
	port    int    // NIXL side-channel port: the server's plus rank (0: none)
	eng     *Engine
	pub     *kvpublish.Publisher // nil: no KV events
	metrics *serverMetrics
	kick    chan struct{}
}

// balancer is the API server's view of its engines' queues, as vLLM V1's
// DP load-balancing client (DPLBAsyncMPClient) keeps it: [waiting,
// running] per engine, refreshed from the engines when the DP coordinator
// would publish them (every 100 ms), and between refreshes bumped locally
// (waiting+1) for each request sent. Guarded by Server.mu.
type balancer struct {
	waiting, running []int
	at               time.Duration // last refresh, engine time
	fresh            bool          // refreshed at least once
}

// lbRefresh is how often vLLM's DP coordinator publishes the engines'
// queue lengths to the API servers (stats_update_interval_ms, 100).
const lbRefresh = 100 * time.Millisecond

// stream is a request's view of its sequence: tokens the engine loop has
// produced and the handler has not yet written. Guarded by Server.mu.
type stream struct {
	seq     *Seq
	pending []uint32
	finish  FinishReason
	notify  chan struct{}
	last    time.Duration
	release func() // P/D: tell the prefill server to free its blocks
	core    *core  // the engine core running seq
}

// ServerOption configures a Server.
// Options are immutable values, safe to reuse.
type ServerOption interface{ applyServer(*Server) error }

type serverOptionFunc func(*Server) error

func (f serverOptionFunc) applyServer(s *Server) error { return f(s) }

// WithTokenizer sets the tokenizer (default ByteTokenizer).
func WithTokenizer(t Tokenizer) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.tok = t; return nil })
}

// WithChatTemplate sets the chat template (default ChatML).
func WithChatTemplate(t ChatTemplate) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.tmpl = t; return nil })
}

// WithClock sets the wall clock (default time.Now). Timers still run on the
// runtime's clock, so use testing/synctest rather than a fake clock to
// control time in tests.
func WithClock(now func() time.Time) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.clock = now; return nil })
}

// WithServerSeed seeds output tokens and request ids (default 0).
func WithServerSeed(seed uint64) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.seed = seed; return nil })
}

// WithHashAlgorithm sets vLLM's prefix_caching_hash_algo and PYTHONHASHSEED
// for block hashes (default "sha256_cbor" with seed "0"), so the published
// KV-event hashes are the ones a real vLLM would publish.
func WithHashAlgorithm(algo, pythonHashSeed string) ServerOption {
	return serverOptionFunc(func(s *Server) error {
		a, err := vllmhash.ParseAlgorithm(algo)
		if err != nil {
			return fmt.Errorf("vllmsim: %w", err)
		}
		h, err := vllmhash.New(a, pythonHashSeed)
		if err != nil {
			return fmt.Errorf("vllmsim: %w", err)
		}
		s.algo = algo
		s.hasherOpt = VLLMHasher(h)
		return nil
	})
}

// WithServerEngineID sets the engine id reported as remote_engine_id in
// P/D responses (default a UUID derived from the seed), kv_transfer_config's
// engine_id. With Config.DataParallelSize N > 1 rank r reports id + "_dp<r>",
// as vLLM renames each engine core's (see Server.EngineIDs).
func WithServerEngineID(id string) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.engID = id; return nil })
}

// WithAdvertise sets the host and port reported as remote_host and
// remote_port in P/D responses (VLLM_NIXL_SIDE_CHANNEL_HOST/PORT). As
// vLLM's NIXL scheduler, data-parallel rank r reports port + r (a port of
// 0, none advertised, stays 0).
func WithAdvertise(host string, port int) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.host, s.port = host, port; return nil })
}

// WithPeers lets a decode server find the prefill server named by
// remote_engine_id, to tell it to free the transferred blocks (NIXL's
// notification). Without it prefill servers free them at Config.KVLease.
// The id is one of the prefill server's EngineIDs: lookup must map every
// rank's to the server, and only the engine core of that rank frees its
// blocks (an id that names none of the server's cores frees nothing).
func WithPeers(lookup func(engineID string) *Server) ServerOption {
	return serverOptionFunc(func(s *Server) error { s.peers = lookup; return nil })
}

// KVEventsConfig enables KV-event publishing (vLLM's --kv-events-config).
// It is plain data with no internal synchronisation: share it only read-only.
type KVEventsConfig struct {
	// Publisher configures the ZMQ sockets (endpoint, replay endpoint,
	// topic, buffer, bind or connect).
	Publisher kvpublish.Config
	// Schema is the wire schema (default kvevents.MapCurrent; use
	// kvevents.ArrayLast for the array encoding of vLLM ≤ v0.23).
	Schema kvevents.Schema
}

// WithKVEvents makes the server publish its KV events. NewServer binds the
// sockets; Run serves replay requests (and connects, in connect mode).
//
// With data parallelism every rank r has its own publisher, on the ports
// of c.Publisher plus r as vLLM's offset_endpoint_port computes them, its
// own sequence numbers from 0 and r as every batch's data_parallel_rank.
// An ephemeral port (0) is bound for rank 0 and the other ranks take that
// port plus their rank, so that they can be found as with a fixed port.
func WithKVEvents(c KVEventsConfig) ServerOption {
	return serverOptionFunc(func(s *Server) error {
		s.kv = &c
		s.schema = c.Schema
		if s.schema == 0 {
			s.schema = kvevents.MapCurrent
		}
		return nil
	})
}

// NewServer returns a Server for cfg.
func NewServer(cfg Config, opts ...ServerOption) (*Server, error) {
	s := &Server{
		tok: ByteTokenizer{}, tmpl: ChatML, clock: time.Now,
		streams: make(map[*Seq]*stream),
	}
	for _, o := range opts {
		if err := o.applyServer(s); err != nil {
			return nil, err
		}
	}
	if s.hasherOpt == nil {
		h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
		if err != nil {
			return nil, fmt.Errorf("vllmsim: %w", err)
		}
		s.algo, s.hasherOpt = "sha256_cbor", VLLMHasher(h)
	}
	if s.engID == "" {
		s.engID = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(mix64(s.seed, 1)), uint16(mix64(s.seed, 2)),
			uint16(mix64(s.seed, 3))&0xfff, uint16(mix64(s.seed, 4))&0xfff, mix64(s.seed, 5)&0xffffffffffff)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s.cfg = cfg
	s.start = s.clock()
	n := cfg.dataParallelSize()
	for rank := range n {
		seed := s.seed // rank 0 keeps the server's seed: DataParallelSize 1 is unchanged
		if rank > 0 {
			seed = mix64(s.seed, 0x6470_0000+uint64(rank))
		}
		id, port := s.engID, s.port
		if n > 1 { // vLLM's DPEngineCoreProc with a kv_transfer_config
			id = s.engID + "_dp" + strconv.Itoa(rank)
			if port != 0 {
				port += rank // NIXL's side channel: VLLM_NIXL_SIDE_CHANNEL_PORT + DP index
			}
		}
		eng, err := NewEngine(cfg, WithHasher(s.hasherOpt), WithSeed(seed), WithEngineID(id))
		if err != nil {
			return nil, err
		}
		s.cores = append(s.cores, &core{
			rank: rank, id: id, port: port, eng: eng, kick: make(chan struct{}, 1),
			metrics: newServerMetrics(cfg.MaxModelLen, float64(s.start.UnixNano())/1e9),
		})
	}
	s.lb = balancer{waiting: make([]int, n), running: make([]int, n)}
	if s.kv != nil {
		if err := s.openPublishers(); err != nil {
			s.closePublishers()
			return nil, err
		}
	}
	for _, c := range s.cores {
		s.recordLoRAs(c)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/completions", s.handleCompletions)
	s.mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	s.mux.HandleFunc("GET /v1/models", s.handleModels)
	s.mux.HandleFunc("GET /health", s.handleHealth)
	s.mux.HandleFunc("POST /tokenize", s.handleTokenize)
	s.mux.HandleFunc("POST /detokenize", s.handleDetokenize)
	s.mux.HandleFunc("GET /metrics", s.handleMetrics)
	s.mux.HandleFunc("POST /reset_prefix_cache", s.handleResetPrefixCache)
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// EngineID returns the engine id (kv_transfer_config's engine_id), which
// is remote_engine_id in P/D without data parallelism; EngineIDs has every
// rank's.
func (s *Server) EngineID() string { return s.engID }

// EngineIDs returns the NIXL engine id of every data-parallel rank, rank r
// at index r: EngineID alone without data parallelism, EngineID + "_dp<r>"
// for each rank r with it, as vLLM names its engine cores. A P/D prefill
// request run by rank r reports its id as remote_engine_id.
func (s *Server) EngineIDs() []string {
	out := make([]string, len(s.cores))
	for i, c := range s.cores {
		out[i] = c.id
	}
	return out
}

// Config returns the engine configuration.
func (s *Server) Config() Config { return s.cfg }

// KVEndpoints returns the resolved PUB and replay endpoints of rank 0, or
// "" when KV events are off. KVRankEndpoints has every rank's.
func (s *Server) KVEndpoints() (pub, replay string) {
	if s.kv == nil {
		return "", ""
	}
	return s.cores[0].pub.Endpoint(), s.cores[0].pub.ReplayEndpoint()
}

// KVRank is the KV-event addresses of one data-parallel rank.
// It is a plain value, safe to copy.
type KVRank struct {
	// Endpoint is the rank's resolved PUB address.
	Endpoint string
	// ReplayEndpoint is its resolved replay address, "" without replay.
	ReplayEndpoint string
}

// KVRankEndpoints returns every data-parallel rank's resolved KV-event
// addresses, rank r at index r, or nil when KV events are off.
func (s *Server) KVRankEndpoints() []KVRank {
	if s.kv == nil {
		return nil
	}
	out := make([]KVRank, len(s.cores))
	for i, c := range s.cores {
		out[i] = KVRank{Endpoint: c.pub.Endpoint(), ReplayEndpoint: c.pub.ReplayEndpoint()}
	}
	return out
}

// Stats returns the current stats of the engine of rank 0, which is the
// whole server without data parallelism; RankStats has the others'.
func (s *Server) Stats() Stats { return s.RankStats(0) }

// RankStats returns the current stats of the engine of data-parallel rank
// rank, or the zero Stats for a rank the server does not have.
func (s *Server) RankStats(rank int) Stats {
	if rank < 0 || rank >= len(s.cores) {
		return Stats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cores[rank].eng.Stats()
}

// BlockKeys returns the published block hashes of the full blocks of
// tokens as this server computes them (no cache salt); every rank hashes
// alike.
func (s *Server) BlockKeys(tokens []uint32) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cores[0].eng.BlockKeys(nil, tokens, "", "")
}

// openPublishers binds every rank's KV-event sockets (see WithKVEvents).
func (s *Server) openPublishers() error {
	pc := s.kv.Publisher
	for _, c := range s.cores {
		pc.DataParallelRank = c.rank
		p, err := kvpublish.New(pc)
		if err != nil {
			return fmt.Errorf("vllmsim: kv events: rank %d: %w", c.rank, err)
		}
		c.pub = p
		if c.rank == 0 {
			pc.Endpoint = withBoundPort(pc.Endpoint, p.Endpoint())
			pc.ReplayEndpoint = withBoundPort(pc.ReplayEndpoint, p.ReplayEndpoint())
		}
	}
	return nil
}

func (s *Server) closePublishers() {
	for _, c := range s.cores {
		if c.pub != nil {
			_ = c.pub.Close()
		}
	}
}

// withBoundPort returns configured with its port replaced by bound's when
// it asked for an ephemeral TCP port (":0"), else configured unchanged.
func withBoundPort(configured, bound string) string {
	if !strings.HasPrefix(configured, "tcp://") || !strings.HasSuffix(configured, ":0") {
		return configured
	}
	i := strings.LastIndexByte(bound, ':')
	if i < 0 {
		return configured
	}
	return configured[:len(configured)-1] + bound[i+1:]
}

// Shutdown makes the server answer 503 to new generation requests and to
// /health; requests in flight continue until Run's context ends.
func (s *Server) Shutdown() { s.closing.Store(true) }

func (s *Server) since() time.Duration { return s.clock().Sub(s.start) }

func (c *core) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run drives the engines in real time until ctx is done, then aborts the
// requests in flight and closes the KV-event sockets. It returns ctx's
// error. Run must be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("vllmsim: Run called twice")
	}
	var pubs, loops sync.WaitGroup
	for _, c := range s.cores {
		if c.pub != nil {
			pubs.Add(1)
			go func() {
				defer pubs.Done()
				_ = c.pub.Run(ctx)
			}()
		}
	}
	for _, c := range s.cores[1:] {
		loops.Add(1)
		go func() {
			defer loops.Done()
			s.drive(ctx, c)
		}()
	}
	s.drive(ctx, s.cores[0])
	loops.Wait()
	s.closing.Store(true)
	s.mu.Lock()
	for seq, st := range s.streams {
		st.core.eng.Abort(seq)
		st.finish = FinishAbort
		notify(st.notify)
	}
	s.mu.Unlock()
	s.closePublishers()
	pubs.Wait()
	return ctx.Err()
}

// drive runs one engine core's loop until ctx is done: schedule a step,
// sleep for its duration, complete it, publish its KV events, hand out its
// tokens.
func (s *Server) drive(ctx context.Context, c *core) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var wakes []chan struct{}
	for {
		s.mu.Lock()
		now := s.since()
		d, ok := c.eng.Schedule(now)
		wakeAt, hasWake := c.eng.NextWake()
		s.mu.Unlock()
		if !ok {
			var tc <-chan time.Time
			if hasWake {
				timer.Reset(max(wakeAt-now, 0))
				tc = timer.C
			}
			select {
			case <-ctx.Done():
				return
			case <-c.kick:
			case <-tc:
			}
			if hasWake && !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			continue
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			s.mu.Lock()
			c.eng.Complete(s.since())
			s.mu.Unlock()
			return
		case <-timer.C:
		}
		s.mu.Lock()
		out := c.eng.Complete(s.since())
		var batch *kvevents.Batch
		if c.pub != nil && len(out.Events) > 0 {
			batch = s.kvBatch(out.Events)
		}
		releases, wakes := s.dispatch(c, out, wakes[:0])
		s.recordLoRAs(c)
		s.mu.Unlock()
		// Publish before waking the handlers, so a step's KV events are out
		// before its responses.
		if batch != nil {
			_, _ = c.pub.Publish(batch, s.schema)
		}
		for _, ch := range wakes {
			notify(ch)
		}
		for _, f := range releases {
			f()
		}
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// dispatch hands the step's tokens to their streams and records metrics.
// Called with s.mu held; returns P/D release calls to make and stream
// channels to notify after unlocking.
func (s *Server) dispatch(c *core, out *StepOutput, wakes []chan struct{}) ([]func(), []chan struct{}) {
	var releases []func()
	m := c.metrics
	for _, ev := range out.Tokens {
		st := s.streams[ev.Seq]
		seq := ev.Seq
		if ev.First {
			m.ttft.observe((out.End - seq.Arrival).Seconds())
			m.queue.observe((seq.Admitted - seq.Arrival).Seconds())
			m.prefill.observe((out.End - seq.Admitted).Seconds())
			m.promptTokens.observe(float64(seq.PromptLen()))
		} else if st != nil {
			m.itl.observe((out.End - st.last).Seconds())
		}
		if ev.Finish != NotFinished {
			m.e2e.observe((out.End - seq.Arrival).Seconds())
			m.inference.observe((out.End - seq.Admitted).Seconds())
			m.decode.observe((out.End - seq.FirstToken).Seconds())
			m.genTokens.observe(float64(len(seq.Output())))
			if n := len(seq.Output()); n > 1 {
				m.tpot.observe((out.End - seq.FirstToken).Seconds() / float64(n-1))
			}
		}
		if st == nil {
			continue
		}
		st.last = out.End
		st.pending = append(st.pending, ev.Token)
		if ev.First && st.release != nil {
			releases = append(releases, st.release)
			st.release = nil
		}
		if ev.Finish != NotFinished {
			st.finish = ev.Finish
		}
		wakes = append(wakes, st.notify)
	}
	return releases, wakes
}

// recordLoRAs sets vllm:lora_requests_info for core c's current adapters
// to the current time, as vLLM's logger does after every step
// (set_to_current_time). The gauge has no engine label: every core sets
// the one family, kept in rank 0's metrics. Called with s.mu held; a no-op
// without LoRA.
func (s *Server) recordLoRAs(c *core) {
	if s.cfg.LoRA == nil {
		return
	}
	running, waiting := c.eng.LoRAs()
	s.cores[0].metrics.setLoRAs(s.cfg.LoRA.MaxLoRAs, running, waiting, float64(s.clock().UnixNano())/1e9)
}

// kvBatch converts engine events to vLLM's wire events. Called with s.mu
// held (the event slices alias engine storage).
func (s *Server) kvBatch(evs []KVEvent) *kvevents.Batch {
	b := &kvevents.Batch{TS: float64(s.clock().UnixNano()) / 1e9, Events: make([]kvevents.Event, 0, len(evs))}
	for _, ev := range evs {
		var e kvevents.Event
		switch ev.Kind {
		case BlockStored:
			e = kvevents.Event{
				Type: kvevents.BlockStored, TokenIDs: append([]uint32(nil), ev.Tokens...), BlockSize: ev.BlockSize,
				Medium: kvevents.Some("GPU"), GroupIdx: kvevents.Some[int64](0),
				KVCacheSpecKind: kvevents.Some("full_attention"), ExtraKeys: extraKeys(len(ev.Keys), ev.LoRA, ev.Salt),
			}
			if ev.LoRA != "" {
				e.LoRAID, e.LoRAName = kvevents.Some(int64(ev.LoRAID)), kvevents.Some(ev.LoRA)
			}
			if ev.HasParent {
				e.ParentBlockHash = kvevents.Some(kvevents.HashUint64(ev.Parent))
			}
		case BlockRemoved:
			e = kvevents.Event{Type: kvevents.BlockRemoved, Medium: kvevents.Some("GPU"), GroupIdx: kvevents.Some[int64](0)}
		case AllBlocksCleared:
			e = kvevents.Event{Type: kvevents.AllBlocksCleared}
		}
		for _, k := range ev.Keys {
			e.BlockHashes = append(e.BlockHashes, kvevents.HashUint64(k))
		}
		b.Events = append(b.Events, e)
	}
	return b
}

// extraKeys is the msgpack encoding of the extra_keys of n blocks, as
// msgspec writes vLLM's list of per-block tuples: each block's entry is
// None, or an array of the adapter name (every block) and the cache salt
// (salt is non-empty only when the first block is the request's first).
func extraKeys(n int, lora, salt string) []byte {
	b := appendMsgpackHead(nil, 0x90, 0xdc, n)
	for i := range n {
		k := 0
		if lora != "" {
			k++
		}
		if salt != "" && i == 0 {
			k++
		}
		if k == 0 {
			b = append(b, 0xc0)
			continue
		}
		b = append(b, 0x90|byte(k))
		if lora != "" {
			b = appendMsgpackStr(b, lora)
		}
		if salt != "" && i == 0 {
			b = appendMsgpackStr(b, salt)
		}
	}
	return b
}

// appendMsgpackHead appends an array or str header for n items: fix (the
// fix byte ORed with n) below 16 (arrays) or 32 (strings), else the 16- or
// 32-bit form (fix16, then fix16+1 for 32-bit).
func appendMsgpackHead(b []byte, fix, fix16 byte, n int) []byte {
	limit := 16
	if fix == 0xa0 {
		limit = 32
	}
	switch {
	case n < limit:
		return append(b, fix|byte(n))
	case n < 1<<16:
		return append(b, fix16, byte(n>>8), byte(n))
	}
	return append(b, fix16+1, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendMsgpackStr(b []byte, v string) []byte {
	if len(v) >= 32 && len(v) < 256 {
		b = append(b, 0xd9, byte(len(v))) // str8
	} else {
		b = appendMsgpackHead(b, 0xa0, 0xda, len(v))
	}
	return append(b, v...)
}

// --- HTTP handlers ---

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if s.closing.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	created := s.clock().Unix()
	card := func(id, root string, parent any, maxLen any) map[string]any {
		return map[string]any{
			"id": id, "object": "model", "created": created, "owned_by": "vllm",
			"root": root, "parent": parent, "max_model_len": maxLen,
			"permission": []any{map[string]any{
				"id": "modelperm-" + s.newID(), "object": "model_permission", "created": created,
				"allow_create_engine": false, "allow_sampling": true, "allow_logprobs": true,
				"allow_search_indices": false, "allow_view": true, "allow_fine_tuning": false,
				"organization": "*", "group": nil, "is_blocking": false,
			}},
		}
	}
	data := []any{card(s.cfg.Model, s.cfg.Model, nil, s.cfg.MaxModelLen)}
	if s.cfg.LoRA != nil {
		// As vLLM's show_available_models: one card per adapter, its parent
		// the base model, its root the adapter's path, no max_model_len.
		for _, l := range s.cfg.LoRA.Adapters {
			root := l.Path
			if root == "" {
				root = l.Name
			}
			data = append(data, card(l.Name, root, s.cfg.Model, nil))
		}
	}
	writeJSON(w, map[string]any{"object": "list", "data": data})
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		(&APIError{Code: 500, Type: "InternalServerError", Message: err.Error()}).write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) newID() string {
	n := s.nextID.Add(1)
	return fmt.Sprintf("%016x%016x", mix64(s.seed, n), mix64(s.seed^0xabcdef, n))
}

// checkModel accepts the base model, a served LoRA adapter and "" (the
// base model).
func (s *Server) checkModel(model string) *APIError {
	if model != "" && model != s.cfg.Model && s.adapter(model) == "" {
		return &APIError{Code: http.StatusNotFound, Type: "NotFoundError", Message: fmt.Sprintf("The model `%s` does not exist.", model), Param: "model"}
	}
	return nil
}

// adapter returns model if it names a served LoRA adapter, else "".
func (s *Server) adapter(model string) string {
	if s.cfg.LoRA == nil || model == "" {
		return ""
	}
	for _, l := range s.cfg.LoRA.Adapters {
		if l.Name == model {
			return model
		}
	}
	return ""
}

func readBody(r *http.Request) ([]byte, *APIError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("could not read the request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, &APIError{Code: http.StatusRequestEntityTooLarge, Type: "BadRequestError", Message: "request body too large"}
	}
	return body, nil
}

func (s *Server) unavailable(w http.ResponseWriter) bool {
	if s.closing.Load() {
		(&APIError{Code: http.StatusServiceUnavailable, Type: "ServiceUnavailableError", Message: "The server is shutting down."}).write(w)
		return true
	}
	return false
}

// genRequest is a parsed generation request, common to both endpoints.
type genRequest struct {
	chat      bool
	model     string // the "model" of responses: the base model or the adapter
	lora      string // the adapter, or ""
	prompt    []uint32
	maxTokens int
	params    *commonParams
	kvParams  map[string]any
}

// acceptRequest is the prologue both generation endpoints share: refuse
// while shutting down, read and parse the body, check the model. When it
// returns false it has already written the error response.
func acceptRequest[T any](s *Server, w http.ResponseWriter, r *http.Request, parse func([]byte) (T, error), model func(T) string) (T, bool) {
	var zero T
	if s.unavailable(w) {
		return zero, false
	}
	body, ae := readBody(r)
	if ae != nil {
		ae.write(w)
		return zero, false
	}
	req, err := parse(body)
	if err != nil {
		writeErr(w, err)
		return zero, false
	}
	if ae := s.checkModel(model(req)); ae != nil {
		ae.write(w)
		return zero, false
	}
	return req, true
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	req, ok := acceptRequest(s, w, r, ParseCompletionRequest, func(c *CompletionRequest) string { return c.Model })
	if !ok {
		return
	}
	var err error
	g := &genRequest{model: s.cfg.Model, params: &req.commonParams}
	if g.lora = s.adapter(req.Model); g.lora != "" {
		g.model = g.lora
	}
	if req.Prompt.IsText {
		addSpecial := req.AddSpecialTokens == nil || *req.AddSpecialTokens
		g.prompt, err = s.tok.Encode(req.Prompt.Text, addSpecial)
		if err != nil {
			badRequest("tokenize: %v", err).write(w)
			return
		}
	} else {
		g.prompt = req.Prompt.Tokens
	}
	g.maxTokens = 16
	if req.MaxTokens != nil {
		g.maxTokens = *req.MaxTokens
	}
	s.generate(w, r, g)
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	req, ok := acceptRequest(s, w, r, ParseChatRequest, func(c *ChatRequest) string { return c.Model })
	if !ok {
		return
	}
	var err error
	g := &genRequest{chat: true, model: s.cfg.Model, params: &req.commonParams}
	if g.lora = s.adapter(req.Model); g.lora != "" {
		g.model = g.lora
	}
	g.prompt, err = s.renderChat(req.Messages, req.AddGenerationPrompt, req.ContinueFinalMessage, req.AddSpecialTokens)
	if err != nil {
		writeErr(w, err)
		return
	}
	switch {
	case req.MaxCompletionTokens != nil:
		g.maxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		g.maxTokens = *req.MaxTokens
	default:
		g.maxTokens = max(s.cfg.MaxModelLen-len(g.prompt), 1)
	}
	s.generate(w, r, g)
}

func (s *Server) renderChat(msgs []ChatMessage, addGen *bool, cont bool, addSpecial *bool) ([]uint32, error) {
	ms := make([]Message, len(msgs))
	for i, m := range msgs {
		ms[i] = Message{Role: m.Role, Content: string(m.Content)}
	}
	text, err := s.tmpl(ms, addGen == nil || *addGen, cont)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	toks, err := s.tok.Encode(text, addSpecial != nil && *addSpecial)
	if err != nil {
		return nil, badRequest("tokenize: %v", err)
	}
	return toks, nil
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		ae.write(w)
		return
	}
	badRequest("%v", err).write(w)
}

// generate runs one request on the engine and writes the response.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, g *genRequest) {
	n := len(g.prompt)
	if n == 0 {
		badRequest("The prompt cannot be empty.").write(w)
		return
	}
	if g.maxTokens > s.cfg.MaxModelLen-n { // not n+maxTokens, which can overflow
		what := "prompt"
		if g.chat {
			what = "messages"
		}
		e := badRequest("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
			s.cfg.MaxModelLen, uint64(n)+uint64(g.maxTokens), n, what, g.maxTokens, what) // both >= 0: the sum fits
		e.write(w)
		return
	}
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		id = g.params.RequestID
	}
	if id == "" {
		id = s.newID()
	}
	prefix := "cmpl-"
	if g.chat {
		prefix = "chatcmpl-"
	}
	respID := prefix + id
	engID := respID + "-0"
	ereq := &Request{ID: engID, Prompt: g.prompt, MaxTokens: g.maxTokens, IgnoreEOS: g.params.IgnoreEOS, LoRA: g.lora}
	if g.params.CacheSalt != nil {
		ereq.CacheSalt = *g.params.CacheSalt
	}
	if mode, _ := g.params.VLLMXArgs["kv_cache_report_mode"].(string); mode == "full" {
		ereq.ReportCachedBlocks = true
	}
	if g.params.Seed != nil {
		ereq.Seed = uint64(*g.params.Seed) ^ 0x6a09e667f3bcc909
	}
	rank, pinned := dataParallelRank(r)
	if pinned && (rank < 0 || rank >= len(s.cores)) {
		// vLLM's input processor raises this ValueError, answered as a 400.
		badRequest("data_parallel_rank %d is out of range [0, %d).", rank, len(s.cores)).write(w)
		return
	}
	var release func()
	if kv := parseKVParams(g.params.KVTransferParams); kv != nil {
		if b, _ := kv["do_remote_decode"].(bool); b {
			ereq.RemoteDecode = true
		} else if b, _ := kv["do_remote_prefill"].(bool); b && validRemote(kv) {
			ereq.RemotePrefill = true
			peerID, _ := kv["remote_engine_id"].(string)
			peerReq, _ := kv["remote_request_id"].(string)
			if s.peers != nil {
				if p := s.peers(peerID); p != nil && peerReq != "" {
					release = func() { p.releaseOn(peerID, peerReq) }
				}
			}
		}
	}
	st := &stream{notify: make(chan struct{}, 1), release: release}
	s.mu.Lock()
	if s.closing.Load() { // Run has ended (or is ending): nobody would run it
		s.mu.Unlock()
		s.unavailable(w)
		return
	}
	now := s.since()
	c := s.cores[rank]
	if !pinned {
		c = s.pick(now)
	}
	seq, err := c.eng.Add(ereq, now)
	if err == nil {
		st.seq, st.core = seq, c
		s.streams[seq] = st
		if !pinned {
			s.lb.waiting[c.rank]++ // the DP client's own send, until the next refresh
		}
	}
	s.mu.Unlock()
	if err != nil {
		badRequest("%v", err).write(w)
		return
	}
	c.wake()
	w.Header().Set("X-Request-Id", id) // as vLLM with --enable-request-id-headers
	created := s.clock().Unix()
	if g.params.Stream {
		s.streamResponse(w, r, g, st, respID, created)
		return
	}
	s.fullResponse(w, r, g, st, respID, created)
}

// dataParallelRank reads the X-data-parallel-rank header, with which a
// client pins a request to an engine core. As vLLM's
// _get_data_parallel_rank, a value that is not an integer is ignored.
func dataParallelRank(r *http.Request) (rank int, ok bool) {
	v := r.Header.Get("X-data-parallel-rank")
	if v == "" {
		return 0, false
	}
	rank, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, false
	}
	return rank, true
}

// pick returns the engine core vLLM V1's DP load-balancing client
// (DPLBAsyncMPClient.get_core_engine_for_request) would send a request
// to: the lowest 4 × waiting + running over its view of the engines'
// queues, the first in rank order on ties (its start index is 0 with one
// API server). The caller counts one more waiting on that engine until the
// next refresh once the engine has accepted the request (one it refuses
// never reaches a core). The view is refreshed from the engines every
// lbRefresh, as the DP coordinator publishes their counts. Called with
// s.mu held.
func (s *Server) pick(now time.Duration) *core {
	if len(s.cores) == 1 {
		return s.cores[0]
	}
	lb := &s.lb
	if !lb.fresh || now-lb.at >= lbRefresh {
		for i, c := range s.cores {
			st := c.eng.Stats()
			lb.waiting[i], lb.running[i] = st.Waiting+st.WaitingRemote, st.Running
		}
		lb.at, lb.fresh = now, true
	}
	best, bestScore := 0, 0
	for i := range s.cores {
		if score := 4*lb.waiting[i] + lb.running[i]; i == 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	return s.cores[best]
}

func parseKVParams(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// validRemote applies NIXL's update_state_after_alloc check: without these
// fields vLLM logs "Got invalid KVTransferParams" and recomputes.
func validRemote(kv map[string]any) bool {
	for _, k := range []string{"remote_block_ids", "remote_engine_id", "remote_host", "remote_port"} {
		if v, ok := kv[k]; !ok || v == nil {
			return false
		}
	}
	return true
}

// ReleaseRemote frees the blocks this (prefill) server holds for the P/D
// request id, as NIXL's notification from the decode side does, on the
// first rank that holds them. It reports whether they were held. A decode
// server found through WithPeers frees them on exactly the rank its
// remote_engine_id names.
func (s *Server) ReleaseRemote(requestID string) bool {
	return s.release(func(*core) bool { return true }, requestID)
}

// releaseOn frees the blocks held for requestID by the engine core whose
// NIXL engine id is engineID, if any.
func (s *Server) releaseOn(engineID, requestID string) bool {
	return s.release(func(c *core) bool { return c.id == engineID }, requestID)
}

func (s *Server) release(match func(*core) bool, requestID string) bool {
	s.mu.Lock()
	var held *core
	for _, c := range s.cores {
		if match(c) && c.eng.Release(requestID) {
			held = c
			break
		}
	}
	s.mu.Unlock()
	if held != nil {
		held.wake() // freed blocks may admit waiting requests
	}
	return held != nil
}

// wait blocks until the stream has news or the client is gone; it returns
// the pending tokens and the finish reason. On disconnect it aborts the
// sequence (freeing its blocks) and returns ok=false.
func (s *Server) wait(ctx context.Context, st *stream) (toks []uint32, fin FinishReason, ok bool) {
	for {
		s.mu.Lock()
		toks, fin = st.pending, st.finish
		st.pending = nil
		if fin != NotFinished {
			delete(s.streams, st.seq)
		}
		s.mu.Unlock()
		if len(toks) > 0 || fin != NotFinished {
			return toks, fin, true
		}
		select {
		case <-st.notify:
		case <-ctx.Done():
			s.abort(st)
			return nil, FinishAbort, false
		}
	}
}

func (s *Server) usage(st *stream) map[string]any {
	s.mu.Lock()
	prompt, cached, out := st.seq.PromptLen(), st.seq.CachedTokens(), len(st.seq.Output())
	s.mu.Unlock()
	return map[string]any{
		"prompt_tokens": prompt, "total_tokens": prompt + out, "completion_tokens": out,
		"prompt_tokens_details": map[string]any{"cached_tokens": cached},
	}
}

func (s *Server) kvTransferResult(st *stream) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.seq.Req.RemoteDecode || st.seq.Finish() == FinishAbort {
		return nil
	}
	return map[string]any{
		"do_remote_prefill": true, "do_remote_decode": false,
		"remote_block_ids": st.seq.BlockIDs(), "remote_engine_id": st.core.id,
		"remote_request_id": st.seq.Req.ID, "remote_host": s.host, "remote_port": st.core.port,
		"tp_size": 1, "remote_num_tokens": st.seq.PromptLen(),
	}
}

func (s *Server) fullResponse(w http.ResponseWriter, r *http.Request, g *genRequest, st *stream, id string, created int64) {
	var all []uint32
	var fin FinishReason
	for fin == NotFinished {
		toks, f, ok := s.wait(r.Context(), st)
		if !ok {
			return // client gone
		}
		all = append(all, toks...)
		fin = f
	}
	if fin == FinishAbort {
		(&APIError{Code: http.StatusServiceUnavailable, Type: "ServiceUnavailableError", Message: "The request was aborted: the server is shutting down."}).write(w)
		return
	}
	text, err := s.tok.Decode(all)
	if err != nil {
		text = ""
	}
	resp := map[string]any{
		"id": id, "created": created, "model": g.model, "usage": s.usage(st),
		"system_fingerprint": nil, "service_tier": nil, "kv_transfer_params": s.kvTransferResult(st),
	}
	if g.chat {
		resp["object"] = "chat.completion"
		resp["prompt_logprobs"] = nil
		resp["choices"] = []any{map[string]any{
			"index": 0, "logprobs": nil, "finish_reason": fin.String(), "stop_reason": nil,
			"message": map[string]any{"role": "assistant", "content": text, "reasoning_content": nil, "tool_calls": []any{}},
		}}
	} else {
		resp["object"] = "text_completion"
		resp["choices"] = []any{map[string]any{
			"index": 0, "text": text, "logprobs": nil, "finish_reason": fin.String(), "stop_reason": nil, "prompt_logprobs": nil,
		}}
	}
	writeJSON(w, resp)
}

func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, g *genRequest, st *stream, id string, created int64) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	object := "text_completion"
	if g.chat {
		object = "chat.completion.chunk"
	}
	send := func(v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	chunk := func(choice map[string]any) map[string]any {
		c := map[string]any{"id": id, "object": object, "created": created, "model": g.model, "choices": []any{choice}}
		if g.params.StreamOptions != nil && g.params.StreamOptions.ContinuousUsageStats && g.params.includeUsage() {
			c["usage"] = s.usage(st)
		}
		return c
	}
	if g.chat {
		if !send(chunk(map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil})) {
			s.abort(st)
			return
		}
	}
	for {
		toks, fin, ok := s.wait(r.Context(), st)
		if !ok {
			return
		}
		if fin == FinishAbort {
			return // server shutting down: close the stream without [DONE]
		}
		for i, t := range toks {
			text, _ := s.tok.Decode([]uint32{t})
			var finish any
			if fin != NotFinished && i == len(toks)-1 {
				finish = fin.String()
			}
			var c map[string]any
			if g.chat {
				c = chunk(map[string]any{"index": 0, "delta": map[string]any{"content": text}, "logprobs": nil, "finish_reason": finish, "stop_reason": nil})
			} else {
				c = chunk(map[string]any{"index": 0, "text": text, "logprobs": nil, "finish_reason": finish, "stop_reason": nil})
			}
			if !send(c) {
				s.abort(st)
				return
			}
		}
		if fin != NotFinished {
			break
		}
	}
	if g.params.includeUsage() {
		send(map[string]any{"id": id, "object": object, "created": created, "model": g.model, "choices": []any{}, "usage": s.usage(st)})
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

func (s *Server) abort(st *stream) {
	s.mu.Lock()
	st.core.eng.Abort(st.seq)
	delete(s.streams, st.seq)
	s.mu.Unlock()
	st.core.wake()
}

// --- tokenize / detokenize ---

type tokenizeRequest struct {
	Model                string        `json:"model"`
	Prompt               *string       `json:"prompt"`
	Messages             []ChatMessage `json:"messages"`
	AddSpecialTokens     *bool         `json:"add_special_tokens"`
	AddGenerationPrompt  *bool         `json:"add_generation_prompt"`
	ContinueFinalMessage bool          `json:"continue_final_message"`
	ReturnTokenStrs      bool          `json:"return_token_strs"`
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	if ae := decodeBody(r.Body, &req); ae != nil {
		ae.write(w)
		return
	}
	if ae := s.checkModel(req.Model); ae != nil {
		ae.write(w)
		return
	}
	var toks []uint32
	var err error
	switch {
	case req.Messages != nil:
		if req.ContinueFinalMessage && req.AddGenerationPrompt != nil && *req.AddGenerationPrompt {
			badRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.").write(w)
			return
		}
		toks, err = s.renderChat(req.Messages, req.AddGenerationPrompt, req.ContinueFinalMessage, req.AddSpecialTokens)
	case req.Prompt != nil:
		toks, err = s.tok.Encode(*req.Prompt, req.AddSpecialTokens == nil || *req.AddSpecialTokens)
	default:
		badRequest("either prompt or messages is required").write(w)
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	resp := map[string]any{"count": len(toks), "max_model_len": s.cfg.MaxModelLen, "tokens": nonNil(toks), "token_strs": nil}
	if req.ReturnTokenStrs {
		strs := make([]string, len(toks))
		for i, t := range toks {
			strs[i], _ = s.tok.Decode([]uint32{t})
		}
		resp["token_strs"] = strs
	}
	writeJSON(w, resp)
}

func nonNil(t []uint32) []uint32 {
	if t == nil {
		return []uint32{}
	}
	return t
}

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string  `json:"model"`
		Tokens []int64 `json:"tokens"`
	}
	if ae := decodeBody(r.Body, &req); ae != nil {
		ae.write(w)
		return
	}
	if ae := s.checkModel(req.Model); ae != nil {
		ae.write(w)
		return
	}
	ids := make([]uint32, len(req.Tokens))
	for i, t := range req.Tokens {
		if t < 0 || t > 1<<32-1 {
			badRequest("token id %d out of range", t).write(w)
			return
		}
		ids[i] = uint32(t)
	}
	text, err := s.tok.Decode(ids)
	if err != nil {
		badRequest("%v", err).write(w)
		return
	}
	writeJSON(w, map[string]any{"prompt": text})
}

// handleResetPrefixCache resets every engine core's prefix cache, as
// vLLM's utility call reaches every core; each core that cleared publishes
// its AllBlocksCleared, and the answer is an error if any could not.
func (s *Server) handleResetPrefixCache(w http.ResponseWriter, _ *http.Request) {
	batches := make([]*kvevents.Batch, len(s.cores))
	all := true
	s.mu.Lock()
	for i, c := range s.cores {
		ev, ok := c.eng.ResetPrefixCache()
		all = all && ok
		if ok && c.pub != nil {
			batches[i] = s.kvBatch([]KVEvent{ev})
		}
	}
	s.mu.Unlock()
	for i, b := range batches {
		if b != nil {
			_, _ = s.cores[i].pub.Publish(b, s.schema)
		}
	}
	if !all {
		(&APIError{Code: http.StatusBadRequest, Type: "BadRequestError", Message: "Failed to reset prefix cache: requests are running."}).write(w)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// --- /metrics ---

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	mw := &metricsWriter{}
	if names, ok := r.URL.Query()["name[]"]; ok { // as prometheus_client does
		mw.keep = make(map[string]bool, len(names))
		for _, n := range names {
			mw.keep[n] = true
		}
	}
	s.mu.Lock()
	// One sample per engine core in every per-engine family, engine="r"
	// in rank order, as vLLM's PrometheusStatLogger makes its children.
	st := make([]Stats, len(s.cores))
	model := escapeLabel(s.cfg.Model)
	for i, c := range s.cores {
		st[i] = c.eng.Stats()
		mw.engines = append(mw.engines, `engine="`+strconv.Itoa(c.rank)+`",model_name="`+model+`"`)
	}
	mw.created = s.cores[0].metrics.created
	hist := func(h func(m *serverMetrics) *histogram) func(int) *histogram {
		return func(i int) *histogram { return h(s.cores[i].metrics) }
	}
	mw.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", func(i int) float64 { return float64(st[i].Running) })
	mw.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", func(i int) float64 { return float64(st[i].Waiting + st[i].WaitingRemote) })
	mw.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", func(i int) float64 { return st[i].KVUsage })
	mw.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", func(i int) float64 { return float64(st[i].PrefixQueries) })
	mw.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", func(i int) float64 { return float64(st[i].PrefixHits) })
	mw.counter("vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", func(i int) float64 { return float64(st[i].ExternalQueries) })
	mw.counter("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", func(i int) float64 { return float64(st[i].ExternalHits) })
	mw.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", func(i int) float64 { return float64(st[i].Preemptions) })
	mw.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", func(i int) float64 { return float64(st[i].PromptTokens) })
	mw.counter("vllm:generation_tokens", "Number of generation tokens processed.", func(i int) float64 { return float64(st[i].GenerationTokens) })
	const successHelp = "Count of successfully processed requests."
	mw.header("vllm:request_success_total", successHelp, "counter")
	// vLLM makes these children reason by reason, engine by engine.
	reasons := []struct {
		name string
		v    FinishReason // NotFinished: "error", which the simulator never reports
	}{{"stop", FinishStop}, {"length", FinishLength}, {"abort", FinishAbort}, {"error", NotFinished}}
	for _, r := range reasons {
		for i, l := range mw.engines {
			var v int64
			if r.v != NotFinished {
				v = st[i].Finished[r.v]
			}
			mw.sample("vllm:request_success_total", withLabel(l, "finished_reason", r.name), float64(v))
		}
	}
	mw.createdHeader("vllm:request_success_created", successHelp)
	for _, r := range reasons {
		for _, l := range mw.engines {
			mw.sample("vllm:request_success_created", withLabel(l, "finished_reason", r.name), mw.created)
		}
	}
	mw.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", hist(func(m *serverMetrics) *histogram { return m.ttft }))
	mw.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", hist(func(m *serverMetrics) *histogram { return m.itl }))
	mw.histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", hist(func(m *serverMetrics) *histogram { return m.tpot }))
	mw.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", hist(func(m *serverMetrics) *histogram { return m.e2e }))
	mw.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", hist(func(m *serverMetrics) *histogram { return m.queue }))
	mw.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", hist(func(m *serverMetrics) *histogram { return m.inference }))
	mw.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", hist(func(m *serverMetrics) *histogram { return m.prefill }))
	mw.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", hist(func(m *serverMetrics) *histogram { return m.decode }))
	mw.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", hist(func(m *serverMetrics) *histogram { return m.promptTokens }))
	mw.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", hist(func(m *serverMetrics) *histogram { return m.genTokens }))
	if m := s.cores[0].metrics; len(m.lora) > 0 {
		// Registered before cache_config_info, as in vLLM's logger; every
		// label combination ever set, oldest first, none removed.
		mw.header("vllm:lora_requests_info", "Running stats on lora requests.", "gauge")
		for _, l := range m.lora {
			mw.sample("vllm:lora_requests_info", l.labels, l.ts)
		}
	}
	// vLLM's log_metrics_info sets one info series per engine index.
	mw.header("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge")
	for _, c := range s.cores {
		mw.sample("vllm:cache_config_info", s.cacheConfigLabels(c.rank), 1)
	}
	mw.end()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(mw.b.Bytes())
}

func (s *Server) cacheConfigLabels(rank int) string {
	pyBool := func(b bool) string {
		if b {
			return "True"
		}
		return "False"
	}
	bs := strconv.Itoa(s.cfg.BlockSize)
	// Sorted by label name, as prometheus_client renders them.
	pairs := [][2]string{
		{"block_size", bs}, {"cache_dtype", "auto"}, {"enable_prefix_caching", pyBool(!s.cfg.DisablePrefixCaching)},
		{"engine", strconv.Itoa(rank)}, {"gpu_memory_utilization", "0.9"}, {"hash_block_size", bs}, {"is_attention_free", "False"},
		{"kv_cache_dtype_skip_layers", "[]"}, {"kv_cache_memory_bytes", "None"},
		{"kv_cache_size_tokens", strconv.Itoa(s.cfg.KVCapacityTokens())}, {"kv_offloading_backend", "native"},
		{"kv_offloading_size", "None"}, {"kv_sharing_fast_prefill", "False"}, {"mamba_block_size", "None"},
		{"mamba_cache_dtype", "auto"}, {"mamba_cache_mode", "none"}, {"mamba_page_size_padded", "None"},
		{"mamba_ssm_cache_dtype", "auto"}, {"num_cpu_blocks", "None"}, {"num_gpu_blocks", strconv.Itoa(s.cfg.NumBlocks)},
		{"num_gpu_blocks_override", "None"}, {"prefix_caching_hash_algo", s.algo}, {"sliding_window", "None"},
		{"user_specified_block_size", "False"}, {"user_specified_mamba_block_size", "False"},
	}
	var b []byte
	for i, p := range pairs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p[0]...)
		b = append(b, `="`...)
		b = append(b, escapeLabel(p[1])...)
		b = append(b, '"')
	}
	return string(b)
}
