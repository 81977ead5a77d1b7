package autoscaler

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func reasons(p PoolDecision) string { return strings.Join(p.Reasons, "; ") }

func TestGuards(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	q := QueueingModel{TTFT: time.Second}
	perReplica := q.Utilization(Profile{MaxRate: 10, BaseTTFT: 100 * time.Millisecond}) * 10
	withRate := func(o Observation, r float64) Observation { o.ArrivalRate = r; return o }
	tests := []struct {
		name   string
		cfg    *Config
		give   Observation
		want   int
		reason string
	}{
		{
			"pending within timeout counts as capacity",
			onePool(Saturation{}, 1, 10), obs1(4, join(warm(now, 3, 0.75, 0), notReady(now, 1, 2*time.Minute))),
			4, "0 warming, 1 pending",
		},
		{
			"stuck pending replica is replaced",
			onePool(Saturation{}, 1, 10), obs1(4, join(warm(now, 3, 0.5, 0), notReady(now, 1, 11*time.Minute))),
			4, "guard pending-timeout: 1 replicas not ready after 10m0s",
		},
		{
			"stuck replica does not freeze scale-up",
			onePool(Saturation{}, 1, 10), obs1(4, join(warm(now, 3, 0.78, 0), notReady(now, 1, 11*time.Minute))),
			5, "up +1",
		},
		{
			"stuck replacement capped by max",
			onePool(Saturation{}, 1, 4), obs1(4, join(warm(now, 3, 0.78, 0), notReady(now, 1, 11*time.Minute))),
			4, "constraint max 4",
		},
		{
			"young replica's sample ignored",
			onePool(Saturation{}, 1, 10), obs1(3, join(warm(now, 2, 0.3, 0), young(now, 1, 30*time.Second, 0.99))),
			3, "2 warm (0 saturated), 1 warming",
		},
		{
			"warm-up disabled uses the sample",
			&Config{Pools: onePool(nil, 1, 10).Pools, Analyzer: Saturation{}, Guards: Guards{WarmUp: -1}, ScaleUp: &ScalingRules{}, ScaleDown: &ScalingRules{}},
			obs1(3, join(warm(now, 2, 0.3, 0), young(now, 1, 30*time.Second, 0.99))),
			3, "3 warm (1 saturated)",
		},
		{
			"stale sample blocks scale-down",
			onePool(q, 1, 10), withRate(obs1(4, join(warm(now, 3, 0.1, 0), warm(now.Add(-2*time.Minute), 1, 0.1, 0))), 0),
			4, "guard missing-metrics: 1 warm replicas",
		},
		{
			"NaN metric is missing",
			onePool(q, 1, 10), withRate(obs1(4, join(warm(now, 3, 0.1, 0), warm(now, 1, math.NaN(), 0))), 0),
			4, "guard missing-metrics",
		},
		{
			"negative metric is missing",
			onePool(q, 1, 10), withRate(obs1(4, join(warm(now, 3, 0.1, 0), warm(now, 1, 0.1, -3))), 0),
			4, "guard missing-metrics",
		},
		{
			"missing metrics still allow scale-up",
			onePool(q, 1, 10), withRate(obs1(2, join(warm(now, 1, 0.1, 0), warm(now.Add(-time.Hour), 1, 0.1, 0))), 4*perReplica),
			4, "λ=",
		},
		{
			"scale-down load check keeps replicas",
			onePool(q, 1, 10), withRate(obs1(4, warm(now, 4, 0.5, 0)), 0.5),
			3, "guard scale-down-load: KV load 2.00 needs 3 replicas at ≤ 0.70",
		},
		{
			"scale-down load check on queue",
			onePool(q, 1, 10), withRate(obs1(4, warm(now, 4, 0.1, 1.5)), 0.5),
			3, "6.0 waiting needs 3 replicas",
		},
		{
			"scale-down allowed when survivors fit",
			onePool(q, 1, 10), withRate(obs1(4, warm(now, 4, 0.1, 0)), 0.5),
			1, "plan",
		},
		{
			"scale-down guard disabled",
			&Config{Pools: onePool(nil, 1, 10).Pools, Analyzer: q, Guards: Guards{ScaleDownKV: -1, ScaleDownQueue: -1}, ScaleUp: &ScalingRules{}, ScaleDown: &ScalingRules{}},
			withRate(obs1(4, warm(now, 4, 0.5, 0)), 0.5),
			1, "plan",
		},
		{
			"zero floor without scale to zero",
			onePool(q, 0, 10), withRate(obs1(1, warm(now, 1, 0, 0)), 0),
			1, "guard zero-floor: scale to zero disabled",
		},
		{
			"scale from zero on gateway queue",
			onePool(q, 0, 10), Observation{GatewayQueue: 1, ArrivalRate: math.NaN(), Pools: []PoolObservation{{Name: "p"}}},
			1, "guard scale-from-zero: 1 queued",
		},
		{
			"stay at zero without demand",
			&Config{Pools: onePool(nil, 0, 10).Pools, Analyzer: q, ScaleToZero: true},
			Observation{Pools: []PoolObservation{{Name: "p"}}},
			0, "idle at zero",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec, _ := Decide(tt.cfg, State{}, tt.give, now)
			require.NoError(t, dec.Err)
			require.Len(t, dec.Pools, 1)
			assert.Equal(t, tt.want, dec.Pools[0].Desired, reasons(dec.Pools[0]))
			assert.Contains(t, reasons(dec.Pools[0]), tt.reason)
		})
	}
}

