package autoscaler

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// BenchmarkDecide measures one decision over a pool of n replicas.
func BenchmarkDecide(b *testing.B) {
	analyzers := []struct {
		name string
		a    Analyzer
	}{
		{"saturation", Saturation{}},
		{"queueing", QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute}},
		{"target", TargetTracking{Target: 5, Tolerance: HPATolerance}},
	}
	for _, an := range analyzers {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/replicas=%d", an.name, n), func(b *testing.B) {
				cfg := &Config{Pools: []Pool{{Name: "p", Min: 1, Max: 2 * n, Cost: 1,
					Profile: Profile{MaxRate: 8, BaseTTFT: 50 * time.Millisecond, Concurrency: 48}}}, Analyzer: an.a}
				obs := obs1(n, warm(t0, n, 0.5, 1))
				obs.ArrivalRate = float64(n) * 5
				_, st := Decide(cfg, State{}, obs, t0)
				now := t0.Add(15 * time.Second)
				b.ReportAllocs()
				for b.Loop() {
					_, _ = Decide(cfg, st, obs, now)
				}
			})
		}
	}
}

// BenchmarkCheapestMix compares the branch and bound with exhaustive search
// over four variants.
func BenchmarkCheapestMix(b *testing.B) {
	g := &Group{}
	caps := []float64{6.5, 3.1, 1.7, 9.9}
	for i, c := range []float64{4, 1.5, 0.7, 7} {
		g.Pools = append(g.Pools, PoolView{Pool: Pool{Name: fmt.Sprint(i), Max: 12, Cost: c, Profile: Profile{MaxRate: caps[i]}}})
	}
	for _, demand := range []float64{10, 40, 80} {
		b.Run(fmt.Sprintf("branch-and-bound/demand=%v", demand), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cheapestMix(g, caps, demand)
			}
		})
		b.Run(fmt.Sprintf("exhaustive/demand=%v", demand), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bruteMix(g, caps, demand)
			}
		})
	}
}

// bruteMix is the naive baseline: every combination of counts.
func bruteMix(g *Group, caps []float64, demand float64) []int {
	m := len(g.Pools)
	n := make([]int, m)
	best := make([]int, m)
	bestCost := math.Inf(1)
	var rec func(i int, c, cost float64)
	rec = func(i int, c, cost float64) {
		if i == m {
			if c >= demand-1e-9 && cost < bestCost {
				bestCost = cost
				copy(best, n)
			}
			return
		}
		p := g.Pools[i].Pool
		for k := p.Min; k <= p.Max; k++ {
			n[i] = k
			rec(i+1, c+float64(k)*caps[i], cost+float64(k)*p.Cost)
		}
	}
	rec(0, 0, 0)
	return best
}

func TestBruteMixAgrees(t *testing.T) {
	g := &Group{}
	caps := []float64{6.5, 3.1, 1.7, 9.9}
	for i, c := range []float64{4, 1.5, 0.7, 7} {
		g.Pools = append(g.Pools, PoolView{Pool: Pool{Name: fmt.Sprint(i), Max: 12, Cost: c, Profile: Profile{MaxRate: caps[i]}}})
	}
	cost := func(n []int) float64 {
		s := 0.0
		for i := range n {
			s += float64(n[i]) * g.Pools[i].Pool.Cost
		}
		return s
	}
	for _, d := range []float64{10, 40, 80} {
		if a, b := cost(cheapestMix(g, caps, d)), cost(bruteMix(g, caps, d)); math.Abs(a-b) > 1e-9 {
			t.Errorf("demand %v: branch and bound cost %v, exhaustive %v", d, a, b)
		}
	}
}
