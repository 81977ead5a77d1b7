package autoscalersim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/routekit/routekit/autoscaler"
)

// Engine is the step-level model of one vLLM replica used by QueueFleet: a
// continuous-batching scheduler with chunked prefill and paged KV memory.
// Every engine step schedules one decode token for each running request past
// its prefill, then prefill chunks (running requests first, then new ones
// admitted FIFO while fewer than MaxSeqs run and the prompt fits in the free
// KV space), up to MaxBatchedTokens tokens, and lasts
//
//	StepBase + StepPerSeq × decodes + StepPerToken × prefill tokens.
//
// KV use grows by one token per decoded token; when the decodes of a step do
// not fit, the most recently admitted request is preempted and recomputed
// later (vLLM's recompute preemption). A request's first token comes at the
// end of the step that finishes its prefill.
// It is a plain value, safe to copy and to read from several goroutines.
type Engine struct {
	// MaxSeqs is vLLM's max_num_seqs.
	MaxSeqs int
	// MaxBatchedTokens is vLLM's max_num_batched_tokens.
	MaxBatchedTokens int
	// KVTokens is the KV cache's capacity in tokens.
	KVTokens int
	// StepBase, StepPerSeq and StepPerToken make up a step's duration.
	StepBase, StepPerSeq, StepPerToken time.Duration
}

// DefaultEngine is a mid-size model on one accelerator whose KV cache, not
// its batch limit, bounds concurrency (as in most vLLM deployments): about
// 9 requests/s at saturation for DefaultWorkload, 45 ms TTFT when idle.
func DefaultEngine() Engine {
	return Engine{MaxSeqs: 64, MaxBatchedTokens: 1024, KVTokens: 40000,
		StepBase: 8 * time.Millisecond, StepPerSeq: 250 * time.Microsecond, StepPerToken: 40 * time.Microsecond}
}

// validate reports why e cannot run, if it cannot.
func (e Engine) validate() error {
	if e.MaxSeqs < 1 || e.MaxBatchedTokens < 1 || e.KVTokens < 1 {
		return fmt.Errorf("autoscalersim: engine max seqs %d, max batched tokens %d, KV tokens %d: want each ≥ 1", e.MaxSeqs, e.MaxBatchedTokens, e.KVTokens)
	}
	if e.StepBase < 0 || e.StepPerSeq < 0 || e.StepPerToken < 0 {
		return errors.New("autoscalersim: negative engine step time")
	}
	return nil
}

// Workload draws request sizes: prompt and output lengths uniform in
// [PromptMin, PromptMax] and [OutputMin, OutputMax].
// It is a plain value, safe to copy and to read from several goroutines.
type Workload struct {
	// PromptMin and PromptMax bound prompt lengths (tokens).
	PromptMin, PromptMax int
	// OutputMin and OutputMax bound output lengths (tokens).
	OutputMin, OutputMax int
}

// DefaultWorkload is a chat-like mix: prompts 256–1280 tokens, outputs 64–320.
func DefaultWorkload() Workload {
	return Workload{PromptMin: 256, PromptMax: 1280, OutputMin: 64, OutputMax: 320}
}

// QueueFleet is this package's own Fleet: replicas built from Engine, a
// least-requests gateway that holds requests while no replica is ready, and
// Kubernetes-like scaling (new replicas ready after Scenario.Startup;
// scale-down removes not-ready replicas first, then drains the least loaded
// ready ones, which finish their requests before they stop costing).
//
// It exists so the autoscaler can be measured before and independently of
// internal/vllmsim; both plug into the same Fleet interface.
// Run only reads the QueueFleet: concurrent runs on one value are independent.
type QueueFleet struct {
	// Engine configures every replica; the zero value means DefaultEngine().
	Engine Engine
	// Workload draws request sizes; the zero value means DefaultWorkload().
	Workload Workload
	// NeverReady lists creation indexes (0-based, counting initial replicas)
	// of replicas that never become ready.
	NeverReady map[int]bool
}

var _ Fleet = (*QueueFleet)(nil)

type qseq struct {
	req            int
	prompt, output int
	target         int // tokens to prefill: prompt, plus generated ones after a preemption
	prefilled      int
	decoded        int // output tokens produced
	held           int // KV tokens held
}

