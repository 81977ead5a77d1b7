package autoscalersim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/routekit/routekit/autoscaler"
	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
)

// VLLMFleet runs scenarios on internal/vllmsim's fleet simulator
// (fleetsim): vLLM's scheduler and paged KV cache with a timing model per
// step, replicas added and drained through fleetsim's Control, requests
// routed least-loaded. fleetsim rejects requests while no replica is ready
// (it has no gateway queue), so the scenarios keep at least one replica.
//
// Readiness times are seen at the controller's ticks, as a Kubernetes
// observer would see them; creation times are recorded when the adapter
// adds a replica.
// Run only reads the VLLMFleet: concurrent runs on one value are independent.
type VLLMFleet struct {
	// Engine configures every replica; the zero value means SmallGPU().
	Engine vllmsim.Config
	// Workload draws request sizes; the zero value means DefaultWorkload().
	Workload Workload
}

var _ Fleet = (*VLLMFleet)(nil)

// SmallGPU is vllmsim's Qwen3-8B-on-H100 timing with a small KV cache
// (4,096 blocks of 16 = 65,536 tokens) and max_num_seqs 64, so a replica
// saturates at a rate a simulation of minutes can afford: the same
// KV-bound regime as QueueFleet's default engine.
func SmallGPU() vllmsim.Config {
	c := vllmsim.Qwen3_8B_H100()
	c.NumBlocks = 4096
	c.MaxNumSeqs = 64
	c.MaxBatchedTokens = 2048
	c.DisablePrefixCaching = true
	return c
}

// traceWorkload feeds a scenario's arrivals to fleetsim.
type traceWorkload struct {
	arrivals []time.Duration
	wl       Workload
	rng      *rand.Rand
	next     int
}

// Peek implements fleetsim.Workload.
func (w *traceWorkload) Peek() (time.Duration, bool) {
	if w.next >= len(w.arrivals) {
		return 0, false
	}
	return w.arrivals[w.next], true
}

// Pop implements fleetsim.Workload.
func (w *traceWorkload) Pop() *fleetsim.Request {
	i := w.next
	w.next++
	n := w.wl.PromptMin + w.rng.IntN(w.wl.PromptMax-w.wl.PromptMin+1)
	prompt := make([]uint32, n)
	for k := range prompt {
		prompt[k] = 1000 + w.rng.Uint32N(100000)
	}
	return &fleetsim.Request{ID: int64(i), Arrival: w.arrivals[i], Prompt: prompt,
		OutputLen: w.wl.OutputMin + w.rng.IntN(w.wl.OutputMax-w.wl.OutputMin+1), Group: i, User: i}
}