func TestScaleToZeroNeedsProof(t *testing.T) {
	cfg := &Config{Pools: onePool(nil, 0, 4).Pools, Analyzer: QueueingModel{TTFT: time.Second}, ScaleToZero: true}
	idle := func(now time.Time) Observation {
		o := obs1(1, warm(now, 1, 0, 0))
		o.ArrivalRate = 0
		return o
	}
	var st State
	now := t0
	step := func(o Observation) PoolDecision {
		dec, next := Decide(cfg, st, o, now)
		require.NoError(t, dec.Err)
		st = next
		now = now.Add(30 * time.Second)
		return dec.Pools[0]
	}
	for range 20 { // 0 … 9.5 min
		d := step(idle(now))
		require.Equal(t, 1, d.Desired, reasons(d))
		assert.Contains(t, reasons(d), "no proof of zero requests")
	}
	// A missing sample breaks the proof.
	o := idle(now)
	o.Pools[0].Replicas[0].Metrics = Metrics{}
	assert.Equal(t, 1, step(o).Desired)
	assert.True(t, st.IdleSince().IsZero())
	for range 20 {
		require.Equal(t, 1, step(idle(now)).Desired)
	}
	d := step(idle(now)) // 10 min of proof
	assert.Equal(t, 0, d.Desired, reasons(d))
	assert.Contains(t, reasons(d), "guard scale-to-zero")
	// An observation gap longer than StaleAfter restarts the proof.
	st2 := st
	now2 := now.Add(5 * time.Minute)
	dec, next := Decide(cfg, st2, idle(now2), now2)
	require.NoError(t, dec.Err)
	assert.Equal(t, now2, next.IdleSince())
}

// TestScaleToZeroStalenessGuardOff: a negative StaleAfter disables the
// staleness check (Guards), and must not turn every observation into an
// "observation gap" that restarts the idle proof: scale to zero still
// happens after IdleWindow.
func TestScaleToZeroStalenessGuardOff(t *testing.T) {
	tests := []struct {
		name       string
		staleAfter time.Duration
	}{
		{"default staleness check", 0},
		{"staleness check off", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Pools: onePool(nil, 0, 4).Pools, Analyzer: QueueingModel{TTFT: time.Second}, ScaleToZero: true,
				Guards: Guards{StaleAfter: tt.staleAfter}}
			var st State
			var d PoolDecision
			now := t0
			for range 22 { // proof from t0 to t0 + 10.5 min
				o := obs1(1, warm(now, 1, 0, 0))
				o.ArrivalRate = 0
				dec, next := Decide(cfg, st, o, now)
				require.NoError(t, dec.Err)
				st, d = next, dec.Pools[0]
				now = now.Add(30 * time.Second)
			}
			assert.Equal(t, t0, st.IdleSince())
			assert.Equal(t, 0, d.Desired, reasons(d))
		})
	}
}

