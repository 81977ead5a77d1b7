package autoscalersim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/routekit/routekit/autoscaler"
)

// Fleet is a replica model driven in virtual time. Run replays the scenario's
// arrivals, calls ctl every interval with an observation of the fleet and
// applies the desired count it returns (new replicas become ready after the
// scenario's start-up delay; removed ones drain). Implementations own their
// event loop; they must be deterministic for a given scenario seed.
// Run may be called from several goroutines only if the implementation says so.
type Fleet interface {
	Run(sc Scenario, ctl Controller) (*Outcome, error)
}

// Controller is what the fleet calls every Interval: it returns the desired
// replica count for the simulation's single pool.
// A Fleet calls it from its single simulation goroutine; a Controller with
// state (DecideController) must not be shared by concurrent runs.
type Controller interface {
	Interval() time.Duration
	Tick(now time.Time, obs autoscaler.Observation) autoscaler.Decision
}

// PoolName is the name of the simulated pool in observations.
const PoolName = "vllm"

// Epoch is virtual time zero.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Scenario is a rate trace with the fleet's start-up behaviour.
// It is a plain value, safe to copy and to read from several goroutines.
type Scenario struct {
	// Name labels the scenario in reports.
	Name string
	// Rate is the piecewise-linear arrival rate (requests/s): the rate at
	// Points[i].At is Points[i].Rate, linear in between, constant after the
	// last point.
	Rate []Point
	// Duration is the simulated time.
	Duration time.Duration
	// Startup is how long a new replica takes to become ready.
	Startup time.Duration
	// InitialReplicas are ready at time zero.
	InitialReplicas int
	// Seed seeds arrivals and request sizes.
	Seed uint64
	// Spike, if non-zero, is the window over which the spike metrics are
	// computed (requests arriving in [Spike[0], Spike[1])).
	Spike [2]time.Duration
	// Rise and Fall are the times the load starts to rise and to fall, for
	// the reaction-time metrics (zero: not measured).
	Rise, Fall time.Duration
	// Steady, if non-zero, is the time after which the load is constant;
	// direction changes after it count as steady-state oscillation.
	Steady time.Duration
}

// Scaled returns the scenario with every rate multiplied by f.
func (sc Scenario) Scaled(f float64) Scenario {
	pts := make([]Point, len(sc.Rate))
	for i, p := range sc.Rate {
		pts[i] = Point{At: p.At, Rate: p.Rate * f}
	}
	sc.Rate = pts
	return sc
}

// Point is one vertex of a rate trace.
// It is a plain value, safe to copy and to read from several goroutines.
type Point struct {
	// At is the time of the vertex.
	At time.Duration
	// Rate is the arrival rate there, in requests/s.
	Rate float64
}

// RateAt returns the trace's rate at t.
func (sc Scenario) RateAt(t time.Duration) float64 {
	pts := sc.Rate
	if len(pts) == 0 {
		return 0
	}
	if t <= pts[0].At {
		return pts[0].Rate
	}
	for i := 1; i < len(pts); i++ {
		if t < pts[i].At {
			a, b := pts[i-1], pts[i]
			f := float64(t-a.At) / float64(b.At-a.At)
			return a.Rate + f*(b.Rate-a.Rate)
		}
	}
	return pts[len(pts)-1].Rate
}

// Arrivals returns the scenario's arrival times, a non-homogeneous Poisson
// process sampled by thinning with the scenario seed. A trace with a NaN or
// infinite rate has no arrivals (the fleets' Run rejects it).
func (sc Scenario) Arrivals() []time.Duration {
	maxRate := 0.0
	for _, p := range sc.Rate {
		maxRate = math.Max(maxRate, p.Rate) // NaN if any rate is NaN
	}
	if !(maxRate > 0) || math.IsInf(maxRate, 1) {
		return nil
	}
	rng := rand.New(rand.NewPCG(sc.Seed, sc.Seed^0x9e3779b97f4a7c15))
	var out []time.Duration
	t := 0.0
	end := sc.Duration.Seconds()
	for {
		t += rng.ExpFloat64() / maxRate
		if t >= end {
			return out
		}
		at := time.Duration(t * float64(time.Second))
		if rng.Float64()*maxRate < sc.RateAt(at) {
			out = append(out, at)
		}
	}
}

// Bounds on what a fleet's Run simulates, so that no input sizes an
// allocation beyond them: expected arrivals (peak rate × duration), initial
// replicas, and prompt and output lengths in tokens.
const (
	maxArrivals = 10_000_000
	maxReplicas = 10_000
	maxTokens   = 1 << 20
)

// validate reports why sc cannot be simulated, if it cannot.
func (sc Scenario) validate() error {
	if sc.Startup < 0 {
		return fmt.Errorf("autoscalersim: negative start-up delay %v", sc.Startup)
	}
	if sc.InitialReplicas < 0 || sc.InitialReplicas > maxReplicas {
		return fmt.Errorf("autoscalersim: %d initial replicas, want 0 to %d", sc.InitialReplicas, maxReplicas)
	}
	peak := 0.0
	for i, p := range sc.Rate {
		if !(p.Rate >= 0) || math.IsInf(p.Rate, 1) {
			return fmt.Errorf("autoscalersim: rate %v at point %d, want a finite value ≥ 0", p.Rate, i)
		}
		peak = max(peak, p.Rate)
	}
	if n := peak * sc.Duration.Seconds(); n > maxArrivals {
		return fmt.Errorf("autoscalersim: up to %.3g arrivals (%v req/s over %v), more than %d", n, peak, sc.Duration, maxArrivals)
	}
	return nil
}

