package autoscaler

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func groupOf(pools ...PoolView) *Group {
	return &Group{Pools: pools, ArrivalRate: math.NaN(), Now: t0}
}

func samples(n int, kv, waiting float64) []Metrics {
	out := make([]Metrics, n)
	for i := range out {
		out[i] = Metrics{SampledAt: t0, KVUsage: kv, Waiting: waiting}
	}
	return out
}

// rated returns n samples at KV usage kv, serving rate req/s each.
func rated(n int, kv, rate float64) []Metrics {
	out := samples(n, kv, 0)
	for i := range out {
		out[i].RequestRate = rate
	}
	return out
}

func TestSaturation(t *testing.T) {
	cheap := Pool{Name: "cheap", Max: 10, Cost: 1, Profile: Profile{MaxRate: 4}}
	dear := Pool{Name: "dear", Max: 10, Cost: 8, Profile: Profile{MaxRate: 8}}
	tests := []struct {
		name   string
		give   *Group
		gw     int
		want   []int
		reason string
	}{
		{"idle three scale down one", groupOf(PoolView{Pool: cheap, Ready: 3, Samples: samples(3, 0.2, 0)}), 0, []int{2}, "down -1"},
		{"kv spare below trigger", groupOf(PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.75, 0)}), 0, []int{3}, "up +1"},
		{"kv sized step", groupOf(PoolView{Pool: cheap, Ready: 4, Samples: samples(4, 0.79, 0)}), 0, []int{5}, "up +1"},
		{"all saturated", groupOf(PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.95, 6)}), 0, []int{3}, "up +1"},
		{"big kv overload steps several", groupOf(PoolView{Pool: cheap, Ready: 4, Samples: samples(4, 1.0, 9)}), 0, []int{6}, "up +2"},
		{"queue trigger", groupOf(PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.1, 3)}), 0, []int{3}, "up +1"},
		{"pending damps", groupOf(PoolView{Pool: cheap, Ready: 2, Pending: 1, Samples: samples(2, 0.72, 0)}), 0, []int{3}, "steady"},
		{"no warm samples hold", groupOf(PoolView{Pool: cheap, Ready: 2, Warming: 2}), 0, []int{2}, "no warm samples"},
		{"gateway queue spreads", groupOf(PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.1, 0)}), 8, []int{3}, "up +1"},
		{"down refused when survivors short of spare", groupOf(PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.4, 0)}), 0, []int{2}, "too little spare"},
		{"down refused inside the hysteresis band", groupOf(PoolView{Pool: cheap, Ready: 3, Samples: samples(3, 0.45, 0)}), 0, []int{3}, "too little spare"},
		{"down refused while warming", groupOf(PoolView{Pool: cheap, Ready: 3, Warming: 1, Samples: samples(2, 0.1, 0)}), 0, []int{3}, "steady"},
		{"down refused at min", groupOf(PoolView{Pool: Pool{Name: "m", Min: 3, Max: 5}, Ready: 3, Samples: samples(3, 0.1, 0)}), 0, []int{3}, "at min"},
		{
			"up goes to cheapest per capacity",
			groupOf(PoolView{Pool: dear, Ready: 1, Samples: samples(1, 0.75, 0)}, PoolView{Pool: cheap, Ready: 1, Samples: samples(1, 0.75, 0)}),
			0, []int{1, 2}, "up +1",
		},
		{
			"up skips pool with pending",
			groupOf(PoolView{Pool: dear, Ready: 3, Samples: samples(3, 0.95, 0)}, PoolView{Pool: cheap, Pending: 1}),
			0, []int{4, 1}, "up +1",
		},
		{
			"down from most expensive",
			groupOf(PoolView{Pool: dear, Ready: 1, Samples: samples(1, 0.1, 0)}, PoolView{Pool: cheap, Ready: 2, Samples: samples(2, 0.1, 0)}),
			0, []int{0, 2}, "down -1 on dear",
		},
		{"at max", groupOf(PoolView{Pool: Pool{Name: "x", Max: 2}, Ready: 2, Samples: samples(2, 0.9, 0)}), 0, []int{2}, "at max"},
		// While capacity is on its way, saturated replicas keep the averages
		// under the triggers; only the proportional KV shortfall adds more.
		{"queue trigger holds while pending", groupOf(PoolView{Pool: cheap, Ready: 4, Pending: 1, Samples: samples(4, 0.5, 6)}), 0, []int{5}, "hold, 1 replicas on the way"},
		{"queue trigger holds while warming", groupOf(PoolView{Pool: cheap, Ready: 5, Warming: 1, Samples: samples(4, 0.5, 6)}), 0, []int{5}, "hold, 1 replicas on the way"},
		{"kv shortfall still adds while pending", groupOf(PoolView{Pool: cheap, Ready: 4, Pending: 1, Samples: samples(4, 1.0, 9)}), 0, []int{6}, "up +1"},
		// Throughput bound: 4 replicas at KV 0.4 pass the KV test for 3
		// (0.53 per replica), but 10 req/s over 3 × 4 req/s is 83 % and over
		// 2 × 4 would be 125 %.
		{"down refused by throughput", groupOf(PoolView{Pool: cheap, Ready: 3, Samples: rated(3, 0.3, 10.0/3)}), 0, []int{3}, "of profiled throughput"},
		{"down allowed under throughput bound", groupOf(PoolView{Pool: cheap, Ready: 4, Samples: rated(4, 0.3, 2)}), 0, []int{3}, "down -1"},
	}
	t.Run("no margin: WVA's exact test", func(t *testing.T) {
		got := Saturation{KVDownMargin: -1, QueueDownMargin: -1}.Analyze(groupOf(PoolView{Pool: cheap, Ready: 3, Samples: samples(3, 0.45, 0)}))
		assert.Equal(t, []int{2}, got.Replicas, got.Reason)
	})
	t.Run("throughput bound uses the arrival rate when higher", func(t *testing.T) {
		g := groupOf(PoolView{Pool: cheap, Ready: 4, Samples: rated(4, 0.3, 2)})
		g.ArrivalRate = 11 // completions lag arrivals: 11 / (3 × 4) = 92 %
		got := Saturation{}.Analyze(g)
		assert.Equal(t, []int{4}, got.Replicas, got.Reason)
		assert.Contains(t, got.Reason, "92% of profiled throughput")
	})
	t.Run("on the way: a rising load keeps one more per decision", func(t *testing.T) {
		g := groupOf(PoolView{Pool: cheap, Ready: 4, Pending: 1, Samples: samples(4, 0.5, 6)})
		g.ArrivalRate, g.RateLevel, g.RateTrend = 16, 16, 0.05 // +6 req/s over 2 min: 37 % of the level
		got := Saturation{}.Analyze(g)
		assert.Equal(t, []int{6}, got.Replicas, got.Reason)
		g.RateTrend = 0.01 // +1.2 req/s: noise
		got = Saturation{}.Analyze(g)
		assert.Equal(t, []int{5}, got.Replicas, got.Reason)
	})
	t.Run("on the way: throughput shortfall sizes the order", func(t *testing.T) {
		g := groupOf(PoolView{Pool: cheap, Ready: 4, Pending: 1, Samples: samples(4, 0.5, 6)})
		g.ArrivalRate, g.RateLevel = 30, 30 // 30 / 0.85 = 35.3 req/s of profile vs 5 × 4: 4 more
		got := Saturation{}.Analyze(g)
		assert.Equal(t, []int{9}, got.Replicas, got.Reason)
		assert.Contains(t, got.Reason, "up +4")
	})
	t.Run("throughput bound off without a profile", func(t *testing.T) {
		got := Saturation{}.Analyze(groupOf(PoolView{Pool: Pool{Name: "np", Max: 10}, Ready: 3, Samples: rated(3, 0.3, 10.0/3)}))
		assert.Equal(t, []int{2}, got.Replicas, got.Reason)
	})
	t.Run("throughput bound disabled", func(t *testing.T) {
		got := Saturation{MaxUtilization: -1}.Analyze(groupOf(PoolView{Pool: cheap, Ready: 3, Samples: rated(3, 0.3, 10.0/3)}))
		assert.Equal(t, []int{2}, got.Replicas, got.Reason)
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.GatewayQueue = tt.gw
			got := Saturation{}.Analyze(tt.give)
			assert.Equal(t, tt.want, got.Replicas)
			assert.Contains(t, got.Reason, tt.reason)
		})
	}
}

