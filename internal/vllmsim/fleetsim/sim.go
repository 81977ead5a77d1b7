package fleetsim

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
)

// Request is one simulated client request. Workloads create it; the router
// reads it. Fields other than Keys are set by the workload.
// It is plain data with no internal synchronisation: share it only read-only.
type Request struct {
	// ID is unique within a run (assigned by the workload, in arrival order).
	ID int64
	// Arrival is the virtual time the request reaches the router.
	Arrival time.Duration
	// Prompt is the prompt's token ids.
	Prompt []uint32
	// OutputLen is the exact number of output tokens (ignore_eos).
	OutputLen int
	// Group, User and Turn describe where the request comes from: the
	// shared-prefix group (customer), the user (prompt) within it, and the
	// conversation turn (0 for single-turn workloads).
	Group, User, Turn int
	// Keys are the block keys of the prompt's full blocks, as the replicas'
	// BlockHasher computes them (Config.Hasher), set by the simulator before
	// routing. A router that hashes the prompt itself with the same hasher
	// gets the same keys.
	Keys []uint64
}

// Router picks the replica for a request. st lists the routable replicas;
// return one of them, or nil to reject the request (admission control).
// Routers run on the simulator's goroutine and may keep state; st and the
// replicas are only valid during the call.
type Router interface {
	Route(req *Request, st *State) *Replica
}

// PDRouter is implemented by routers that disaggregate prefill and decode,
// as llm-d's P/D profile with vLLM's NixlConnector: the request is
// prefilled on prefill (stopping after one token and holding its blocks),
// then runs on decode, which pulls the prompt's KV (Config.TransferPerBlock
// per block not cached locally) instead of computing it and releases the
// prefill replica's blocks when its first token is out. A nil prefill (or
// prefill == decode) runs the request on decode alone; a nil decode rejects
// it. When a Router implements PDRouter, the simulator calls RoutePD instead
// of Route.
// The simulator calls it only from the goroutine running Sim.Run, so it need
// not be safe for concurrent use.
type PDRouter interface {
	Router
	RoutePD(req *Request, st *State) (prefill, decode *Replica)
}

// RouterFunc adapts a function to Router.
// The simulator calls it only from the goroutine running Sim.Run, so it need
// not be safe for concurrent use.
type RouterFunc func(req *Request, st *State) *Replica

// Route calls f.
func (f RouterFunc) Route(req *Request, st *State) *Replica { return f(req, st) }

// State is the fleet as a router sees it at one instant; it is valid only
// during the Route call and is not safe for concurrent use.
type State struct {
	// Now is the current virtual time.
	Now time.Duration
	// Replicas are the routable replicas: started and not draining, ordered
	// by ID.
	Replicas []*Replica
	// Starting counts replicas added but not yet ready.
	Starting int
	// Rand is the simulator's seeded random source, for randomised routers
	// that want reproducible runs.
	Rand *rand.Rand
}

// ReplicaSpec describes a replica to start.
// It is plain data with no internal synchronisation: share it only read-only.
type ReplicaSpec struct {
	// Engine is the replica's engine; the zero value means Config.Engine.
	Engine vllmsim.Config
	// Labels are free-form labels (role, zone, ...), visible to routers.
	Labels map[string]string
}

// Config configures a simulation. Hooks are optional (nil = off).
// It is plain data with no internal synchronisation: share it only read-only.
type Config struct {
	// Engine is the default engine configuration of every replica
	// (vllmsim.Qwen3_32B_H100x2 if zero).
	Engine vllmsim.Config
	// Replicas is the number of identical replicas ready at time 0, used
	// when Fleet is empty (default 1).
	Replicas int
	// Fleet, if set, lists the replicas ready at time 0.
	Fleet []ReplicaSpec
	// StartupDelay is how long a replica added during the run takes to
	// become ready (model load, CUDA graphs, ...).
	StartupDelay time.Duration
	// Seed seeds routing randomness and the engines' output tokens.
	Seed uint64
	// Hasher computes block identities in every replica and Request.Keys
	// (default vllmsim.FastHasher{Seed: Seed}).
	Hasher vllmsim.BlockHasher
	// HoldWhenEmpty makes requests that arrive while no replica is
	// routable wait at the gateway (in arrival order) and be routed when a
	// replica becomes ready, instead of going to the router (which would
	// have to reject them): scale-from-zero cold starts. Their TTFT
	// includes the wait. Held requests keep the run going while a replica
	// is starting; if none is, they end the run as Unfinished once the
	// workload is exhausted. Control.Holding counts them.
	HoldWhenEmpty bool
	// MaxTime stops the run at this virtual time (0 = run until the
	// workload is exhausted and every request finished). Requests still in
	// flight count as Unfinished.
	MaxTime time.Duration

	// OnKVEvent, if set, receives every replica's KV events (BlockStored,
	// BlockRemoved, AllBlocksCleared) at their publication time plus
	// KVEventDelay, in virtual-time order: feed a precise prefix index with
	// it. The event's slices are only valid during the call.
	OnKVEvent func(r *Replica, at time.Duration, ev vllmsim.KVEvent)
	// KVEventDelay delays OnKVEvent deliveries (ZMQ and indexing lag).
	KVEventDelay time.Duration
	// ScrapeInterval makes Replica.Scraped return metrics as of the last
	// scrape, every ScrapeInterval, like a router polling /metrics. 0 means
	// Scraped returns live values.
	ScrapeInterval time.Duration
	// OnTick, if set, is called every TickInterval with a Control to
	// observe the fleet and add or remove replicas (an autoscaler).
	OnTick       func(c *Control)
	TickInterval time.Duration
	// SampleInterval is the spacing of Report.Series samples (default 1 s).
	SampleInterval time.Duration
	// OnComplete, if set, is called when a request finishes.
	OnComplete func(res Result)
}