func TestStabilizer(t *testing.T) {
	pool := Pool{Name: "p", Min: 1, Max: 100}
	// Analyzer that returns a scripted count.
	script := func(n int) Analyzer {
		return AnalyzerFunc(func(g *Group) Proposal { return Proposal{Replicas: []int{n}, Reason: "script"} })
	}
	type step struct {
		at      time.Duration
		cur     int
		propose int
		want    int
		reason  string
	}
	tests := []struct {
		name     string
		up, down *ScalingRules
		steps    []step
	}{
		{"hpa default down window holds max of 5 min", nil, nil, []step{
			{0, 10, 10, 10, ""},
			{60 * time.Second, 10, 4, 10, "down window 5m0s holds 10"},
			{120 * time.Second, 10, 6, 10, "holds 10"},
			{301 * time.Second, 10, 5, 6, "holds 6"},
			{421 * time.Second, 6, 5, 5, ""},
		}},
		{"hpa default up policy max(4 pods, 100%) per 15 s", nil, nil, []step{
			{0, 2, 20, 6, "scale-up policy limits to 6"},               // max(2+4, 2×2)
			{5 * time.Second, 6, 20, 6, "scale-up policy limits to 6"}, // period started at 2
			{16 * time.Second, 6, 20, 12, "scale-up policy limits to 12"},
		}},
		{"tolerance drops ±1 at ten", &ScalingRules{Tolerance: 0.1}, &ScalingRules{Tolerance: 0.1}, []step{
			// As in the HPA's float arithmetic: 11/10−1 = 0.1000…09 > 0.1 passes,
			// 1−9/10 = 0.0999…98 is dropped; above ten every ±1 is dropped.
			{0, 10, 11, 11, ""},
			{15 * time.Second, 11, 10, 11, "within down tolerance"},
			{30 * time.Second, 11, 12, 11, "within up tolerance"},
			{45 * time.Second, 10, 9, 10, "within down tolerance"},
			{60 * time.Second, 11, 13, 13, ""},
		}},
		{"zero tolerance keeps ±1", &ScalingRules{}, &ScalingRules{}, []step{
			{0, 10, 11, 11, ""},
			{15 * time.Second, 11, 10, 10, ""},
		}},
		{"up window takes min", &ScalingRules{StabilizationWindow: time.Minute}, &ScalingRules{}, []step{
			{0, 2, 2, 2, ""},
			{10 * time.Second, 2, 6, 2, "up window 1m0s holds 2"},
			{20 * time.Second, 2, 8, 2, "holds 2"},
			{61 * time.Second, 2, 8, 6, "holds 6"},
			{80 * time.Second, 6, 8, 8, ""},
		}},
		{"select min of pods and percent", &ScalingRules{SelectPolicy: SelectMin, Policies: []Policy{
			{Type: PolicyPods, Value: 4, Period: time.Minute}, {Type: PolicyPercent, Value: 50, Period: time.Minute}}}, &ScalingRules{}, []step{
			{0, 4, 20, 6, "limits to 6"},
			{10 * time.Second, 6, 20, 6, "limits to 6"},
			{61 * time.Second, 6, 20, 9, "limits to 9"},
		}},
		{"disabled down", &ScalingRules{}, &ScalingRules{SelectPolicy: SelectDisabled}, []step{
			{0, 5, 2, 5, "scale-down policy limits to 5"},
		}},
		{"percent down floors", &ScalingRules{}, &ScalingRules{Policies: []Policy{{Type: PolicyPercent, Value: 50, Period: time.Minute}}}, []step{
			{0, 5, 1, 2, "limits to 2"},
			{30 * time.Second, 2, 1, 2, "limits to 2"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st State
			for i, s := range tt.steps {
				cfg := &Config{Pools: []Pool{pool}, Analyzer: script(s.propose), ScaleUp: tt.up, ScaleDown: tt.down,
					Guards: Guards{ScaleDownKV: -1, ScaleDownQueue: -1}}
				dec, next := Decide(cfg, st, obs1(s.cur, warm(t0.Add(s.at), s.cur, 0.1, 0)), t0.Add(s.at))
				require.NoError(t, dec.Err)
				st = next
				assert.Equal(t, s.want, dec.Pools[0].Desired, "step %d: %s", i, reasons(dec.Pools[0]))
				assert.Contains(t, reasons(dec.Pools[0]), s.reason, "step %d", i)
			}
		})
	}
}

// TestHugePercentPolicy: a percent policy whose product overflows int is no
// limit, not a wrapped negative one that forbids every scale-up.
func TestHugePercentPolicy(t *testing.T) {
	up := &ScalingRules{Policies: []Policy{{Type: PolicyPercent, Value: math.MaxInt, Period: time.Minute}}}
	got, _, rs := stabilize(up, &ScalingRules{}, poolState{}, 200, 300, t0)
	assert.Equal(t, 300, got, rs)
}

func TestConstraints(t *testing.T) {
	script := func(ns ...int) Analyzer {
		return AnalyzerFunc(func(g *Group) Proposal {
			out := make([]int, len(g.Pools))
			for i, p := range g.Pools {
				for j, cp := range []string{"a", "b", "pre", "dec"} {
					if p.Pool.Name == cp && j < len(ns) {
						out[i] = ns[j]
					}
				}
			}
			return Proposal{Replicas: out, Reason: "script"}
		})
	}
	free := &ScalingRules{}
	tests := []struct {
		name   string
		cfg    Config
		cur    map[string]int
		want   map[string]int
		reason string
	}{
		{
			"step limits", Config{Pools: []Pool{{Name: "a", Max: 20}, {Name: "b", Max: 20}}, Analyzer: script(12, 1), MaxStepUp: 3, MaxStepDown: 2},
			map[string]int{"a": 4, "b": 6}, map[string]int{"a": 7, "b": 4}, "constraint step-up: at most +3",
		},
		{
			"budget trims the most expensive per capacity", Config{Pools: []Pool{
				{Name: "a", Max: 20, Cost: 4, Accelerators: 2, Profile: Profile{MaxRate: 4}},
				{Name: "b", Max: 20, Cost: 1, Accelerators: 1, Profile: Profile{MaxRate: 2}}},
				Analyzer: script(4, 4), AcceleratorBudget: 10},
			map[string]int{"a": 1, "b": 1}, map[string]int{"a": 3, "b": 4}, "constraint budget: 10 accelerators; -1",
		},
		{
			"budget respects min", Config{Pools: []Pool{{Name: "a", Min: 3, Max: 20, Accelerators: 4}}, Analyzer: script(5), AcceleratorBudget: 8},
			map[string]int{"a": 3}, map[string]int{"a": 3}, "minimums need 12 accelerators > budget 8",
		},
		{
			"P/D minimum ratio raises prefill", Config{Pools: []Pool{{Name: "pre", Role: RolePrefill, Max: 10}, {Name: "dec", Role: RoleDecode, Max: 10}},
				Analyzer: script(0, 0, 1, 6), PD: PDRatio{Min: 0.5, Max: 1}},
			map[string]int{"pre": 1, "dec": 6}, map[string]int{"pre": 3, "dec": 6}, "P/D ratio ≥ 0.50 (was 1:6)",
		},
		{
			"P/D maximum ratio raises decode", Config{Pools: []Pool{{Name: "pre", Role: RolePrefill, Max: 10}, {Name: "dec", Role: RoleDecode, Max: 10}},
				Analyzer: script(0, 0, 4, 2), PD: PDRatio{Max: 1}},
			map[string]int{"pre": 4, "dec": 2}, map[string]int{"pre": 4, "dec": 4}, "P/D ratio ≤ 1.00 (was 4:2)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.ScaleUp, cfg.ScaleDown = free, free
			cfg.Guards = Guards{ScaleDownKV: -1, ScaleDownQueue: -1}
			var o Observation
			for _, p := range cfg.Pools {
				o.Pools = append(o.Pools, PoolObservation{Name: p.Name, Desired: tt.cur[p.Name], Replicas: warm(t0, tt.cur[p.Name], 0.1, 0)})
			}
			dec, _ := Decide(&cfg, State{}, o, t0)
			require.NoError(t, dec.Err)
			var all []string
			for _, p := range dec.Pools {
				assert.Equal(t, tt.want[p.Name], p.Desired, "%s: %s", p.Name, reasons(p))
				all = append(all, reasons(p))
			}
			assert.Contains(t, strings.Join(all, " | "), tt.reason)
		})
	}
}