func TestSaturationValidate(t *testing.T) {
	tests := []struct {
		name string
		give Saturation
		ok   bool
	}{
		{"defaults", Saturation{}, true},
		{"aggressive preset", Saturation{KVThreshold: 0.9, QueueThreshold: 15}, true},
		{"kv above 1", Saturation{KVThreshold: 1.2}, false},
		{"trigger above threshold", Saturation{KVThreshold: 0.2, KVSpareTrigger: 0.3}, false},
		{"queue trigger above threshold", Saturation{QueueThreshold: 2}, false},
		{"nan", Saturation{QueueThreshold: math.NaN()}, false},
		{"max utilisation above 1", Saturation{MaxUtilization: 1.2}, false},
		{"max utilisation nan", Saturation{MaxUtilization: math.NaN()}, false},
		{"max utilisation off", Saturation{MaxUtilization: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate(nil)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestQueueingUtilization(t *testing.T) {
	q := QueueingModel{TTFT: time.Second}
	tests := []struct {
		name string
		give Profile
		want float64
	}{
		{"fast replica", Profile{MaxRate: 12, BaseTTFT: 150 * time.Millisecond}, -1},
		{"slow replica", Profile{MaxRate: 4, BaseTTFT: 300 * time.Millisecond}, -1},
		{"very fast replica capped", Profile{MaxRate: 1000, BaseTTFT: 10 * time.Millisecond}, 0.95},
		{"objective unreachable", Profile{MaxRate: 10, BaseTTFT: 2 * time.Second}, 0},
		{"no rate", Profile{BaseTTFT: 10 * time.Millisecond}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rho := q.Utilization(tt.give)
			if tt.want >= 0 {
				assert.InDelta(t, tt.want, rho, 1e-12)
				return
			}
			// On the boundary: TTFT_p90(ρ*) equals the objective.
			mu := tt.give.MaxRate
			ttft := tt.give.BaseTTFT.Seconds() + math.Log(rho/0.1)/(mu*(1-rho))
			assert.InDelta(t, 1.0, ttft, 1e-6)
			assert.Greater(t, rho, 0.1)
			assert.Less(t, rho, 0.95)
		})
	}
	// Erlang C: M/M/1 waits with probability ρ; M/M/2 at ρ = 0.5 with 1/3.
	assert.InDelta(t, 0.7, erlangC(1, 0.7), 1e-12)
	assert.InDelta(t, 1.0/3, erlangC(2, 0.5), 1e-12)
	// A batching replica (48 slots) runs much hotter than M/M/1 at the same objective.
	batch := Profile{MaxRate: 8.65, BaseTTFT: 45 * time.Millisecond, Concurrency: 48}
	rhoBatch := QueueingModel{TTFT: 500 * time.Millisecond}.Utilization(batch)
	batch.Concurrency = 0
	rhoOne := QueueingModel{TTFT: 500 * time.Millisecond}.Utilization(batch)
	assert.Greater(t, rhoBatch, rhoOne+0.1)
	assert.Greater(t, rhoBatch, 0.75)
	assert.Less(t, rhoBatch, 0.95)
	// Monotone in the objective.
	assert.Less(t, QueueingModel{TTFT: 500 * time.Millisecond}.Utilization(tests[0].give), q.Utilization(tests[0].give))
}

func TestQueueingAnalyze(t *testing.T) {
	p := Pool{Name: "p", Min: 1, Max: 100, Cost: 1, Profile: Profile{MaxRate: 10, BaseTTFT: 100 * time.Millisecond}}
	q := QueueingModel{TTFT: time.Second}
	perReplica := q.Utilization(p.Profile) * 10
	tests := []struct {
		name   string
		give   Group
		model  QueueingModel
		want   int
		reason string
	}{
		{"zero rate at min", Group{ArrivalRate: 0}, q, 1, "plan 0.00/s"},
		{"rate sized", Group{ArrivalRate: 5 * perReplica}, q, 5, "λ="},
		{"just above five", Group{ArrivalRate: 5*perReplica + 0.01}, q, 6, ""},
		{"backlog drains in 30 s", Group{ArrivalRate: 0, GatewayQueue: int(math.Ceil(30 * 2 * perReplica))}, q, 3, "backlog"},
		{"trend lookahead", Group{ArrivalRate: perReplica, RateLevel: perReplica, RateTrend: perReplica / 60}, QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute, TrendDeadband: -1}, 3, ""},
		{"trend deadband", Group{ArrivalRate: perReplica, RateLevel: perReplica, RateTrend: perReplica / 60}, QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute}, 3, "plan 22.41/s"},
		{"trend within deadband ignored", Group{ArrivalRate: perReplica, RateLevel: perReplica, RateTrend: perReplica / 1300}, QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute}, 2, "plan 7.73/s"},
		{"headroom", Group{ArrivalRate: 4 * perReplica}, QueueingModel{TTFT: time.Second, Headroom: 0.5}, 6, ""},
		{"no rate no samples hold", Group{ArrivalRate: math.NaN()}, q, 2, "hold"},
		{"scale-down band holds", Group{ArrivalRate: 4.6 * perReplica}, q, 5, "within the 15% scale-down band"},
		{"below the band sizes with margin", Group{ArrivalRate: 3.3 * perReplica}, q, 4, "plan"},
		{"no margin", Group{ArrivalRate: 3.95 * perReplica}, QueueingModel{TTFT: time.Second, ScaleDownMargin: -1}, 4, "plan"},
		{"margin keeps one more", Group{ArrivalRate: 3.95 * perReplica}, q, 5, "plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.give
			if g.RateLevel == 0 {
				g.RateLevel = g.ArrivalRate
			}
			g.Pools = []PoolView{{Pool: p, Ready: 2}}
			if g.ArrivalRate > 3*perReplica && g.ArrivalRate < 5*perReplica {
				g.Pools[0].Ready = 5
			}
			got := tt.model.Analyze(&g)
			assert.Equal(t, []int{tt.want}, got.Replicas)
			assert.Contains(t, got.Reason, tt.reason)
		})
	}
	t.Run("observed TTFT above objective blocks scale-down", func(t *testing.T) {
		ms := samples(5, 0.3, 0)
		ms[2].TTFTP90 = 1.4
		g := Group{ArrivalRate: perReplica, RateLevel: perReplica, Pools: []PoolView{{Pool: p, Ready: 5, Samples: ms}}}
		got := q.Analyze(&g)
		assert.Equal(t, []int{5}, got.Replicas)
		assert.Contains(t, got.Reason, "observed TTFT p90 1.400s above the objective")
		ms[2].TTFTP90 = 0.4
		assert.Equal(t, []int{2}, q.Analyze(&g).Replicas)
	})
	t.Run("completions fallback", func(t *testing.T) {
		ms := samples(2, 0.3, 0)
		ms[0].RequestRate, ms[1].RequestRate = 2*perReplica, 2*perReplica
		g := Group{ArrivalRate: math.NaN(), Pools: []PoolView{{Pool: p, Ready: 3, Samples: ms, Missing: 1}}}
		got := q.Analyze(&g)
		assert.Equal(t, []int{6}, got.Replicas) // 2 per replica extrapolated to 3 warm replicas
		assert.Contains(t, got.Reason, "completions")
	})
}

