package autoscaler

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Analyzer proposes how many replicas each pool of a group needs. It is the
// first stage of Decide; guards, constraints and the stabilizer run after it.
// Implementations must be pure functions of the Group (Decide's determinism
// depends on it) and safe for concurrent use.
type Analyzer interface {
	// Analyze returns one count per pool of g, in g.Pools order, counting
	// ready and pending replicas but not stuck ones (the guards add
	// replacements for those), and a reason for the decision.
	Analyze(g *Group) Proposal
}

// AnalyzerFunc adapts a function to the Analyzer interface.
// The function must be safe for concurrent use, as [Analyzer] requires.
type AnalyzerFunc func(g *Group) Proposal

// Analyze calls f(g).
func (f AnalyzerFunc) Analyze(g *Group) Proposal { return f(g) }

var (
	_ Analyzer = Saturation{}
	_ Analyzer = QueueingModel{}
	_ Analyzer = TargetTracking{}
	_ Analyzer = AnalyzerFunc(nil)
)

// Proposal is an analyzer's output for one group.
// It is a plain value; Decide reads it once and does not retain it.
type Proposal struct {
	// Replicas holds the wanted count per pool, in Group.Pools order.
	Replicas []int
	// Reason explains the proposal in one line.
	Reason string
}

// Group is the analyzer's view of the pools of one role, after the guards
// have classified every replica. It is built by Decide and must not be
// retained after Analyze returns.
// A Group is not safe for concurrent mutation; analyzers only read it.
type Group struct {
	// Role is the role shared by the pools.
	Role Role
	// Pools are the group's pools, in configuration order.
	Pools []PoolView
	// GatewayQueue is Observation.GatewayQueue.
	GatewayQueue int
	// ArrivalRate is Observation.ArrivalRate; NaN when unknown or invalid.
	ArrivalRate float64
	// RateLevel and RateTrend are a double-exponential (Holt) forecast of
	// the arrival rate: the smoothed level (requests/s, time constant
	// LevelTimeConstant) and its trend (requests/s per second, time constant
	// TrendTimeConstant). Both are zero until a valid rate was seen.
	RateLevel, RateTrend float64
	// Now is the decision time.
	Now time.Time
}

// PoolView is one pool with its replicas classified by the guards.
// It is a plain value, safe to copy; analyzers only read it.
type PoolView struct {
	// Pool is the pool's configuration.
	Pool Pool
	// Current is the observed desired count (spec.replicas).
	Current int
	// Ready counts ready replicas, including warming ones.
	Ready int
	// Warming counts ready replicas younger than Guards.WarmUp: capacity
	// whose samples are ignored.
	Warming int
	// Pending counts replicas not yet ready and younger than
	// Guards.PendingTimeout: capacity on its way.
	Pending int
	// Stuck counts replicas not ready for longer than Guards.PendingTimeout:
	// not capacity.
	Stuck int
	// Samples are the fresh, valid metrics of warm ready replicas.
	Samples []Metrics
	// Missing counts warm ready replicas without a fresh, valid sample.
	Missing int
}

// Capacity returns the replicas that count as capacity: ready plus pending.
func (v PoolView) Capacity() int { return v.Ready + v.Pending }

// capacities returns each pool's Capacity.
func (g *Group) capacities() []int {
	out := make([]int, len(g.Pools))
	for i, p := range g.Pools {
		out[i] = p.Capacity()
	}
	return out
}

// rank orders pools by cost per unit of profiled capacity (cheapest first),
// keeping configuration order among equals.
func (g *Group) rank() []int {
	idx := make([]int, len(g.Pools))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(costPerCapacity(g.Pools[a].Pool), costPerCapacity(g.Pools[b].Pool))
	})
	return idx
}

func costPerCapacity(p Pool) float64 {
	if p.Profile.MaxRate > 0 {
		return p.Cost / p.Profile.MaxRate
	}
	return p.Cost
}

// ---------------------------------------------------------------------------
// Saturation