func TestBadInput(t *testing.T) {
	good := onePool(Saturation{}, 1, 5)
	tests := []struct {
		name    string
		cfg     *Config
		give    Observation
		wantErr error
		msg     string
	}{
		{"nil config", nil, obs1(2, nil), ErrInvalidConfig, "nil config"},
		{"min above max", onePool(nil, 6, 5), obs1(2, nil), ErrInvalidConfig, `pool "p": min 6 > max 5`},
		{"no pools", &Config{}, obs1(2, nil), ErrInvalidConfig, "no pools"},
		{"zero max", onePool(nil, 0, 0), obs1(2, nil), ErrInvalidConfig, "max 0 < 1"},
		{"duplicate pool", &Config{Pools: []Pool{{Name: "p", Max: 1}, {Name: "p", Max: 1}}}, obs1(2, nil), ErrInvalidConfig, "duplicate"},
		{"nan cost", &Config{Pools: []Pool{{Name: "p", Max: 1, Cost: math.NaN()}}}, obs1(2, nil), ErrInvalidConfig, "cost"},
		{"bad analyzer", onePool(Saturation{KVThreshold: 3}, 1, 5), obs1(2, nil), ErrInvalidConfig, "saturation"},
		{"bad rules", &Config{Pools: good.Pools, ScaleUp: &ScalingRules{Policies: []Policy{{Value: 0, Period: time.Second}}}}, obs1(2, nil), ErrInvalidConfig, "policy"},
		{"bad ratio", &Config{Pools: good.Pools, PD: PDRatio{Min: 2, Max: 1}}, obs1(2, nil), ErrInvalidConfig, "ratio"},
		{"negative desired", good, obs1(-1, nil), ErrBadObservation, "desired -1 < 0"},
		{"negative gateway queue", good, Observation{GatewayQueue: -2, Pools: []PoolObservation{{Name: "p", Desired: 2}}}, ErrBadObservation, "gateway queue -2"},
		{"unknown pool", good, Observation{Pools: []PoolObservation{{Name: "p", Desired: 2}, {Name: "x"}}}, ErrBadObservation, `unknown pool "x"`},
		{"missing pool", good, Observation{}, ErrBadObservation, `no observation of pool "p"`},
		{"pool twice", good, Observation{Pools: []PoolObservation{{Name: "p", Desired: 2}, {Name: "p", Desired: 2}}}, ErrBadObservation, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := State{idleSince: t0}
			dec, next := Decide(tt.cfg, st, tt.give, t0)
			require.Error(t, dec.Err)
			assert.ErrorIs(t, dec.Err, tt.wantErr)
			assert.Contains(t, dec.Err.Error(), tt.msg)
			assert.Equal(t, st, next, "state unchanged")
			assert.False(t, dec.Changed(), "hold")
			for _, p := range dec.Pools {
				assert.Contains(t, reasons(p), "hold: autoscaler:")
			}
		})
	}
	t.Run("nan and infinite arrival rate are unknown", func(t *testing.T) {
		cfg := onePool(QueueingModel{TTFT: time.Second}, 1, 5)
		for _, r := range []float64{math.NaN(), math.Inf(1), -3} {
			o := obs1(3, warm(t0, 3, 0.1, 0))
			o.ArrivalRate = r
			dec, _ := Decide(cfg, State{}, o, t0)
			require.NoError(t, dec.Err)
			assert.Equal(t, 1, dec.Pools[0].Desired, reasons(dec.Pools[0]))
			assert.Contains(t, reasons(dec.Pools[0]), "(completions,")
		}
	})
}