// ErrNoReplicas is returned by New when the configuration starts no
// replica and has no OnTick hook that could add one.
var ErrNoReplicas = errors.New("fleetsim: no replicas")

// Sim is one discrete-event simulation run. It is not safe for concurrent
// use; Run drives it on the caller's goroutine, without sleeping.
type Sim struct {
	cfg      Config
	workload Workload
	feedback Feedback
	router   Router
	rng      *rand.Rand
	now      time.Duration

	replicas []*Replica // every replica ever added, by ID
	live     int        // replicas not removed
	routable []*Replica
	starting int
	events   eventHeap
	seq      uint64

	st       State
	inflight int
	holding  []*Request // HoldWhenEmpty: arrived while no replica was routable
	results  []Result
	recs     map[*vllmsim.Seq]*record
	itl      histogram
	rejected int
	series   []Sample
	replSec  float64
	lastAcct time.Duration
	ctl      Control
	done     bool
}

// New returns a simulation of workload w routed by r.
func New(cfg Config, w Workload, r Router) (*Sim, error) {
	if cfg.StartupDelay < 0 || cfg.MaxTime < 0 || cfg.KVEventDelay < 0 || cfg.ScrapeInterval < 0 || cfg.TickInterval < 0 {
		return nil, fmt.Errorf("fleetsim: negative duration in config (StartupDelay %v, MaxTime %v, KVEventDelay %v, ScrapeInterval %v, TickInterval %v)",
			cfg.StartupDelay, cfg.MaxTime, cfg.KVEventDelay, cfg.ScrapeInterval, cfg.TickInterval)
	}
	if cfg.Engine == (vllmsim.Config{}) {
		cfg.Engine = vllmsim.Qwen3_32B_H100x2()
	}
	if cfg.Hasher == nil {
		cfg.Hasher = vllmsim.FastHasher{Seed: cfg.Seed}
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = time.Second
	}
	if len(cfg.Fleet) == 0 {
		n := cfg.Replicas
		if n == 0 && cfg.OnTick == nil {
			n = 1
		}
		for range n {
			cfg.Fleet = append(cfg.Fleet, ReplicaSpec{})
		}
	}
	if len(cfg.Fleet) == 0 && cfg.OnTick == nil {
		return nil, ErrNoReplicas
	}
	if cfg.OnTick != nil && cfg.TickInterval <= 0 {
		return nil, fmt.Errorf("fleetsim: OnTick needs TickInterval > 0")
	}
	if w == nil || r == nil {
		return nil, fmt.Errorf("fleetsim: workload and router are required")
	}
	s := &Sim{
		cfg: cfg, workload: w, router: r,
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0xda3e39cb94b95bdb)),
		recs: make(map[*vllmsim.Seq]*record),
	}
	s.feedback, _ = w.(Feedback)
	s.ctl.sim = s
	for _, sp := range cfg.Fleet {
		if _, err := s.addReplica(sp, 0); err != nil {
			return nil, err
		}
	}
	return s, nil
}

type record struct {
	req     *Request
	res     Result
	last    time.Duration
	replic  *Replica // the (decode) replica
	prefill *Replica // P/D prefill replica, or nil
	leg     uint8
}

const (
	legWhole uint8 = iota
	legPrefill
	legDecode
)