// Saturation is llm-d's spare-capacity analyzer (WVA "saturation v1"). A warm
// replica is saturated when KV usage ≥ KVThreshold or waiting ≥
// QueueThreshold. Over the non-saturated replicas, spare KV = KVThreshold −
// KV and spare queue = QueueThreshold − waiting; the group scales up when the
// average spare KV < KVSpareTrigger or the average spare queue <
// QueueSpareTrigger, or when every replica is saturated. The gateway queue is
// spread over the replicas as extra waiting requests.
//
// Two changes from WVA, both to avoid its failure modes. Pending replicas are
// not a reason to block: they enter the averages as empty replicas (spare =
// the full threshold), so capacity on its way damps further scale-up without
// freezing the controller; saturated replicas then count too, at zero spare,
// so one pending replica cannot mask a saturated fleet. Warming replicas (ready, younger than
// Guards.WarmUp) are left out of the averages, since their samples are not
// yet representative, but their share of the KV load is assumed to be the
// sampled average. And a scale-up adds k replicas
// at once, k ≥ 1 being the smallest count that brings the KV load, spread
// over all replicas, under KVThreshold − KVSpareTrigger (KV use grows with
// concurrency and spreads across replicas; the waiting queue does not spread
// linearly, so its trigger adds one replica per decision, as in WVA). A KV
// load that needs more replicas than ready plus pending also scales up, even
// when the anticipated replicas lift the averages above the triggers.
//
// While replicas are pending or warming, the spare-level and all-saturated
// triggers add one replica per decision only if the load is rising (the
// Holt trend of the arrival rate projects a rise of more than 10 % of its
// level within two minutes): at a flat load, saturated replicas keep the
// averages under the triggers however many replicas are on their way, and
// one more per decision would overshoot (then walk back down:
// oscillation). At a flat load the order is sized by the proportional
// shortfalls instead: KV as above, and, when every pool has a
// Profile.MaxRate, throughput (the smoothed arrival rate, or the summed
// completion rate, over MaxUtilization of the profiled capacity). Pending
// replicas are trusted until Guards.PendingTimeout, after which the guards
// replace them.
//
// Scale-down removes one replica from the most expensive pool (cost per
// profiled capacity) when no scale-up is wanted, no replica is pending or
// warming, at least two warm replicas are non-saturated, the load spread
// over one replica fewer keeps both spare levels at or above their triggers
// plus the down margins, and (when every pool has a Profile.MaxRate) the
// request rate stays within MaxUtilization of the remaining replicas'
// profiled throughput. The last check is what keeps a steady load steady:
// KV use and queues grow much faster than N/(N−1) near the throughput
// limit, so the linear test alone removes the one replica that kept the
// fleet below saturation, and the next decisions add it back.
//
// New replicas go to the cheapest pool (cost per profiled capacity) with room
// under Max, preferring pools with no pending replica.
//
// Zero fields select llm-d's defaults: KVThreshold 0.80, QueueThreshold 5,
// KVSpareTrigger 0.10, QueueSpareTrigger 3; and routekit's KVDownMargin
// 0.05, QueueDownMargin 1, MaxUtilization 0.85.
type Saturation struct {
	// KVThreshold and QueueThreshold mark a replica saturated (KV usage,
	// waiting requests); defaults 0.80 and 5.
	KVThreshold, QueueThreshold float64
	// KVSpareTrigger and QueueSpareTrigger are the average spare levels
	// below which the group scales up; defaults 0.10 and 3.
	KVSpareTrigger, QueueSpareTrigger float64
	// KVDownMargin and QueueDownMargin widen the scale-down test: after
	// removing a replica the spare must stay at or above trigger + margin,
	// a hysteresis band that WVA lacks (without it a fleet at the trigger
	// alternates between -1 and +1). Zero selects 0.05 and 1; negative: none.
	KVDownMargin, QueueDownMargin float64
	// MaxUtilization bounds a scale-down by throughput: when every pool of
	// the group has a Profile.MaxRate, the request rate spread over the
	// replicas that remain must stay at or under MaxUtilization of their
	// profiled throughput. KV usage and queues are not linear in load: near
	// the throughput limit, running batches and queues grow much faster
	// than N/(N−1), so a fleet at 75 % KV headroom can be one replica away
	// from saturation. Zero selects 0.85; negative: no check.
	MaxUtilization float64
}

func (s Saturation) withDefaults() Saturation {
	if s.KVThreshold == 0 {
		s.KVThreshold = 0.80
	}
	if s.QueueThreshold == 0 {
		s.QueueThreshold = 5
	}
	if s.KVSpareTrigger == 0 {
		s.KVSpareTrigger = 0.10
	}
	if s.QueueSpareTrigger == 0 {
		s.QueueSpareTrigger = 3
	}
	if s.KVDownMargin == 0 {
		s.KVDownMargin = 0.05
	}
	if s.QueueDownMargin == 0 {
		s.QueueDownMargin = 1
	}
	if s.MaxUtilization == 0 {
		s.MaxUtilization = 0.85
	}
	s.KVDownMargin, s.QueueDownMargin = max(s.KVDownMargin, 0), max(s.QueueDownMargin, 0)
	return s
}