// TestAbsurdMetricsSaturate: finite but absurd metric values (a server
// reporting 1e300 waiting requests) must push toward more replicas, never
// wrap a float-to-int conversion around to a negative count and scale down.
func TestAbsurdMetricsSaturate(t *testing.T) {
	now := t0
	tests := []struct {
		name     string
		analyzer Analyzer
		want     int
	}{
		{"target tracking scales up to max", TargetTracking{Target: 5}, 10},
		{"queueing scales up to max", QueueingModel{TTFT: time.Second}, 10},
		{"scale-down load guard keeps every replica", AnalyzerFunc(func(*Group) Proposal { return Proposal{Replicas: []int{1}, Reason: "script"} }), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec, _ := Decide(onePool(tt.analyzer, 1, 10), State{}, obs1(4, warm(now, 4, 0.1, 1e300)), now)
			require.NoError(t, dec.Err)
			assert.Equal(t, tt.want, dec.Pools[0].Desired, reasons(dec.Pools[0]))
		})
	}
}

func TestDecideIsPure(t *testing.T) {
	cfg := onePool(Saturation{}, 1, 10)
	cfg.ScaleDown = nil // default window, uses history
	o := obs1(5, warm(t0, 5, 0.1, 0))
	_, st := Decide(cfg, State{}, o, t0)
	a, sa := Decide(cfg, st, o, t0.Add(15*time.Second))
	b, sb := Decide(cfg, st, o, t0.Add(15*time.Second))
	assert.Equal(t, a, b)
	assert.Equal(t, sa, sb)
	assert.Len(t, st.pools["p"].recs, 1, "input state untouched")
}