// Result is the outcome of one request.
// It is plain data with no internal synchronisation: share it only read-only.
type Result struct {
	ID                int64
	Group, User, Turn int
	Replica           int // replica ID (the decode replica under P/D), -1 if rejected
	// PrefillReplica is the P/D prefill replica's ID, or -1.
	PrefillReplica int
	Arrival        time.Duration
	// TTFT is the time from arrival to the first token; E2E to the last.
	TTFT, E2E time.Duration
	// Queue is the time from arrival to admission into a batch.
	Queue time.Duration
	// PromptTokens, CachedTokens (prefix-cache hit on the replica that
	// decoded) and OutputTokens.
	PromptTokens, CachedTokens, OutputTokens int
	// RemoteTokens are the prompt tokens pulled from the P/D prefill
	// replica.
	RemoteTokens int
	// Preemptions of the request.
	Preemptions int
	Finished    bool
	Rejected    bool
}

// Run runs the simulation to completion (or Config.MaxTime) and returns the
// report. A Sim runs once.
func (s *Sim) Run() (*Report, error) {
	if s.done {
		return nil, errors.New("fleetsim: Run called twice")
	}
	s.done = true
	s.push(event{at: 0, kind: evSample})
	if s.cfg.OnTick != nil {
		s.push(event{at: 0, kind: evTick})
	}
	if s.cfg.ScrapeInterval > 0 {
		s.push(event{at: 0, kind: evScrape})
	}
	for {
		ta, okA := s.workload.Peek()
		var te time.Duration
		okE := len(s.events) > 0
		if okE {
			te = s.events[0].at
		}
		if !okA && !s.busy() {
			break
		}
		if okA && (!okE || ta <= te) {
			if ta < s.now {
				ta = s.now
			}
			if s.cfg.MaxTime > 0 && ta > s.cfg.MaxTime {
				break
			}
			s.advance(ta)
			s.arrive(s.workload.Pop())
			continue
		}
		if !okE {
			break
		}
		ev := heap.Pop(&s.events).(event)
		if s.cfg.MaxTime > 0 && ev.at > s.cfg.MaxTime {
			break
		}
		s.advance(ev.at)
		s.handle(ev)
	}
	return s.report(), nil
}

// busy reports whether requests are in flight or replicas still have work.
func (s *Sim) busy() bool {
	if s.inflight > 0 || (len(s.holding) > 0 && s.starting > 0) {
		return true
	}
	for _, r := range s.replicas {
		if r.busy {
			return true
		}
	}
	return false
}

func (s *Sim) advance(t time.Duration) {
	if t < s.now {
		return
	}
	s.replSec += float64(s.live) * (t - s.now).Seconds()
	s.now = t
}

func (s *Sim) arrive(req *Request) {
	if s.cfg.HoldWhenEmpty && len(s.routable) == 0 {
		s.holding = append(s.holding, req)
		return
	}
	if cap(req.Keys) == 0 {
		req.Keys = make([]uint64, 0, len(req.Prompt)/s.cfg.Engine.BlockSize)
	}
	req.Keys = blockKeys(s.cfg.Hasher, req.Keys[:0], req.Prompt, s.cfg.Engine.BlockSize)
	s.st.Now = s.now
	s.st.Replicas = s.routable
	s.st.Starting = s.starting
	s.st.Rand = s.rng
	var r, p *Replica
	if pd, ok := s.router.(PDRouter); ok {
		p, r = pd.RoutePD(req, &s.st)
		if p == r || (p != nil && (p.removed || !p.ready)) {
			p = nil
		}
	} else {
		r = s.router.Route(req, &s.st)
	}
	if r == nil || r.removed || !r.ready {
		s.rejected++
		res := Result{ID: req.ID, Group: req.Group, User: req.User, Turn: req.Turn, Replica: -1,
			PrefillReplica: -1, Arrival: req.Arrival, PromptTokens: len(req.Prompt), Rejected: true}
		s.results = append(s.results, res)
		if s.feedback != nil {
			s.feedback.Completed(s.now, req, nil)
		}
		return
	}
	first := r
	er := &vllmsim.Request{
		ID: fmt.Sprint(req.ID), Prompt: req.Prompt, MaxTokens: max(req.OutputLen, 1), IgnoreEOS: true,
	}
	if p != nil {
		first = p
		// The prefill leg must not write its sampled token into the
		// prompt's spare capacity, which the decode leg uses.
		er = &vllmsim.Request{ID: er.ID, Prompt: req.Prompt[:len(req.Prompt):len(req.Prompt)], MaxTokens: 1, RemoteDecode: true}
	}
	seq, err := first.eng.Add(er, s.now)
	if err != nil {
		s.rejected++
		s.results = append(s.results, Result{ID: req.ID, Group: req.Group, User: req.User, Turn: req.Turn,
			Replica: r.id, PrefillReplica: -1, Arrival: req.Arrival, PromptTokens: len(req.Prompt), Rejected: true})
		if s.feedback != nil {
			s.feedback.Completed(s.now, req, nil)
		}
		return
	}
	rec := &record{req: req, replic: r, prefill: p}
	rec.res = Result{ID: req.ID, Group: req.Group, User: req.User, Turn: req.Turn, Replica: r.id,
		PrefillReplica: -1, Arrival: req.Arrival, PromptTokens: len(req.Prompt)}
	if p != nil {
		rec.res.PrefillReplica = p.id
		rec.leg = legPrefill
		p.inflight++
		p.routed++
	}
	s.recs[seq] = rec
	s.inflight++
	r.inflight++
	r.routed++
	s.kick(first)
	if w := first.eng.Stats().Waiting; w > first.maxWaiting {
		first.maxWaiting = w
	}
}

