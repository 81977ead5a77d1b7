package autoscaler

import (
	"fmt"
	"math"
	"time"
)

func (g Guards) withDefaults() Guards {
	if g.PendingTimeout == 0 {
		g.PendingTimeout = DefaultPendingTimeout
	}
	if g.WarmUp == 0 {
		g.WarmUp = DefaultWarmUp
	}
	if g.StaleAfter == 0 {
		g.StaleAfter = DefaultStaleAfter
	}
	if g.ScaleDownKV == 0 {
		g.ScaleDownKV = DefaultScaleDownKV
	}
	if g.ScaleDownQueue == 0 {
		g.ScaleDownQueue = DefaultScaleDownQueue
	}
	if g.IdleWindow == 0 {
		g.IdleWindow = DefaultIdleWindow
	}
	return g
}

// validSample reports whether m is a usable, fresh sample at now.
func validSample(m Metrics, now time.Time, staleAfter time.Duration) bool {
	if m.SampledAt.IsZero() {
		return false
	}
	if staleAfter > 0 && now.Sub(m.SampledAt) > staleAfter {
		return false
	}
	for _, v := range []float64{m.Waiting, m.Running, m.KVUsage, m.RequestRate} {
		if !(v >= 0) || math.IsInf(v, 1) { // NaN, negative or +Inf
			return false
		}
	}
	return m.KVUsage <= 1.0001
}

// buildViews matches observed pools to configured ones and classifies each
// replica. It fails on observations that cannot be interpreted.
func buildViews(cfg *Config, obs Observation, now time.Time) ([]PoolView, error) {
	if obs.GatewayQueue < 0 {
		return nil, fmt.Errorf("%w: gateway queue %d < 0", ErrBadObservation, obs.GatewayQueue)
	}
	idx := make(map[string]int, len(cfg.Pools))
	for i, p := range cfg.Pools {
		idx[p.Name] = i
	}
	views := make([]PoolView, len(cfg.Pools))
	seen := make([]bool, len(cfg.Pools))
	g := cfg.Guards.withDefaults()
	for _, o := range obs.Pools {
		i, ok := idx[o.Name]
		if !ok {
			return nil, fmt.Errorf("%w: unknown pool %q", ErrBadObservation, o.Name)
		}
		if seen[i] {
			return nil, fmt.Errorf("%w: pool %q observed twice", ErrBadObservation, o.Name)
		}
		if o.Desired < 0 {
			return nil, fmt.Errorf("%w: pool %q desired %d < 0", ErrBadObservation, o.Name, o.Desired)
		}
		seen[i] = true
		v := PoolView{Pool: cfg.Pools[i], Current: o.Desired}
		for _, r := range o.Replicas {
			age := time.Duration(math.MaxInt64)
			if !r.Since.IsZero() {
				age = now.Sub(r.Since)
			}
			switch {
			case !r.Ready && (g.PendingTimeout < 0 || age < g.PendingTimeout):
				v.Pending++
			case !r.Ready:
				v.Stuck++
			case g.WarmUp > 0 && age < g.WarmUp:
				v.Ready++
				v.Warming++
			default:
				v.Ready++
				if validSample(r.Metrics, now, g.StaleAfter) {
					v.Samples = append(v.Samples, r.Metrics)
				} else {
					v.Missing++
				}
			}
		}
		views[i] = v
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("%w: no observation of pool %q", ErrBadObservation, cfg.Pools[i].Name)
		}
	}
	return views, nil
}

type decider struct {
	cfg   *Config
	st    State
	obs   *Observation
	now   time.Time
	views []PoolView

	want    []int
	reasons [][]string
	bypass  []bool // skip the stabilizer (scale from/to zero)
}

func (d *decider) note(i int, format string, args ...any) {
	d.reasons[i] = append(d.reasons[i], fmt.Sprintf(format, args...))
}