// Run implements Fleet.
func (f *VLLMFleet) Run(sc Scenario, ctl Controller) (*Outcome, error) {
	if sc.Duration <= 0 || ctl == nil || ctl.Interval() <= 0 {
		return nil, errors.New("autoscalersim: scenario needs a duration and a controller with a positive interval")
	}
	if sc.InitialReplicas < 1 {
		return nil, errors.New("autoscalersim: fleetsim needs at least one initial replica")
	}
	eng := f.Engine
	if eng == (vllmsim.Config{}) {
		eng = SmallGPU()
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
	arrivals := sc.Arrivals()
	out := &Outcome{Requests: make([]RequestRecord, len(arrivals))}
	for i, at := range arrivals {
		out.Requests[i] = RequestRecord{Arrival: at, TTFT: math.MaxInt64}
	}
	a := &vllmAdapter{sc: sc, ctl: ctl, out: out, desired: sc.InitialReplicas,
		created: map[*fleetsim.Replica]time.Duration{}, readyAt: map[*fleetsim.Replica]time.Duration{}, completed: map[int]int{}}
	cfg := fleetsim.Config{
		Engine: eng, Replicas: sc.InitialReplicas, StartupDelay: sc.Startup, Seed: sc.Seed, MaxTime: sc.Duration,
		TickInterval: ctl.Interval(), OnTick: a.tick,
		OnComplete: func(res fleetsim.Result) {
			if res.Finished && res.ID >= 0 && int(res.ID) < len(out.Requests) {
				out.Requests[res.ID].TTFT = res.TTFT
				out.Completed++
				a.completed[res.Replica]++
			}
		},
	}
	wlGen := &traceWorkload{arrivals: arrivals, wl: wl, rng: rand.New(rand.NewPCG(sc.Seed+1, sc.Seed+2))}
	sim, err := fleetsim.New(cfg, wlGen, fleetsim.LeastLoaded())
	if err != nil {
		return nil, fmt.Errorf("autoscalersim: %w", err)
	}
	rep, err := sim.Run()
	if err != nil {
		return nil, fmt.Errorf("autoscalersim: %w", err)
	}
	if a.err != nil {
		return nil, a.err
	}
	out.ReplicaSeconds = rep.ReplicaSeconds
	return out, nil
}

type vllmAdapter struct {
	sc          Scenario
	ctl         Controller
	out         *Outcome
	desired     int
	lastArrived int
	created     map[*fleetsim.Replica]time.Duration
	readyAt     map[*fleetsim.Replica]time.Duration
	completed   map[int]int // by replica ID, since the last tick
	err         error
}

func (a *vllmAdapter) tick(c *fleetsim.Control) {
	nowD := c.Now()
	now := Epoch.Add(nowD)
	interval := a.ctl.Interval().Seconds()
	po := autoscaler.PoolObservation{Name: PoolName, Desired: a.desired}
	var live []*fleetsim.Replica
	ready, notReady := 0, 0
	for _, r := range c.Replicas() {
		if r.Draining() {
			continue
		}
		live = append(live, r)
		rep := autoscaler.Replica{Name: fmt.Sprintf("vllm-%d", r.ID())}
		created, known := a.created[r]
		if r.Ready() {
			ready++
			at, seen := a.readyAt[r]
			if !seen {
				at = nowD
				if !known { // initial replica: ready since long ago
					at = math.MinInt64
				}
				a.readyAt[r] = at
			}
			rep.Ready = true
			if at != math.MinInt64 {
				rep.Since = Epoch.Add(at)
			}
			rep.Metrics = autoscaler.Metrics{SampledAt: now, Waiting: float64(r.Waiting()), Running: float64(r.Running()),
				KVUsage: r.KVUsage(), RequestRate: float64(a.completed[r.ID()]) / interval}
		} else {
			notReady++
			rep.Since = Epoch.Add(created)
		}
		po.Replicas = append(po.Replicas, rep)
	}
	clear(a.completed)
	arrived := c.Arrived()
	obs := autoscaler.Observation{Pools: []autoscaler.PoolObservation{po}, ArrivalRate: float64(arrived-a.lastArrived) / interval}
	if nowD == 0 {
		obs.ArrivalRate = a.sc.RateAt(0)
	}
	a.lastArrived = arrived
	dec := a.ctl.Tick(now, obs)
	want := a.desired
	if p, ok := dec.Pool(PoolName); ok && dec.Err == nil {
		want = p.Desired
	}
	a.out.Ticks = append(a.out.Ticks, TickRecord{At: nowD, Rate: a.sc.RateAt(nowD), Ready: ready, NotReady: notReady, Current: a.desired, Desired: want})
	a.desired = want
	for n := len(live); n < want; n++ {
		r, err := c.AddReplica(fleetsim.ReplicaSpec{})
		if err != nil {
			a.err = fmt.Errorf("autoscalersim: add replica: %w", err)
			return
		}
		a.created[r] = nowD
	}
	for n := len(live); n > want; n-- {
		// Not-ready replicas first (newest first), then the least loaded.
		var victim *fleetsim.Replica
		for i := len(live) - 1; i >= 0; i-- {
			if !live[i].Ready() {
				victim = live[i]
				break
			}
		}
		if victim == nil {
			for _, r := range live {
				if victim == nil || r.InFlight() < victim.InFlight() {
					victim = r
				}
			}
		}
		c.RemoveReplica(victim)
		for i, r := range live {
			if r == victim {
				live = append(live[:i], live[i+1:]...)
				break
			}
		}
	}
}