// Validate checks the thresholds as llm-d does: KV values in (0, 1], queue
// values positive, and each trigger below its threshold.
func (s Saturation) Validate(*Config) error {
	s = s.withDefaults()
	switch {
	case !(s.KVThreshold > 0 && s.KVThreshold <= 1), !(s.KVSpareTrigger > 0 && s.KVSpareTrigger < s.KVThreshold):
		return fmt.Errorf("saturation: KV threshold %v and spare trigger %v must satisfy 0 < trigger < threshold ≤ 1", s.KVThreshold, s.KVSpareTrigger)
	case !(s.QueueThreshold > 0) || math.IsInf(s.QueueThreshold, 0), !(s.QueueSpareTrigger > 0 && s.QueueSpareTrigger < s.QueueThreshold):
		return fmt.Errorf("saturation: queue threshold %v and spare trigger %v must satisfy 0 < trigger < threshold", s.QueueThreshold, s.QueueSpareTrigger)
	case s.MaxUtilization > 1 || math.IsNaN(s.MaxUtilization):
		return fmt.Errorf("saturation: max utilisation %v must be in (0, 1], or negative for none", s.MaxUtilization)
	}
	return nil
}

// Analyze implements Analyzer.
func (s Saturation) Analyze(g *Group) Proposal {
	s = s.withDefaults()
	want := g.capacities()
	total, anticipated, nSamples, missing, warming := 0, 0, 0, 0, 0
	for _, p := range g.Pools {
		total += p.Capacity()
		anticipated += p.Pending
		nSamples += len(p.Samples)
		missing += p.Missing
		warming += p.Warming
	}
	if nSamples == 0 {
		return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: no warm samples (%d warming, %d pending); hold", warming, anticipated)}
	}
	extraQ := 0.0
	if total > 0 {
		extraQ = float64(g.GatewayQueue) / float64(total)
	}
	var sumSpareKV, sumSpareQ, sumKV float64
	nonSat, saturated := 0, 0
	for _, p := range g.Pools {
		for _, m := range p.Samples {
			q := m.Waiting + extraQ
			sumKV += m.KVUsage
			if m.KVUsage >= s.KVThreshold || q >= s.QueueThreshold {
				saturated++
				continue
			}
			nonSat++
			sumSpareKV += s.KVThreshold - m.KVUsage
			sumSpareQ += s.QueueThreshold - q
		}
	}
	// Anticipated replicas are empty: full spare. Weigh them against the
	// whole fleet (saturated replicas at zero spare), so that one pending
	// replica cannot mask a saturated fleet.
	n := float64(nonSat + anticipated)
	if anticipated > 0 {
		n += float64(saturated)
	}
	avgKV, avgQ := 0.0, 0.0
	if n > 0 {
		avgKV = (sumSpareKV + float64(anticipated)*s.KVThreshold) / n
		avgQ = (sumSpareQ + float64(anticipated)*s.QueueThreshold) / n
	}
	stats := fmt.Sprintf("%d warm (%d saturated), %d warming, %d pending, spare KV %.3f queue %.2f", nSamples, saturated, warming, anticipated, avgKV, avgQ)
	// The KV load of ready replicas without a usable sample (missing or
	// warming: they serve traffic too) is extrapolated from the samples.
	kvLoad := sumKV / float64(nSamples) * float64(nSamples+missing+warming)
	kvShort := ceilCount(kvLoad/(s.KVThreshold-s.KVSpareTrigger)) - total
	// The spare-level triggers add one replica per decision only when no
	// capacity is on its way: while replicas are pending or warming,
	// saturated replicas keep the averages under the triggers however many
	// replicas were ordered, and one more per decision would overshoot
	// until the first one is ready (then walk back down: oscillation).
	// Meanwhile the shortfalls that are proportional to the load size the
	// order: KV, and throughput when the pools are profiled.
	onTheWay := anticipated + warming
	triggered := n == 0 || avgKV < s.KVSpareTrigger || avgQ < s.QueueSpareTrigger
	short := kvShort
	if onTheWay > 0 && triggered {
		if c, ok := s.rateShort(g); ok {
			short = max(short, c)
		}
	}
	// A rising load (the projected rise over the next two minutes is more than
	// a tenth of the level) keeps WVA's one more per decision.
	rising := !math.IsNaN(g.ArrivalRate) && g.RateTrend*risingHorizon.Seconds() > risingFraction*g.RateLevel
	if ((onTheWay == 0 || rising) && triggered) || short > 0 {
		k := max(short, 1)
		added := addCheapest(g, want, k)
		if added == 0 {
			return Proposal{Replicas: want, Reason: "saturation: scale up wanted but every pool is at max; " + stats}
		}
		return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: up +%d; %s", added, stats)}
	}
	if onTheWay > 0 && triggered {
		return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: hold, %d replicas on the way (pending or warming); %s", onTheWay, stats)}
	}
	if anticipated > 0 || warming > 0 || missing > 0 || nonSat < 2 || total < 2 {
		return Proposal{Replicas: want, Reason: "saturation: steady; " + stats}
	}
	// Redistribute the load of all warm replicas over one replica fewer.
	var kvSum, qSum float64
	for _, p := range g.Pools {
		for _, m := range p.Samples {
			kvSum += m.KVUsage
			qSum += m.Waiting + extraQ
		}
	}
	kvAfter := kvSum / float64(nSamples-1)
	qAfter := qSum / float64(nSamples-1)
	if s.KVThreshold-kvAfter < s.KVSpareTrigger+s.KVDownMargin || s.QueueThreshold-qAfter < s.QueueSpareTrigger+s.QueueDownMargin {
		return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: steady (after -1: KV %.3f queue %.2f per replica, too little spare); %s", kvAfter, qAfter, stats)}
	}
	r := g.rank()
	for i := len(r) - 1; i >= 0; i-- {
		p := r[i]
		if want[p] > g.Pools[p].Pool.Min && want[p] > 0 {
			if u, ok := s.utilizationAfter(g, p); ok && u > s.MaxUtilization {
				return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: steady (after -1 on %s: %.0f%% of profiled throughput > %.0f%%); %s", g.Pools[p].Pool.Name, 100*u, 100*s.MaxUtilization, stats)}
			}
			want[p]--
			return Proposal{Replicas: want, Reason: fmt.Sprintf("saturation: down -1 on %s (after: KV %.3f queue %.2f per replica); %s", g.Pools[p].Pool.Name, kvAfter, qAfter, stats)}
		}
	}
	return Proposal{Replicas: want, Reason: "saturation: down wanted but every pool is at min; " + stats}
}