type qreplica struct {
	idx              int
	created, readyAt float64 // seconds; readyAt = +Inf if never
	draining         bool
	removed          bool
	waiting          []*qseq
	running          []*qseq
	kvUsed           int
	stepEnd          float64 // end of the current step; NaN when idle
	stepDecode       []*qseq
	stepPrefill      []*qseq
	stepChunk        []int
	completed        int
	heapIdx          int
}

func (r *qreplica) load() int { return len(r.waiting) + len(r.running) }

func (r *qreplica) ready(now float64) bool { return !r.removed && !r.draining && now >= r.readyAt }

// stepHeap orders busy replicas by step end.
type stepHeap []*qreplica

// Len, Less, Swap, Push and Pop implement heap.Interface.
func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	if h[i].stepEnd != h[j].stepEnd {
		return h[i].stepEnd < h[j].stepEnd
	}
	return h[i].idx < h[j].idx
}
func (h stepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].heapIdx = i; h[j].heapIdx = j }
func (h *stepHeap) Push(x any)   { r := x.(*qreplica); r.heapIdx = len(*h); *h = append(*h, r) }
func (h *stepHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	r.heapIdx = -1
	return r
}

type qsim struct {
	f        *QueueFleet
	sc       Scenario
	eng      Engine
	now      float64
	replicas []*qreplica // every replica ever created
	busy     stepHeap
	gateway  []*qseq
	out      *Outcome
	desired  int
	lastAcct float64
	arrived  int // since last tick
}

// Run implements Fleet.
func (f *QueueFleet) Run(sc Scenario, ctl Controller) (*Outcome, error) {
	if sc.Duration <= 0 || ctl == nil || ctl.Interval() <= 0 {
		return nil, errors.New("autoscalersim: scenario needs a duration and a controller with a positive interval")
	}
	eng := f.Engine
	if eng.MaxSeqs == 0 {
		eng = DefaultEngine()
	}
	wl := f.Workload
	if wl.PromptMax == 0 {
		wl = DefaultWorkload()
	}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if err := wl.validate(); err != nil {
		return nil, err
	}
	if err := eng.validate(); err != nil {
		return nil, err
	}
	s := &qsim{f: f, sc: sc, eng: eng, out: &Outcome{}}
	rng := rand.New(rand.NewPCG(sc.Seed+1, sc.Seed+2))
	arrivals := sc.Arrivals()
	seqs := make([]*qseq, len(arrivals))
	s.out.Requests = make([]RequestRecord, len(arrivals))
	for i, at := range arrivals {
		seqs[i] = &qseq{req: i,
			prompt: wl.PromptMin + rng.IntN(wl.PromptMax-wl.PromptMin+1),
			output: wl.OutputMin + rng.IntN(wl.OutputMax-wl.OutputMin+1)}
		s.out.Requests[i] = RequestRecord{Arrival: at, TTFT: math.MaxInt64}
	}
	for range sc.InitialReplicas {
		s.add(math.Inf(-1))
	}
	s.desired = sc.InitialReplicas
	interval := ctl.Interval().Seconds()
	nextTick := 0.0
	ai := 0
	end := sc.Duration.Seconds()
	for {
		// Next event: arrival, tick, step end, or a replica becoming ready.
		next, kind := end, 0
		if ai < len(arrivals) {
			if t := arrivals[ai].Seconds(); t < next {
				next, kind = t, 1
			}
		}
		if nextTick < next {
			next, kind = nextTick, 2
		}
		if len(s.busy) > 0 && s.busy[0].stepEnd < next {
			next, kind = s.busy[0].stepEnd, 3
		}
		if t := s.nextReady(); t < next {
			next, kind = t, 4
		}
		s.account(next)
		s.now = next
		switch kind {
		case 0:
			return s.out, nil
		case 1:
			s.arrived++
			s.route(seqs[ai])
			ai++
		case 2:
			s.tick(ctl, interval)
			nextTick += interval
		case 3:
			r := heap.Pop(&s.busy).(*qreplica)
			s.finishStep(r)
		case 4:
			s.dispatchGateway()
		}
	}
}