func (d *decider) run() (Decision, State) {
	cfg, g := d.cfg, d.cfg.Guards.withDefaults()
	n := len(cfg.Pools)
	d.want = make([]int, n)
	d.reasons = make([][]string, n)
	d.bypass = make([]bool, n)

	rate := d.obs.ArrivalRate
	if !(rate >= 0) || math.IsInf(rate, 1) {
		rate = math.NaN()
	} else {
		d.st.forecast = d.st.forecast.update(rate, d.now)
	}
	idleProven := d.updateIdle(g)

	totalCur := 0
	for _, v := range d.views {
		totalCur += v.Current
	}
	fromZero := totalCur == 0 && (d.obs.GatewayQueue > 0 || rate > 0)

	for _, role := range []Role{RoleBoth, RolePrefill, RoleDecode} {
		var members []int
		for i, p := range cfg.Pools {
			if p.Role == role {
				members = append(members, i)
			}
		}
		if len(members) == 0 {
			continue
		}
		grp := &Group{Role: role, GatewayQueue: d.obs.GatewayQueue, ArrivalRate: rate,
			RateLevel: d.st.forecast.level, RateTrend: d.st.forecast.trend, Now: d.now}
		for _, i := range members {
			grp.Pools = append(grp.Pools, d.views[i])
		}
		switch {
		case fromZero:
			d.scaleFromZero(grp, members)
		case totalCur == 0:
			for _, i := range members {
				d.want[i] = 0
				d.note(i, "idle at zero: no queued request at the gateway")
			}
			if !cfg.ScaleToZero || !allMinZero(grp) {
				d.zeroFloor(grp, members, idleProven)
			}
		default:
			d.analyze(grp, members, g, idleProven)
		}
	}
	d.constrain()
	return d.finish()
}

func allMinZero(g *Group) bool {
	for _, p := range g.Pools {
		if p.Pool.Min > 0 {
			return false
		}
	}
	return true
}

// updateIdle maintains the proof of zero requests and reports whether it
// covers Guards.IdleWindow.
func (d *decider) updateIdle(g Guards) bool {
	idle := d.obs.ArrivalRate == 0 && d.obs.GatewayQueue == 0
	for _, v := range d.views {
		if v.Missing > 0 || v.Warming > 0 || v.Pending > 0 {
			idle = false
		}
		for _, m := range v.Samples {
			if m.Waiting != 0 || m.Running != 0 {
				idle = false
			}
		}
	}
	// A negative StaleAfter disables the staleness check: no gap is too long.
	gap := g.StaleAfter > 0 && !d.st.lastObserved.IsZero() && d.now.Sub(d.st.lastObserved) > g.StaleAfter
	d.st.lastObserved = d.now
	switch {
	case !idle:
		d.st.idleSince = time.Time{}
	case d.st.idleSince.IsZero() || gap:
		d.st.idleSince = d.now
	}
	return !d.st.idleSince.IsZero() && d.now.Sub(d.st.idleSince) >= g.IdleWindow
}

func (d *decider) scaleFromZero(grp *Group, members []int) {
	for k, i := range members {
		d.want[i] = grp.Pools[k].Pool.Min
		d.bypass[i] = true
	}
	for _, k := range grp.rank() {
		i := members[k]
		if d.want[i] == 0 && grp.Pools[k].Pool.Max >= 1 {
			d.want[i] = 1
		}
		if d.want[i] > 0 {
			break
		}
	}
	for _, i := range members {
		d.note(i, "guard scale-from-zero: %d queued at the gateway, %.2f/s arriving", d.obs.GatewayQueue, grp.ArrivalRate)
	}
}