// A load counts as rising for Saturation when its Holt trend projects a
// rise over risingHorizon of more than risingFraction of its level.
const (
	risingHorizon  = 2 * time.Minute
	risingFraction = 0.10
)

// rateShort returns how many replicas the group lacks, beyond its capacity, to
// serve its request rate at MaxUtilization of the pools' profiled
// throughput, adding to the cheapest pool per capacity; false when a pool
// has no profile or MaxUtilization is negative. The rate is the smoothed
// arrival rate (RateLevel) when the arrival rate is known, otherwise the
// replicas' summed completion rate.
func (s Saturation) rateShort(g *Group) (int, bool) {
	if s.MaxUtilization < 0 {
		return 0, false
	}
	have, done := 0.0, 0.0
	for _, p := range g.Pools {
		if !(p.Pool.Profile.MaxRate > 0) {
			return 0, false
		}
		have += float64(p.Capacity()) * p.Pool.Profile.MaxRate
		for _, m := range p.Samples {
			done += m.RequestRate
		}
	}
	rate := done
	if !math.IsNaN(g.ArrivalRate) {
		rate = g.RateLevel
	}
	missing := rate/s.MaxUtilization - have // profiled throughput lacking
	if missing <= 0 {
		return 0, true
	}
	return ceilCount(missing / g.Pools[g.rank()[0]].Pool.Profile.MaxRate), true
}

// utilizationAfter returns the group's request rate over the profiled
// throughput (Profile.MaxRate) of its capacity less one replica of pool
// victim, and false when the check does not apply: MaxUtilization negative,
// a pool with capacity but no profile, or no capacity left. The request
// rate is the largest of the arrival rate and its smoothed level (when
// known) and the replicas' summed completion rate.
func (s Saturation) utilizationAfter(g *Group, victim int) (float64, bool) {
	if s.MaxUtilization < 0 {
		return 0, false
	}
	capAfter, done := 0.0, 0.0
	for i, p := range g.Pools {
		c := p.Capacity()
		if i == victim {
			c--
		}
		if c > 0 && !(p.Pool.Profile.MaxRate > 0) {
			return 0, false
		}
		if c > 0 {
			capAfter += float64(c) * p.Pool.Profile.MaxRate
		}
		for _, m := range p.Samples {
			done += m.RequestRate
		}
	}
	if capAfter <= 0 {
		return 0, false
	}
	rate := done
	if !math.IsNaN(g.ArrivalRate) {
		rate = max(rate, g.ArrivalRate, g.RateLevel)
	}
	return rate / capAfter, true
}