func TestQueueingValidate(t *testing.T) {
	cfg := onePool(nil, 1, 4)
	assert.NoError(t, QueueingModel{TTFT: time.Second}.Validate(cfg))
	assert.Error(t, QueueingModel{}.Validate(cfg))
	assert.Error(t, QueueingModel{TTFT: 50 * time.Millisecond}.Validate(cfg))
	assert.Error(t, QueueingModel{TTFT: time.Second, Percentile: 1}.Validate(cfg))
	assert.Error(t, QueueingModel{TTFT: time.Second, MaxUtilization: 1.5}.Validate(cfg))
	assert.Error(t, QueueingModel{TTFT: time.Second, Headroom: math.Inf(1)}.Validate(cfg))
	cfg.Pools[0].Profile.MaxRate = 0
	assert.Error(t, QueueingModel{TTFT: time.Second}.Validate(cfg))
}

// TestCheapestMixBruteForce compares the branch and bound with exhaustive search.
func TestCheapestMixBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := range 300 {
		m := 1 + rng.IntN(3)
		g := &Group{}
		caps := make([]float64, m)
		for i := range m {
			lo := rng.IntN(2)
			g.Pools = append(g.Pools, PoolView{Pool: Pool{Name: string(rune('a' + i)), Min: lo, Max: lo + 1 + rng.IntN(6),
				Cost: float64(1 + rng.IntN(9)), Profile: Profile{MaxRate: 1}}, Ready: rng.IntN(4)})
			caps[i] = 0.5 + rng.Float64()*4
		}
		demand := rng.Float64() * 25
		got := cheapestMix(g, caps, demand)
		// Exhaustive.
		bestCost, feasible := math.Inf(1), false
		var rec func(i int, n []int)
		rec = func(i int, n []int) {
			if i == m {
				c, cost := 0.0, 0.0
				for k := range n {
					c += float64(n[k]) * caps[k]
					cost += float64(n[k]) * g.Pools[k].Pool.Cost
				}
				if c >= demand-1e-9 {
					feasible = true
					bestCost = math.Min(bestCost, cost)
				}
				return
			}
			for c := g.Pools[i].Pool.Min; c <= g.Pools[i].Pool.Max; c++ {
				rec(i+1, append(n, c))
			}
		}
		rec(0, nil)
		gotCap, gotCost := 0.0, 0.0
		for k := range got {
			require.GreaterOrEqual(t, got[k], g.Pools[k].Pool.Min, "iter %d", iter)
			require.LessOrEqual(t, got[k], g.Pools[k].Pool.Max, "iter %d", iter)
			gotCap += float64(got[k]) * caps[k]
			gotCost += float64(got[k]) * g.Pools[k].Pool.Cost
		}
		if !feasible {
			for k := range got {
				assert.Equal(t, g.Pools[k].Pool.Max, got[k], "iter %d infeasible → max", iter)
			}
			continue
		}
		assert.GreaterOrEqual(t, gotCap, demand-1e-9, "iter %d", iter)
		assert.InDelta(t, bestCost, gotCost, 1e-9, "iter %d: demand %.2f caps %v", iter, demand, caps)
	}
}