func (d *decider) analyze(grp *Group, members []int, g Guards, idleProven bool) {
	an := d.cfg.Analyzer
	if an == nil {
		an = Saturation{}
	}
	prop := an.Analyze(grp)
	caps := grp.capacities()
	if len(prop.Replicas) != len(members) {
		for k, i := range members {
			d.want[i] = caps[k]
			d.note(i, "hold: analyzer returned %d counts for %d pools", len(prop.Replicas), len(members))
		}
		return
	}
	want := make([]int, len(members))
	for k := range members {
		want[k] = max(prop.Replicas[k], 0)
	}
	for _, i := range members {
		d.note(i, "%s", prop.Reason)
	}
	sum := func(xs []int) int {
		t := 0
		for _, x := range xs {
			t += x
		}
		return t
	}
	totalCap, missing := sum(caps), 0
	for _, p := range grp.Pools {
		missing += p.Missing
	}
	// Guard: missing or stale samples never justify a scale-down.
	if sum(want) < totalCap && missing > 0 {
		for k, i := range members {
			if want[k] < caps[k] {
				want[k] = caps[k]
				d.note(i, "guard missing-metrics: %d warm replicas without a fresh valid sample; no scale-down", missing)
			}
		}
	}
	// Guard: the replicas that remain must stay under the thresholds with the
	// load spread over them.
	if total := sum(want); total < totalCap && (g.ScaleDownKV > 0 || g.ScaleDownQueue > 0) {
		need, why := d.scaleDownNeed(grp, g)
		if need > total {
			restoreCheapest(grp, want, caps, need-total)
			for k, i := range members {
				if want[k] != prop.Replicas[k] {
					d.note(i, "guard scale-down-load: %s; keeping %d in the group", why, sum(want))
				}
			}
		}
	}
	// Guard: stuck replicas are not capacity; ask for replacements.
	for k, i := range members {
		if s := grp.Pools[k].Stuck; s > 0 && want[k] > 0 {
			want[k] += s
			d.note(i, "guard pending-timeout: %d replicas not ready after %v are not capacity; +%d replacements", s, g.PendingTimeout, s)
		}
	}
	copyTo := func() {
		for k, i := range members {
			d.want[i] = want[k]
		}
	}
	copyTo()
	if d.cfg.ScaleToZero && allMinZero(grp) && idleProven {
		for k, i := range members {
			d.want[i] = 0
			d.bypass[i] = true
			if grp.Pools[k].Current != 0 {
				d.note(i, "guard scale-to-zero: no request since %s (≥ %v)", d.st.idleSince.Format(time.RFC3339), g.IdleWindow)
			}
		}
		return
	}
	if sum(want) == 0 {
		d.zeroFloor(grp, members, idleProven)
	}
}

// zeroFloor keeps one replica on the group's cheapest pool.
func (d *decider) zeroFloor(grp *Group, members []int, idleProven bool) {
	for _, k := range grp.rank() {
		if grp.Pools[k].Pool.Max >= 1 {
			i := members[k]
			d.want[i] = 1
			why := "scale to zero disabled"
			if d.cfg.ScaleToZero && allMinZero(grp) && !idleProven {
				why = "no proof of zero requests over the idle window"
			}
			d.note(i, "guard zero-floor: %s; keeping 1", why)
			return
		}
	}
}

// scaleDownNeed returns the fewest replicas that keep the per-replica KV and
// queue load under the guard thresholds, and an explanation.
func (d *decider) scaleDownNeed(grp *Group, g Guards) (int, string) {
	var kv, q float64
	samples, warm := 0, 0
	for _, p := range grp.Pools {
		for _, m := range p.Samples {
			kv += m.KVUsage
			q += m.Waiting
		}
		samples += len(p.Samples)
		warm += len(p.Samples) + p.Missing + p.Warming
	}
	if samples == 0 {
		return 0, ""
	}
	// Extrapolate the sampled load to every ready replica (warming ones
	// carry load too, at the sampled average), then add the gateway queue.
	scale := float64(warm) / float64(samples)
	kv *= scale
	q = q*scale + float64(grp.GatewayQueue)
	need := 0
	var why string
	if g.ScaleDownKV > 0 {
		if n := ceilCount(kv / g.ScaleDownKV); n > need {
			need = n
			why = fmt.Sprintf("KV load %.2f needs %d replicas at ≤ %.2f each", kv, n, g.ScaleDownKV)
		}
	}
	if g.ScaleDownQueue > 0 {
		if n := ceilCount(q / g.ScaleDownQueue); n > need {
			need = n
			why = fmt.Sprintf("%.1f waiting needs %d replicas at ≤ %.1f each", q, n, g.ScaleDownQueue)
		}
	}
	return need, why
}