func (s *qsim) add(now float64) {
	idx := len(s.replicas)
	r := &qreplica{idx: idx, created: now, readyAt: now + s.sc.Startup.Seconds(), stepEnd: math.NaN(), heapIdx: -1}
	if math.IsInf(now, -1) {
		r.readyAt = math.Inf(-1)
	}
	if s.f.NeverReady[idx] {
		r.readyAt = math.Inf(1)
	}
	s.replicas = append(s.replicas, r)
}

// nextReady returns the earliest future readiness time with a gateway
// backlog to dispatch, or +Inf.
func (s *qsim) nextReady() float64 {
	if len(s.gateway) == 0 {
		return math.Inf(1)
	}
	t := math.Inf(1)
	for _, r := range s.replicas {
		if !r.removed && !r.draining && r.readyAt > s.now && r.readyAt < t {
			t = r.readyAt
		}
	}
	return t
}

func (s *qsim) account(to float64) {
	n := 0
	for _, r := range s.replicas {
		if !r.removed {
			n++
		}
	}
	s.out.ReplicaSeconds += float64(n) * (to - s.lastAcct)
	s.lastAcct = to
}

// route sends a request to the least-loaded ready replica, or holds it at
// the gateway.
func (s *qsim) route(q *qseq) {
	var best *qreplica
	for _, r := range s.replicas {
		if r.ready(s.now) && (best == nil || r.load() < best.load()) {
			best = r
		}
	}
	if best == nil {
		s.gateway = append(s.gateway, q)
		return
	}
	best.waiting = append(best.waiting, q)
	s.kick(best)
}

func (s *qsim) dispatchGateway() {
	held := s.gateway
	s.gateway = nil
	for _, q := range held {
		s.route(q)
	}
}

// kick starts a step on an idle replica with work.
func (s *qsim) kick(r *qreplica) {
	if !math.IsNaN(r.stepEnd) || r.removed {
		return
	}
	e := s.eng
	r.stepDecode, r.stepPrefill, r.stepChunk = r.stepDecode[:0], r.stepPrefill[:0], r.stepChunk[:0]
	// Preempt (newest first) until this step's decode tokens fit.
	for {
		decodes := 0
		for _, q := range r.running {
			if q.prefilled == q.target {
				decodes++
			}
		}
		if r.kvUsed+decodes <= e.KVTokens || len(r.running) <= 1 {
			break
		}
		q := r.running[len(r.running)-1]
		r.running = r.running[:len(r.running)-1]
		r.kvUsed -= q.held
		q.held, q.prefilled, q.target = 0, 0, q.prompt+q.decoded
		r.waiting = append([]*qseq{q}, r.waiting...)
	}
	budget := e.MaxBatchedTokens
	for _, q := range r.running {
		if q.prefilled == q.target && budget > 0 {
			r.stepDecode = append(r.stepDecode, q)
			budget--
		}
	}
	prefillTokens := 0
	for _, q := range r.running {
		if q.prefilled < q.target && budget > 0 {
			c := min(q.target-q.prefilled, budget)
			r.stepPrefill, r.stepChunk = append(r.stepPrefill, q), append(r.stepChunk, c)
			budget -= c
			prefillTokens += c
		}
	}
	for len(r.waiting) > 0 && budget > 0 && len(r.running) < e.MaxSeqs {
		q := r.waiting[0]
		if q.target == 0 {
			q.target = q.prompt
		}
		if r.kvUsed+q.target > e.KVTokens {
			break
		}
		r.waiting = r.waiting[1:]
		r.kvUsed += q.target
		q.held = q.target
		r.running = append(r.running, q)
		c := min(q.target, budget)
		r.stepPrefill, r.stepChunk = append(r.stepPrefill, q), append(r.stepChunk, c)
		budget -= c
		prefillTokens += c
	}
	if len(r.stepDecode) == 0 && len(r.stepPrefill) == 0 {
		return
	}
	d := e.StepBase + time.Duration(len(r.stepDecode))*e.StepPerSeq + time.Duration(prefillTokens)*e.StepPerToken
	r.stepEnd = s.now + d.Seconds()
	heap.Push(&s.busy, r)
}