func TestTargetTracking(t *testing.T) {
	p := Pool{Name: "p", Max: 100}
	tt10 := TargetTracking{Target: 5, Tolerance: HPATolerance}
	ttft := TargetTracking{Metric: func(m Metrics) float64 { return m.TTFTP90 }, Name: "ttft", Target: 0.5}
	ttftSamples := func(vs ...float64) []Metrics {
		out := samples(len(vs), 0.1, 0)
		for i, v := range vs {
			out[i].TTFTP90 = v
		}
		return out
	}
	tests := []struct {
		name   string
		tr     TargetTracking
		give   PoolView
		want   int
		reason string
	}{
		{"within tolerance", tt10, PoolView{Pool: p, Ready: 10, Samples: samples(10, 0, 5.4)}, 10, "within tolerance"},
		{"tolerance zero keeps +1", TargetTracking{Target: 5}, PoolView{Pool: p, Ready: 10, Samples: samples(10, 0, 5.4)}, 11, "ratio 1.080"},
		{"double", tt10, PoolView{Pool: p, Ready: 3, Samples: samples(3, 0, 10)}, 6, "ratio 2.000"},
		{"halve", tt10, PoolView{Pool: p, Ready: 4, Samples: samples(4, 0, 2.5)}, 2, "ratio 0.500"},
		{"missing count as target on scale down", tt10, PoolView{Pool: p, Ready: 4, Samples: samples(2, 0, 0), Missing: 2}, 2, "adjusted 0.500"},
		{"missing count as zero on scale up", tt10, PoolView{Pool: p, Ready: 4, Samples: samples(2, 0, 10), Missing: 2}, 4, "adjusted 1.000; hold"},
		{"pending count as zero on scale up", tt10, PoolView{Pool: p, Ready: 2, Pending: 2, Samples: samples(2, 0, 15)}, 6, "adjusted 1.500"},
		{"no samples", tt10, PoolView{Pool: p, Ready: 2, Warming: 2}, 2, "no samples"},
		{"kv metric", TargetTracking{Metric: KVCacheUsage, Name: "kv", Target: 0.5}, PoolView{Pool: p, Ready: 2, Samples: samples(2, 0.75, 0)}, 3, "kv=0.5"},
		// TTFTP90 is NaN when unknown: such samples count as missing, as the
		// HPA counts pods without a metric, instead of poisoning the mean.
		{"NaN values are missing", ttft, PoolView{Pool: p, Ready: 4, Samples: ttftSamples(0.25, 0.25, math.NaN(), math.NaN())}, 3, "adjusted 0.750"},
		{"all NaN holds", ttft, PoolView{Pool: p, Ready: 4, Samples: ttftSamples(math.NaN(), math.NaN(), math.NaN(), math.NaN())}, 4, "no samples"},
		{"infinite value is missing", ttft, PoolView{Pool: p, Ready: 2, Samples: ttftSamples(1, math.Inf(1))}, 2, "ratio 2.000 adjusted 1.000; hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.tr.Analyze(groupOf(tt.give))
			assert.Equal(t, []int{tt.want}, got.Replicas)
			assert.Contains(t, got.Reason, tt.reason)
		})
	}
	assert.Error(t, TargetTracking{}.Validate(nil))
	assert.Error(t, TargetTracking{Target: 1, Tolerance: -1}.Validate(nil))
	assert.InDelta(t, 3.0, RunningRequests(Metrics{Running: 3}), 0)
}