func TestDecisionHelpers(t *testing.T) {
	d := Decision{Pools: []PoolDecision{{Name: "a", Current: 1, Desired: 2, Reasons: []string{"x", "y"}}}}
	assert.True(t, d.Changed())
	p, ok := d.Pool("a")
	assert.True(t, ok)
	assert.Equal(t, 2, p.Desired)
	_, ok = d.Pool("b")
	assert.False(t, ok)
	assert.Equal(t, "a 1->2: x; y\n", d.String())
	assert.Equal(t, "prefill", RolePrefill.String())
	assert.Equal(t, "Role(9)", Role(9).String())
}

func TestVariantsAndPD(t *testing.T) {
	prof := func(rate float64, c int) Profile {
		return Profile{MaxRate: rate, BaseTTFT: 100 * time.Millisecond, Concurrency: c}
	}
	cfg := &Config{
		Pools: []Pool{
			{Name: "pre-h100", Role: RolePrefill, Min: 1, Max: 8, Cost: 4, Profile: prof(20, 32)},
			{Name: "pre-l40s", Role: RolePrefill, Min: 0, Max: 8, Cost: 1, Profile: prof(4, 16)},
			{Name: "dec-h100", Role: RoleDecode, Min: 1, Max: 16, Cost: 4, Profile: prof(6, 64)},
		},
		Analyzer: QueueingModel{TTFT: time.Second},
		PD:       PDRatio{Min: 0.5},
		ScaleUp:  &ScalingRules{}, ScaleDown: &ScalingRules{},
	}
	now := t0
	o := Observation{ArrivalRate: 30, Pools: []PoolObservation{
		{Name: "pre-h100", Desired: 1, Replicas: warm(now, 1, 0.3, 0)},
		{Name: "pre-l40s", Desired: 0},
		{Name: "dec-h100", Desired: 2, Replicas: warm(now, 2, 0.5, 0)},
	}}
	dec, _ := Decide(cfg, State{}, o, now)
	require.NoError(t, dec.Err)
	q := QueueingModel{TTFT: time.Second}
	decCap := q.Utilization(prof(6, 64)) * 6
	wantDec := int(math.Ceil(30 / decCap))
	d, _ := dec.Pool("dec-h100")
	assert.Equal(t, wantDec, d.Desired, reasons(d))
	// Prefill: the cheapest mix covers 30/s, then the ratio floor (≥ 0.5 ×
	// decode) adds the cheapest prefill capacity.
	h, _ := dec.Pool("pre-h100")
	l, _ := dec.Pool("pre-l40s")
	total := h.Desired + l.Desired
	assert.GreaterOrEqual(t, float64(total), 0.5*float64(d.Desired))
	capPre := float64(h.Desired)*q.Utilization(prof(20, 32))*20 + float64(l.Desired)*q.Utilization(prof(4, 16))*4
	assert.GreaterOrEqual(t, capPre, 30.0)
	assert.Contains(t, reasons(h)+reasons(l), "queueing:")
	// The capacity mix is two H100 (cost-optimal for 30/s); the ratio repair
	// adds the replica with the lowest cost per replica, an L40S. (The joint
	// optimum, one H100 and four L40S at cost 8, is not sought: the stages
	// are separate, see PDRatio.)
	assert.Equal(t, 2, h.Desired, reasons(h))
	assert.Equal(t, 1, l.Desired, reasons(l))
	assert.Contains(t, reasons(l), "constraint P/D ratio ≥ 0.50 (was 2:6): +1")
}