// maxCount bounds every replica count computed from floating-point load:
// Kubernetes' replica counts are int32.
const maxCount = math.MaxInt32

// ceilCount returns ⌈x − 1e-9⌉ (the 1e-9 absorbs rounding error in ratios
// that are whole numbers) as a count in [0, maxCount]. A plain int(x)
// conversion of an absurd load (1e300 waiting requests, or +Inf) is
// implementation-defined and is math.MinInt64 on amd64: a huge demand would
// become a negative count. NaN gives 0.
func ceilCount(x float64) int {
	switch {
	case !(x > 0): // NaN, zero or negative
		return 0
	case x >= maxCount:
		return maxCount
	}
	return int(math.Ceil(x - 1e-9))
}

// restoreCheapest undoes up to k removals (want below caps), cheapest pools first.
func restoreCheapest(grp *Group, want, caps []int, k int) {
	for _, i := range grp.rank() {
		for want[i] < caps[i] && k > 0 {
			want[i]++
			k--
		}
	}
}

// constrain applies step limits, the P/D ratio, min/max and the budget.
func (d *decider) constrain() {
	cfg := d.cfg
	for i := range cfg.Pools {
		if d.bypass[i] {
			continue
		}
		cur := d.views[i].Current
		if cfg.MaxStepUp > 0 && d.want[i] > cur+cfg.MaxStepUp {
			d.want[i] = cur + cfg.MaxStepUp
			d.note(i, "constraint step-up: at most +%d", cfg.MaxStepUp)
		}
		if cfg.MaxStepDown > 0 && d.want[i] < cur-cfg.MaxStepDown {
			d.want[i] = cur - cfg.MaxStepDown
			d.note(i, "constraint step-down: at most -%d", cfg.MaxStepDown)
		}
	}
	d.pdRatio()
	for i, p := range cfg.Pools {
		if d.want[i] == 0 && d.bypass[i] {
			continue // scale to zero
		}
		if d.want[i] < p.Min {
			d.want[i] = p.Min
			d.note(i, "constraint min %d", p.Min)
		}
		if d.want[i] > p.Max {
			d.want[i] = p.Max
			d.note(i, "constraint max %d", p.Max)
		}
	}
	d.budget(d.want, "constraint")
}

func (d *decider) pdRatio() {
	pd := d.cfg.PD
	if pd.Min == 0 && pd.Max == 0 {
		return
	}
	var pre, dec []int
	for i, p := range d.cfg.Pools {
		switch p.Role {
		case RolePrefill:
			pre = append(pre, i)
		case RoleDecode:
			dec = append(dec, i)
		}
	}
	if len(pre) == 0 || len(dec) == 0 {
		return
	}
	total := func(ix []int) int {
		t := 0
		for _, i := range ix {
			t += d.want[i]
		}
		return t
	}
	p, q := total(pre), total(dec)
	if p == 0 && q == 0 {
		return
	}
	if pd.Min > 0 && float64(p) < pd.Min*float64(q) {
		need := ceilCount(pd.Min*float64(q)) - p
		d.addByRank(pre, need, fmt.Sprintf("constraint P/D ratio ≥ %.2f (was %d:%d)", pd.Min, p, q))
	}
	p = total(pre)
	if pd.Max > 0 && float64(p) > pd.Max*float64(q) {
		need := ceilCount(float64(p)/pd.Max) - q
		d.addByRank(dec, need, fmt.Sprintf("constraint P/D ratio ≤ %.2f (was %d:%d)", pd.Max, p, q))
	}
}