// validate reports why wl cannot draw request sizes, if it cannot.
func (wl Workload) validate() error {
	if wl.PromptMin < 1 || wl.PromptMin > wl.PromptMax || wl.PromptMax > maxTokens {
		return fmt.Errorf("autoscalersim: prompt lengths [%d, %d], want 1 ≤ min ≤ max ≤ %d", wl.PromptMin, wl.PromptMax, maxTokens)
	}
	if wl.OutputMin < 1 || wl.OutputMin > wl.OutputMax || wl.OutputMax > maxTokens {
		return fmt.Errorf("autoscalersim: output lengths [%d, %d], want 1 ≤ min ≤ max ≤ %d", wl.OutputMin, wl.OutputMax, maxTokens)
	}
	return nil
}

// Outcome is what a fleet records during a run.
// It belongs to the caller once Run returns; it is not safe for concurrent mutation.
type Outcome struct {
	// Requests holds every request's arrival and TTFT (+Inf if it never got
	// its first token).
	Requests []RequestRecord
	// ReplicaSeconds is the integral of existing replicas (starting, ready or
	// draining) over time: the cost.
	ReplicaSeconds float64
	// Ticks is one record per controller call.
	Ticks []TickRecord
	// Completed counts requests that produced their last token.
	Completed int
}

// RequestRecord is one request's fate.
// It is a plain value, safe to copy and to read from several goroutines.
type RequestRecord struct {
	// Arrival is when the request arrived.
	Arrival time.Duration
	// TTFT is its time to first token, math.MaxInt64 when it got none.
	TTFT time.Duration
}

// TickRecord is one controller call.
// It is a plain value, safe to copy and to read from several goroutines.
type TickRecord struct {
	// At is the tick's virtual time and Rate the trace's rate then.
	At   time.Duration
	Rate float64
	// Ready and NotReady count the live replicas.
	Ready, NotReady int
	// Current and Desired are the count before and after the decision.
	Current, Desired int
}

// Result summarises an Outcome against an objective.
// It is a plain value, safe to copy and to read from several goroutines.
type Result struct {
	// Scenario and Controller name the run.
	Scenario, Controller string
	// Requests counts the requests scored (the tail cut-off excluded).
	Requests int
	// Attainment is the fraction of requests with TTFT ≤ objective.
	Attainment float64
	// P90 is the TTFT p90 over all requests; SpikeP90 over the spike window.
	P90, SpikeP90 time.Duration
	// ReplicaSeconds is the cost.
	ReplicaSeconds float64
	// UpReaction and DownReaction are the delays from Scenario.Rise and
	// Scenario.Fall to the first decision in that direction (-1: none).
	UpReaction, DownReaction time.Duration
	// Flaps is the number of direction changes of the desired count;
	// SteadyFlaps only those after Scenario.Steady.
	Flaps, SteadyFlaps int
	// Changes is the number of decisions that changed the desired count.
	Changes int
	// MaxReplicas is the largest desired count.
	MaxReplicas int
}

// TailCutoff is the final stretch of a run whose arrivals Evaluate ignores:
// they may not have had time to get a first token before the run stops.
const TailCutoff = 30 * time.Second

// Evaluate computes a Result. Requests that never got a first token count
// as missing the objective, except those arriving in the last TailCutoff.
func Evaluate(sc Scenario, controller string, out *Outcome, objective time.Duration) Result {
	r := Result{Scenario: sc.Name, Controller: controller, ReplicaSeconds: out.ReplicaSeconds,
		UpReaction: -1, DownReaction: -1}
	var all, spike []time.Duration
	ok := 0
	for _, q := range out.Requests {
		if q.Arrival >= sc.Duration-TailCutoff {
			continue // may still be in flight when the run stops
		}
		all = append(all, q.TTFT)
		if q.TTFT <= objective {
			ok++
		}
		if sc.Spike[1] > 0 && q.Arrival >= sc.Spike[0] && q.Arrival < sc.Spike[1] {
			spike = append(spike, q.TTFT)
		}
	}
	r.Requests = len(all)
	if len(all) > 0 {
		r.Attainment = float64(ok) / float64(len(all))
	}
	r.P90, r.SpikeP90 = quantile(all, 0.9), quantile(spike, 0.9)
	lastDir := 0
	for _, tk := range out.Ticks {
		r.MaxReplicas = max(r.MaxReplicas, tk.Desired)
		dir := 0
		switch {
		case tk.Desired > tk.Current:
			dir = 1
		case tk.Desired < tk.Current:
			dir = -1
		}
		if dir == 0 {
			continue
		}
		r.Changes++
		if lastDir != 0 && dir != lastDir {
			r.Flaps++
			if sc.Steady > 0 && tk.At >= sc.Steady {
				r.SteadyFlaps++
			}
		}
		lastDir = dir
		if dir > 0 && sc.Rise > 0 && r.UpReaction < 0 && tk.At >= sc.Rise {
			r.UpReaction = tk.At - sc.Rise
		}
		if dir < 0 && sc.Fall > 0 && r.DownReaction < 0 && tk.At >= sc.Fall {
			r.DownReaction = tk.At - sc.Fall
		}
	}
	return r
}