// prefillDone moves a P/D request from its prefill replica to its decode
// replica, with the KV-transfer parameters of vLLM's NixlConnector.
func (s *Sim) prefillDone(pseq *vllmsim.Seq, rec *record) {
	delete(s.recs, pseq)
	p, d := rec.prefill, rec.replic
	p.inflight--
	p.completed++
	rec.res.Queue = pseq.Admitted - rec.req.Arrival
	rec.leg = legDecode
	er := &vllmsim.Request{ID: pseq.Req.ID, Prompt: rec.req.Prompt, MaxTokens: max(rec.req.OutputLen, 1),
		IgnoreEOS: true, RemotePrefill: true}
	seq, err := d.eng.Add(er, s.now)
	if err != nil || d.removed {
		p.eng.Release(pseq.Req.ID)
		rec.res.Rejected = true
		s.rejected++
		s.inflight--
		d.inflight--
		s.results = append(s.results, rec.res)
		if s.feedback != nil {
			s.feedback.Completed(s.now, rec.req, nil)
		}
		return
	}
	s.recs[seq] = rec
	s.kick(d)
}

func blockKeys(h vllmsim.BlockHasher, dst []uint64, tokens []uint32, bs int) []uint64 {
	var parent vllmsim.Hash
	for i := 0; (i+1)*bs <= len(tokens); i++ {
		parent = h.HashBlock(parent, tokens[i*bs:(i+1)*bs], "")
		dst = append(dst, parent.Key())
	}
	return dst
}

func (s *Sim) kick(r *Replica) {
	if r.busy || r.removed || !r.ready {
		return
	}
	d, ok := r.eng.Schedule(s.now)
	if ok {
		r.busy = true
		s.push(event{at: s.now + d, kind: evStepDone, r: r})
		return
	}
	if t, ok := r.eng.NextWake(); ok && (r.wakeAt <= s.now || t < r.wakeAt) {
		r.wakeAt = t
		s.push(event{at: t, kind: evWake, r: r})
	}
}

func (s *Sim) handle(ev event) {
	switch ev.kind {
	case evStepDone:
		s.stepDone(ev.r)
	case evWake:
		s.kick(ev.r)
	case evReady:
		r := ev.r
		if r.removed {
			return
		}
		r.ready = true
		s.starting--
		if !r.draining {
			s.rebuildRoutable()
		}
		r.scrape()
		held := s.holding
		s.holding = nil
		for _, req := range held {
			s.arrive(req)
		}
	case evKV:
		s.cfg.OnKVEvent(ev.r, s.now, ev.kv)
	case evTick:
		s.cfg.OnTick(&s.ctl)
		if s.workloadPending() {
			s.push(event{at: s.now + s.cfg.TickInterval, kind: evTick})
		}
	case evScrape:
		for _, r := range s.replicas {
			if r.ready && !r.removed {
				r.scrape()
			}
		}
		if s.workloadPending() {
			s.push(event{at: s.now + s.cfg.ScrapeInterval, kind: evScrape})
		}
	case evSample:
		s.sample()
		if s.workloadPending() {
			s.push(event{at: s.now + s.cfg.SampleInterval, kind: evSample})
		}
	}
}

func (s *Sim) workloadPending() bool {
	_, ok := s.workload.Peek()
	return ok || s.busy()
}