// addByRank adds k replicas to the pools ix with the lowest cost per
// replica (the ratio counts replicas, not capacity), within Max.
func (d *decider) addByRank(ix []int, k int, why string) {
	for k > 0 {
		best := -1
		for _, i := range ix {
			if d.want[i] >= d.cfg.Pools[i].Max {
				continue
			}
			if best < 0 || d.cfg.Pools[i].Cost < d.cfg.Pools[best].Cost {
				best = i
			}
		}
		if best < 0 {
			return
		}
		d.want[best]++
		d.bypass[best] = false
		d.note(best, "%s: +1", why)
		k--
	}
}

// budget removes replicas, most expensive per capacity first and never below
// Min, until the accelerators fit cfg.AcceleratorBudget.
func (d *decider) budget(want []int, stage string) {
	b := d.cfg.AcceleratorBudget
	if b <= 0 {
		return
	}
	acc := func(i int) int { return max(d.cfg.Pools[i].Accelerators, 1) }
	used := 0
	for i := range want {
		used += want[i] * acc(i)
	}
	for used > b {
		worst := -1
		for i, p := range d.cfg.Pools {
			if want[i] <= p.Min {
				continue
			}
			if worst < 0 || costPerCapacity(p) > costPerCapacity(d.cfg.Pools[worst]) {
				worst = i
			}
		}
		if worst < 0 {
			for i := range want {
				d.note(i, "%s budget: minimums need %d accelerators > budget %d", stage, used, b)
			}
			return
		}
		want[worst]--
		used -= acc(worst)
		d.note(worst, "%s budget: %d accelerators; -1", stage, b)
	}
}

func (d *decider) finish() (Decision, State) {
	cfg := d.cfg
	up, down := cfg.upRules(), cfg.downRules()
	dec := Decision{At: d.now, Pools: make([]PoolDecision, len(cfg.Pools))}
	pools := make(map[string]poolState, len(cfg.Pools))
	final := make([]int, len(cfg.Pools))
	for i, p := range cfg.Pools {
		cur := d.views[i].Current
		ps := d.st.pools[p.Name]
		got := d.want[i]
		if d.bypass[i] {
			ps.recs = append(ps.recs[:0:0], timedValue{at: d.now, v: got})
		} else {
			var rs []string
			got, ps, rs = stabilize(up, down, ps, cur, got, d.now)
			d.reasons[i] = append(d.reasons[i], rs...)
			if got < p.Min || got > p.Max {
				got = min(max(got, p.Min), p.Max)
				d.note(i, "clamp to [%d, %d]", p.Min, p.Max)
			}
		}
		final[i] = got
		pools[p.Name] = ps
	}
	d.budget(final, "final")
	for i, p := range cfg.Pools {
		cur := d.views[i].Current
		ps := recordEvent(up, down, pools[p.Name], cur, final[i], d.now)
		pools[p.Name] = ps
		dec.Pools[i] = PoolDecision{Name: p.Name, Current: cur, Desired: final[i], Reasons: d.reasons[i]}
	}
	d.st.pools = pools
	return dec, d.st
}

// holt is a double-exponential (level + trend) smoother of the arrival rate
// with time constants instead of fixed weights, so irregular sampling and
// different loop intervals smooth the same way: each update weighs the new
// sample by 1 − e^{−dt/τ}.
type holt struct {
	level, trend float64
	at           time.Time
}

// Smoothing time constants of the arrival-rate forecast.
const (
	LevelTimeConstant = 20 * time.Second
	TrendTimeConstant = 45 * time.Second
)

func (h holt) update(x float64, now time.Time) holt {
	if h.at.IsZero() {
		return holt{level: x, at: now}
	}
	dt := now.Sub(h.at).Seconds()
	if dt <= 0 {
		return h
	}
	alpha := 1 - math.Exp(-dt/LevelTimeConstant.Seconds())
	beta := 1 - math.Exp(-dt/TrendTimeConstant.Seconds())
	pred := h.level + h.trend*dt
	level := alpha*x + (1-alpha)*pred
	trend := beta*(level-h.level)/dt + (1-beta)*h.trend
	return holt{level: max(level, 0), trend: trend, at: now}
}