func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// Hold is a Controller that never changes the replica count, for profiling.
// It is a plain value, safe for concurrent use.
type Hold time.Duration

// Interval implements Controller.
func (h Hold) Interval() time.Duration { return time.Duration(h) }

// Tick implements Controller: every pool keeps its desired count.
func (h Hold) Tick(now time.Time, obs autoscaler.Observation) autoscaler.Decision {
	d := autoscaler.Decision{At: now}
	for _, p := range obs.Pools {
		d.Pools = append(d.Pools, autoscaler.PoolDecision{Name: p.Name, Current: p.Desired, Desired: p.Desired})
	}
	return d
}

// ProfileFleet measures one replica of f the way an offline benchmark would:
// MaxRate is the completion rate of a single replica under a saturating
// load (rate, over d), Concurrency the mean number of running requests
// then, and BaseTTFT the median TTFT at a trickle (0.2 req/s).
func ProfileFleet(f Fleet, rate float64, d time.Duration) (autoscaler.Profile, error) {
	sat := Scenario{Name: "profile-saturated", Rate: []Point{{Rate: rate}}, Duration: d, InitialReplicas: 1, Seed: 99}
	rec := &runningRecorder{Hold: Hold(5 * time.Second), from: d / 5}
	out, err := f.Run(sat, rec)
	if err != nil {
		return autoscaler.Profile{}, err
	}
	idle := Scenario{Name: "profile-idle", Rate: []Point{{Rate: 0.2}}, Duration: 10 * time.Minute, InitialReplicas: 1, Seed: 98}
	out2, err := f.Run(idle, Hold(time.Minute))
	if err != nil {
		return autoscaler.Profile{}, err
	}
	var ttfts []time.Duration
	for _, q := range out2.Requests {
		ttfts = append(ttfts, q.TTFT)
	}
	conc := 1
	if rec.n > 0 {
		conc = max(1, int(math.Round(rec.sum/float64(rec.n))))
	}
	return autoscaler.Profile{MaxRate: float64(out.Completed) / d.Seconds(), BaseTTFT: quantile(ttfts, 0.5), Concurrency: conc}, nil
}

// runningRecorder holds the fleet and averages the running requests seen
// after from.
type runningRecorder struct {
	Hold
	from time.Duration
	sum  float64
	n    int
}

// Tick records the running requests and holds.
func (r *runningRecorder) Tick(now time.Time, obs autoscaler.Observation) autoscaler.Decision {
	if now.Sub(Epoch) >= r.from {
		for _, p := range obs.Pools {
			for _, rep := range p.Replicas {
				if rep.Ready {
					r.sum += rep.Metrics.Running
					r.n++
				}
			}
		}
	}
	return r.Hold.Tick(now, obs)
}

// DecideController adapts autoscaler.Decide to a Controller, holding the
// State between ticks.
// It is not safe for concurrent use: Tick updates the State it holds.
type DecideController struct {
	// Config is passed to every Decide call.
	Config *autoscaler.Config
	// Every is the decision interval.
	Every time.Duration
	// Log, if set, receives every decision (for transcripts and debugging).
	Log   func(autoscaler.Decision)
	state autoscaler.State
}

// Interval implements Controller.
func (c *DecideController) Interval() time.Duration { return c.Every }

// Tick implements Controller.
func (c *DecideController) Tick(now time.Time, obs autoscaler.Observation) autoscaler.Decision {
	dec, st := autoscaler.Decide(c.Config, c.state, obs, now)
	c.state = st
	if c.Log != nil {
		c.Log(dec)
	}
	return dec
}

// Table formats results as a Markdown table.
func Table(rs []Result) string {
	var b strings.Builder
	b.WriteString("| scenario | controller | requests | TTFT attainment | TTFT p90 | spike TTFT p90 | replica-s | up reaction | down reaction | changes | flaps (steady) | max replicas |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	dur := func(d time.Duration) string {
		switch {
		case d < 0:
			return "—"
		case d == math.MaxInt64:
			return "∞"
		case d >= time.Second:
			return fmt.Sprintf("%.1f s", d.Seconds())
		}
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	for _, r := range rs {
		spike := "—"
		if r.SpikeP90 > 0 {
			spike = dur(r.SpikeP90)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.2f %% | %s | %s | %.0f | %s | %s | %d | %d (%d) | %d |\n",
			r.Scenario, r.Controller, r.Requests, 100*r.Attainment, dur(r.P90), spike, r.ReplicaSeconds,
			dur(r.UpReaction), dur(r.DownReaction), r.Changes, r.Flaps, r.SteadyFlaps, r.MaxReplicas)
	}
	return b.String()
}