func (s *qsim) finishStep(r *qreplica) {
	r.stepEnd = math.NaN()
	for i, q := range r.stepPrefill {
		q.prefilled += r.stepChunk[i]
		if q.prefilled == q.target && q.decoded == 0 {
			q.decoded = 1 // first token sampled at the end of the last prefill step
			q.held++
			r.kvUsed++
			s.out.Requests[q.req].TTFT = time.Duration((s.now - s.out.Requests[q.req].Arrival.Seconds()) * float64(time.Second))
		}
	}
	for _, q := range r.stepDecode {
		q.decoded++
		q.held++
		r.kvUsed++
	}
	kept := r.running[:0]
	for _, q := range r.running {
		if q.prefilled == q.target && q.decoded >= q.output {
			r.kvUsed -= q.held
			r.completed++
			s.out.Completed++
			continue
		}
		kept = append(kept, q)
	}
	clear(r.running[len(kept):])
	r.running = kept
	if r.draining && r.load() == 0 {
		r.removed = true
		return
	}
	s.kick(r)
}

func (s *qsim) tick(ctl Controller, interval float64) {
	now := Epoch.Add(time.Duration(s.now * float64(time.Second)))
	po := autoscaler.PoolObservation{Name: PoolName, Desired: s.desired}
	ready, notReady := 0, 0
	for _, r := range s.replicas {
		if r.removed || r.draining {
			continue
		}
		rep := autoscaler.Replica{}
		if r.ready(s.now) {
			ready++
			rep.Ready = true
			rep.Since = Epoch.Add(time.Duration(r.readyAt * float64(time.Second)))
			if math.IsInf(r.readyAt, -1) {
				rep.Since = time.Time{}
			}
			rep.Metrics = autoscaler.Metrics{SampledAt: now, Waiting: float64(len(r.waiting)), Running: float64(len(r.running)),
				KVUsage: float64(r.kvUsed) / float64(s.eng.KVTokens), RequestRate: float64(r.completed) / interval}
		} else {
			notReady++
			rep.Since = Epoch.Add(time.Duration(r.created * float64(time.Second)))
		}
		r.completed = 0
		po.Replicas = append(po.Replicas, rep)
	}
	obs := autoscaler.Observation{Pools: []autoscaler.PoolObservation{po}, GatewayQueue: len(s.gateway),
		ArrivalRate: float64(s.arrived) / interval}
	if s.now == 0 {
		obs.ArrivalRate = s.sc.RateAt(0) // no history yet: the trace's opening rate
	}
	s.arrived = 0
	dec := ctl.Tick(now, obs)
	want := s.desired
	if p, ok := dec.Pool(PoolName); ok && dec.Err == nil {
		want = p.Desired
	}
	s.out.Ticks = append(s.out.Ticks, TickRecord{At: time.Duration(s.now * float64(time.Second)), Rate: s.sc.RateAt(time.Duration(s.now * float64(time.Second))),
		Ready: ready, NotReady: notReady, Current: s.desired, Desired: want})
	s.scale(want)
}

// scale adds or removes replicas to reach n live (not draining) replicas.
func (s *qsim) scale(n int) {
	s.desired = n
	live := 0
	for _, r := range s.replicas {
		if !r.removed && !r.draining {
			live++
		}
	}
	for ; live < n; live++ {
		s.add(s.now)
	}
	for ; live > n; live-- {
		// Not-ready replicas first (newest first), then the least loaded.
		var victim *qreplica
		for i := len(s.replicas) - 1; i >= 0; i-- {
			r := s.replicas[i]
			if !r.removed && !r.draining && !r.ready(s.now) {
				victim = r
				break
			}
		}
		if victim == nil {
			for _, r := range s.replicas {
				if r.ready(s.now) && (victim == nil || r.load() < victim.load()) {
					victim = r
				}
			}
		}
		if victim == nil {
			return
		}
		if !victim.ready(s.now) || victim.load() == 0 {
			victim.removed = true
			if victim.heapIdx >= 0 {
				heap.Remove(&s.busy, victim.heapIdx)
			}
			continue
		}
		victim.draining = true
	}
	if len(s.gateway) > 0 {
		s.dispatchGateway()
	}
}