// addCheapest adds k replicas to the cheapest pools with room under Max,
// preferring pools with no pending replica, and returns how many it added.
func addCheapest(g *Group, want []int, k int) int {
	added := 0
	r := g.rank()
	for pass := 0; pass < 2 && added < k; pass++ {
		for _, i := range r {
			if pass == 0 && g.Pools[i].Pending > 0 {
				continue
			}
			room := g.Pools[i].Pool.Max - want[i]
			if room <= 0 {
				continue
			}
			n := min(room, k-added)
			want[i] += n
			added += n
			if added == k {
				break
			}
		}
	}
	return added
}

// ---------------------------------------------------------------------------
// QueueingModel

// QueueingModel sizes a group from its request rate and a TTFT objective.
//
// One replica of a pool is modelled as an M/M/c queue: c =
// Profile.Concurrency parallel slots (the running batch) with a total service
// rate μ = Profile.MaxRate, the profiled throughput at saturation, in front of
// a fixed prefill time Profile.BaseTTFT. At utilisation ρ = λ/μ a request
// waits for a slot with the Erlang C probability C(c, cρ), and the wait
// exceeds t with probability C·e^{−μ(1−ρ)t}, so the p-quantile of TTFT is
//
//	TTFT_p(ρ) = BaseTTFT + max(0, ln(C(c, cρ)/(1−p))) / (μ·(1−ρ)).
//
// With c = 1 this is M/M/1 (C = ρ).
//
// The analyzer finds by bisection the largest ρ* ≤ MaxUtilization with
// TTFT_p(ρ*) ≤ TTFT, so one replica carries λ* = ρ*·μ. The demand it plans
// for is
//
//	λ_plan = (level + max(0, trend·Lookahead − TrendDeadband·level))·(1 + Headroom) + backlog/BacklogDrain
//
// where level and trend are the Holt forecast of Observation.ArrivalRate
// (see Group), and backlog is the gateway queue plus the waiting requests on
// the replicas. When the arrival rate is unknown, the replicas' summed
// completion rate stands in for the level, with no trend. It then picks the
// cheapest mix of pools (Σ n_i·λ*_i ≥ λ_plan, Min_i ≤ n_i ≤ Max_i,
// minimising Σ n_i·Cost_i; ties go to fewer replicas, then to fewer
// changes) by branch and bound.
//
// Scale-down has a hysteresis band: while the current capacity Σ cur_i·λ*_i
// covers λ_plan but not λ_plan·(1 + ScaleDownMargin), the counts are kept;
// below the band the mix is sized for λ_plan·(1 + ScaleDownMargin). This
// keeps arrival noise from turning into up/down oscillation. Nor does it
// scale down while any warm replica reports a TTFT p90 (Metrics.TTFTP90)
// above the objective: the model is then wrong about this load, and
// removing capacity would make it worse.
//
// The trend deadband keeps the noise of a short-interval arrival rate from
// reaching the forecast: only the part of the projected rise beyond
// TrendDeadband × level counts.
//
// Zero fields select defaults: Percentile 0.90, MaxUtilization 0.95,
// BacklogDrain 30 s, ScaleDownMargin 0.15 and TrendDeadband 0.10 (negative:
// none); Lookahead 0 (no forecast) and Headroom 0. TTFT is required, and every pool needs a
// positive Profile.MaxRate and a BaseTTFT below TTFT. Set Lookahead to the
// replicas' start-up time to provision for a rising load before it arrives.
type QueueingModel struct {
	// TTFT is the objective for the Percentile-th TTFT quantile (required).
	TTFT time.Duration
	// Percentile is the objective's quantile, in (0, 1); default 0.90.
	Percentile float64
	// MaxUtilization caps ρ* whatever the objective allows; default 0.95.
	MaxUtilization float64
	// Lookahead is how far ahead a rising trend is projected: the
	// replicas' start-up time plus a loop interval or two; 0 means none.
	Lookahead time.Duration
	// Headroom is extra demand provisioned, as a fraction; default 0.
	Headroom float64
	// BacklogDrain is the time in which queued requests should be served;
	// default 30 s.
	BacklogDrain time.Duration
	// ScaleDownMargin is the hysteresis band; default 0.15, negative: none.
	ScaleDownMargin float64
	// TrendDeadband is the projected rise, as a fraction of the level,
	// treated as noise; default 0.10, negative: none.
	TrendDeadband float64
}

func (q QueueingModel) withDefaults() QueueingModel {
	if q.Percentile == 0 {
		q.Percentile = 0.90
	}
	if q.MaxUtilization == 0 {
		q.MaxUtilization = 0.95
	}
	if q.BacklogDrain == 0 {
		q.BacklogDrain = 30 * time.Second
	}
	if q.ScaleDownMargin == 0 {
		q.ScaleDownMargin = 0.15
	}
	if q.TrendDeadband == 0 {
		q.TrendDeadband = 0.10
	}
	return q
}