func (s *Sim) stepDone(r *Replica) {
	out := r.eng.Complete(s.now)
	r.busy = false
	if s.cfg.OnKVEvent != nil {
		for _, kv := range out.Events {
			if s.cfg.KVEventDelay <= 0 {
				s.cfg.OnKVEvent(r, s.now, kv)
				continue
			}
			kv.Keys = append([]uint64(nil), kv.Keys...)
			kv.Tokens = append([]uint32(nil), kv.Tokens...)
			s.push(event{at: s.now + s.cfg.KVEventDelay, kind: evKV, r: r, kv: kv})
		}
	}
	for _, t := range out.Tokens {
		rec := s.recs[t.Seq]
		if rec == nil {
			continue
		}
		if rec.leg == legPrefill {
			if t.Finish != vllmsim.NotFinished {
				s.prefillDone(t.Seq, rec)
			}
			continue
		}
		if t.First {
			rec.res.TTFT = s.now - rec.req.Arrival
			rec.res.CachedTokens = t.Seq.CachedTokens()
			if rec.leg == legDecode {
				rec.res.RemoteTokens = t.Seq.RemoteTokens()
				// NIXL's notification: the prefill replica frees the blocks.
				if rec.prefill.eng.Release(t.Seq.Req.ID) {
					s.kick(rec.prefill)
				}
			} else {
				rec.res.Queue = t.Seq.Admitted - rec.req.Arrival
			}
		} else {
			s.itl.add(s.now - rec.last)
		}
		rec.last = s.now
		if t.Finish != vllmsim.NotFinished {
			s.finish(t.Seq, rec)
		}
	}
	if r.draining && r.inflight == 0 {
		s.remove(r)
		return
	}
	s.kick(r)
}

func (s *Sim) finish(seq *vllmsim.Seq, rec *record) {
	delete(s.recs, seq)
	rec.res.E2E = s.now - rec.req.Arrival
	rec.res.OutputTokens = len(seq.Output())
	rec.res.Preemptions = seq.Preemptions()
	rec.res.Finished = true
	s.results = append(s.results, rec.res)
	s.inflight--
	rec.replic.inflight--
	rec.replic.completed++
	if s.cfg.OnComplete != nil {
		s.cfg.OnComplete(rec.res)
	}
	if s.feedback != nil {
		s.feedback.Completed(s.now, rec.req, seq.Output())
	}
}

func (s *Sim) addReplica(sp ReplicaSpec, delay time.Duration) (*Replica, error) {
	ec := sp.Engine
	if ec == (vllmsim.Config{}) {
		ec = s.cfg.Engine
	}
	id := len(s.replicas)
	eng, err := vllmsim.NewEngine(ec, vllmsim.WithHasher(s.cfg.Hasher),
		vllmsim.WithSeed(s.cfg.Seed), vllmsim.WithEngineID(fmt.Sprintf("replica-%d", id)))
	if err != nil {
		return nil, fmt.Errorf("fleetsim: replica %d: %w", id, err)
	}
	r := &Replica{sim: s, id: id, eng: eng, labels: sp.Labels, added: s.now}
	s.replicas = append(s.replicas, r)
	s.live++
	if delay <= 0 {
		r.ready = true
		r.readyAt = s.now
		s.rebuildRoutable()
		r.scrape()
	} else {
		r.readyAt = s.now + delay
		s.starting++
		s.push(event{at: r.readyAt, kind: evReady, r: r})
	}
	return r, nil
}

func (s *Sim) rebuildRoutable() {
	s.routable = s.routable[:0:0]
	for _, r := range s.replicas {
		if r.ready && !r.draining && !r.removed {
			s.routable = append(s.routable, r)
		}
	}
}

func (s *Sim) drain(r *Replica) {
	if r.draining || r.removed {
		return
	}
	r.draining = true
	if !r.ready {
		s.starting--
		s.remove(r)
		return
	}
	s.rebuildRoutable()
	if r.inflight == 0 && !r.busy {
		s.remove(r)
	}
}

func (s *Sim) remove(r *Replica) {
	if !r.removed {
		s.live--
	}
	r.removed = true
	r.removedAt = s.now
	s.rebuildRoutable()
}

func (s *Sim) push(ev event) {
	s.seq++
	ev.seq = s.seq
	heap.Push(&s.events, ev)
}

type eventKind uint8

const (
	evStepDone eventKind = iota
	evWake
	evReady
	evKV
	evTick
	evScrape
	evSample
)

type event struct {
	at   time.Duration
	seq  uint64
	kind eventKind
	r    *Replica
	kv   vllmsim.KVEvent
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = event{}
	*h = old[:len(old)-1]
	return x
}