// Validate checks the objective and the profiles of cfg's pools.
func (q QueueingModel) Validate(cfg *Config) error {
	q = q.withDefaults()
	switch {
	case q.TTFT <= 0:
		return errors.New("queueing: TTFT objective must be positive")
	case !(q.Percentile > 0 && q.Percentile < 1):
		return fmt.Errorf("queueing: percentile %v not in (0, 1)", q.Percentile)
	case !(q.MaxUtilization > 0 && q.MaxUtilization < 1):
		return fmt.Errorf("queueing: max utilisation %v not in (0, 1)", q.MaxUtilization)
	case q.Lookahead < 0, q.BacklogDrain < 0:
		return errors.New("queueing: negative lookahead or backlog drain")
	case !finiteNonNeg(q.Headroom):
		return fmt.Errorf("queueing: headroom %v", q.Headroom)
	case math.IsNaN(q.ScaleDownMargin) || math.IsInf(q.ScaleDownMargin, 0):
		return fmt.Errorf("queueing: scale-down margin %v", q.ScaleDownMargin)
	case math.IsNaN(q.TrendDeadband) || math.IsInf(q.TrendDeadband, 0):
		return fmt.Errorf("queueing: trend deadband %v", q.TrendDeadband)
	}
	for _, p := range cfg.Pools {
		if !(p.Profile.MaxRate > 0) {
			return fmt.Errorf("queueing: pool %q has no profiled max rate", p.Name)
		}
		if p.Profile.BaseTTFT >= q.TTFT {
			return fmt.Errorf("queueing: pool %q base TTFT %v cannot meet objective %v", p.Name, p.Profile.BaseTTFT, q.TTFT)
		}
	}
	return nil
}

// Utilization returns ρ*, the largest utilisation at which one replica with
// profile p meets the objective, or 0 when no utilisation does.
func (q QueueingModel) Utilization(p Profile) float64 {
	q = q.withDefaults()
	mu := p.MaxRate
	budget := (q.TTFT - p.BaseTTFT).Seconds()
	if !(mu > 0) || budget <= 0 {
		return 0
	}
	c := max(p.Concurrency, 1)
	meets := func(rho float64) bool {
		pw := erlangC(c, rho)
		if pw <= 1-q.Percentile {
			return true
		}
		return math.Log(pw/(1-q.Percentile))/(mu*(1-rho)) <= budget
	}
	if meets(q.MaxUtilization) {
		return q.MaxUtilization
	}
	lo, hi := 0.0, q.MaxUtilization // meets(0): nobody waits
	for range 60 {
		mid := (lo + hi) / 2
		if meets(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// Analyze implements Analyzer.
func (q QueueingModel) Analyze(g *Group) Proposal {
	q = q.withDefaults()
	lambda, level, trend := g.ArrivalRate, g.RateLevel, g.RateTrend
	src := "arrivals"
	backlog := float64(g.GatewayQueue)
	for _, p := range g.Pools {
		for _, m := range p.Samples {
			backlog += m.Waiting
		}
	}
	if math.IsNaN(lambda) {
		sum, n, warm := 0.0, 0, 0
		for _, p := range g.Pools {
			for _, m := range p.Samples {
				sum += m.RequestRate
			}
			n += len(p.Samples)
			warm += len(p.Samples) + p.Missing
		}
		if n == 0 {
			return Proposal{Replicas: g.capacities(), Reason: "queueing: no arrival rate and no samples; hold"}
		}
		lambda = sum / float64(n) * float64(warm)
		level, trend = lambda, 0
		src = "completions"
	}
	plan := level
	if q.Lookahead > 0 && trend > 0 {
		plan += max(0, trend*q.Lookahead.Seconds()-max(q.TrendDeadband, 0)*level)
	}
	plan *= 1 + q.Headroom
	if q.BacklogDrain > 0 {
		plan += backlog / q.BacklogDrain.Seconds()
	}
	caps := make([]float64, len(g.Pools))
	have := 0.0
	for i, p := range g.Pools {
		caps[i] = q.Utilization(p.Pool.Profile) * p.Pool.Profile.MaxRate
		have += float64(p.Capacity()) * caps[i]
	}
	worst := 0.0 // highest observed TTFT p90, seconds
	for _, p := range g.Pools {
		for _, m := range p.Samples {
			if m.TTFTP90 > worst && !math.IsInf(m.TTFTP90, 1) {
				worst = m.TTFTP90
			}
		}
	}
	var n []int
	band := ""
	margin := max(q.ScaleDownMargin, 0)
	switch {
	case have < plan:
		n = cheapestMix(g, caps, plan)
	case have <= plan*(1+margin):
		n = g.capacities()
		band = fmt.Sprintf(" (within the %.0f%% scale-down band)", 100*margin)
	case worst > q.TTFT.Seconds():
		n = g.capacities()
		band = fmt.Sprintf(" (observed TTFT p90 %.3fs above the objective: no scale-down)", worst)
	default:
		n = cheapestMix(g, caps, plan*(1+margin))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "queueing: λ=%.2f/s (%s, level %.2f, trend %+.3f/s²), backlog %.0f, plan %.2f/s%s →", lambda, src, level, trend, backlog, plan, band)
	for i, p := range g.Pools {
		fmt.Fprintf(&b, " %s %d×%.2f/s", p.Pool.Name, n[i], caps[i])
	}
	return Proposal{Replicas: n, Reason: b.String()}
}

// erlangC returns the probability that an arrival waits in an M/M/c queue
// at utilisation rho, by the stable Erlang B recursion.
func erlangC(c int, rho float64) float64 {
	if rho <= 0 {
		return 0
	}
	if rho >= 1 {
		return 1
	}
	a := float64(c) * rho
	b := 1.0
	for k := 1; k <= c; k++ {
		b = a * b / (float64(k) + a*b)
	}
	return b / (1 - rho*(1-b))
}

// cheapestMix returns counts n_i in [Min_i, Max_i] with Σ n_i·caps_i ≥
// demand at the least Σ n_i·Cost_i (ties: fewer replicas, then fewer changes
// from capacity); if no mix meets demand, every pool with capacity is at Max.
func cheapestMix(g *Group, caps []float64, demand float64) []int {
	m := len(g.Pools)
	cur := g.capacities()
	order := g.rank()
	best := make([]int, m)
	lo := make([]int, m)
	for i, p := range g.Pools {
		lo[i] = p.Pool.Min
	}
	const eps = 1e-9
	// Greedy start: mins, then cheapest-per-capacity pools up to Max.
	need := demand
	for i := range m {
		best[i] = lo[i]
		need -= float64(lo[i]) * caps[i]
	}
	for _, i := range order {
		if need <= eps || caps[i] <= 0 {
			continue
		}
		add := min(ceilCount(need/caps[i]), g.Pools[i].Pool.Max-best[i])
		best[i] += add
		need -= float64(add) * caps[i]
	}
	if need > eps { // infeasible: everything with capacity at max
		for i, p := range g.Pools {
			if caps[i] > 0 {
				best[i] = p.Pool.Max
			}
		}
		return best
	}
	type score struct {
		cost    float64
		reps    int
		changes int
	}
	scoreOf := func(n []int) score {
		var s score
		for i := range n {
			s.cost += float64(n[i]) * g.Pools[i].Pool.Cost
			s.reps += n[i]
			s.changes += abs(n[i] - cur[i])
		}
		return s
	}
	less := func(a, b score) bool {
		if math.Abs(a.cost-b.cost) > 1e-9*(1+math.Abs(b.cost)) {
			return a.cost < b.cost
		}
		if a.reps != b.reps {
			return a.reps < b.reps
		}
		return a.changes < b.changes
	}
	bestScore := scoreOf(best)
	// Cheapest cost per capacity among pools order[k:], for the bound.
	minRatio := make([]float64, m+1)
	minRatio[m] = math.Inf(1)
	for k := m - 1; k >= 0; k-- {
		i := order[k]
		r := math.Inf(1)
		if caps[i] > 0 {
			r = g.Pools[i].Pool.Cost / caps[i]
		}
		minRatio[k] = math.Min(minRatio[k+1], r)
	}
	n := append([]int(nil), lo...)
	nodes := 0
	var dfs func(k int, need, cost float64)
	dfs = func(k int, need, cost float64) {
		nodes++
		if nodes > 200000 {
			return
		}
		if need <= eps {
			if s := scoreOf(n); less(s, bestScore) {
				bestScore = s
				copy(best, n)
			}
			return
		}
		if k == m {
			return
		}
		if bound := cost + need*minRatio[k]; bound > bestScore.cost+1e-9*(1+bestScore.cost) {
			return
		}
		i := order[k]
		p := g.Pools[i].Pool
		top := lo[i]
		if caps[i] > 0 {
			top = min(p.Max, lo[i]+ceilCount(need/caps[i]))
		}
		for c := top; c >= lo[i]; c-- {
			extra := c - lo[i]
			n[i] = c
			dfs(k+1, need-float64(extra)*caps[i], cost+float64(extra)*p.Cost)
		}
		n[i] = lo[i]
	}
	base := 0.0
	for i := range m {
		base += float64(lo[i]) * g.Pools[i].Pool.Cost
	}
	rest := demand
	for i := range m {
		rest -= float64(lo[i]) * caps[i]
	}
	dfs(0, rest, base)
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// ---------------------------------------------------------------------------
// TargetTracking

// TargetTracking is the Kubernetes HPA's algorithm for a per-pod metric, run
// on each pool on its own: with usage ratio r = mean(metric)/Target over the
// warm replicas with samples, desired = ceil(r·samples), unchanged when
// |r − 1| ≤ Tolerance. As in the HPA, replicas without a sample count as
// using Target when scaling down and 0 when scaling up, pending and warming
// replicas count as 0 when scaling up, and if that adjustment flips the
// direction or lands within tolerance the pool keeps its capacity.
//
// A metric value that is NaN or infinite (TTFTP90 is NaN when unknown)
// counts as a missing sample, as a pod without a metric does in the HPA.
//
// It is the baseline the other analyzers are measured against. Metric nil
// selects WaitingRequests; Target is required; Tolerance zero means none
// (the HPA's default is HPATolerance).
// It is a plain value, safe for concurrent use if Metric is.
type TargetTracking struct {
	// Metric extracts the per-replica value; nil means WaitingRequests.
	Metric func(Metrics) float64
	// Name names the metric in reasons.
	Name string
	// Target is the desired average value per replica (required).
	Target float64
	// Tolerance is the relative band around Target that changes nothing.
	Tolerance float64
}

// HPATolerance is the Kubernetes HPA controller's default tolerance.
const HPATolerance = 0.1

// WaitingRequests returns m.Waiting, the signal KEDA and most vendor guides
// scale vLLM on (about 5 per replica).
func WaitingRequests(m Metrics) float64 { return m.Waiting }

// KVCacheUsage returns m.KVUsage.
func KVCacheUsage(m Metrics) float64 { return m.KVUsage }

// RunningRequests returns m.Running.
func RunningRequests(m Metrics) float64 { return m.Running }

// Validate checks the target and tolerance.
func (t TargetTracking) Validate(*Config) error {
	if !(t.Target > 0) || math.IsInf(t.Target, 1) {
		return fmt.Errorf("target tracking: target %v must be positive", t.Target)
	}
	if !finiteNonNeg(t.Tolerance) {
		return fmt.Errorf("target tracking: tolerance %v", t.Tolerance)
	}
	return nil
}

// Analyze implements Analyzer.
func (t TargetTracking) Analyze(g *Group) Proposal {
	metric := t.Metric
	name := t.Name
	if metric == nil {
		metric = WaitingRequests
		if name == "" {
			name = "waiting"
		}
	}
	if name == "" {
		name = "metric"
	}
	want := g.capacities()
	reasons := make([]string, 0, len(g.Pools))
	for i, p := range g.Pools {
		w, r := t.pool(p, metric)
		want[i] = w
		reasons = append(reasons, p.Pool.Name+" "+r)
	}
	return Proposal{Replicas: want, Reason: "target " + name + "=" + fmt.Sprint(t.Target) + ": " + strings.Join(reasons, ", ")}
}

func (t TargetTracking) pool(p PoolView, metric func(Metrics) float64) (int, string) {
	cur := p.Capacity()
	sum, sampled, missing := 0.0, 0, p.Missing
	for _, m := range p.Samples {
		v := metric(m)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			missing++
			continue
		}
		sum += v
		sampled++
	}
	if sampled == 0 {
		return cur, "no samples; hold"
	}
	n := float64(sampled)
	ratio := sum / (n * t.Target)
	unready := p.Warming + p.Pending
	if missing == 0 && unready == 0 {
		if math.Abs(ratio-1) <= t.Tolerance {
			return cur, fmt.Sprintf("ratio %.3f within tolerance", ratio)
		}
		return ceilCount(ratio * n), fmt.Sprintf("ratio %.3f", ratio)
	}
	// HPA's adjustment for missing and unready pods.
	if ratio < 1 {
		sum += float64(missing) * t.Target
		n += float64(missing)
	} else if ratio > 1 {
		n += float64(missing + unready)
	}
	newRatio := sum / (n * t.Target)
	if math.Abs(newRatio-1) <= t.Tolerance || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return cur, fmt.Sprintf("ratio %.3f adjusted %.3f; hold", ratio, newRatio)
	}
	return ceilCount(newRatio * n), fmt.Sprintf("ratio %.3f adjusted %.3f", ratio, newRatio)
}
