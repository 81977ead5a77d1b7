package autoscaler_test

import (
	"fmt"
	"time"

	"github.com/routekit/routekit/autoscaler"
)

// Decide sizes two variants of one model from the arrival rate. At a 1 s TTFT
// p90 objective an H100 replica carries 9.6 req/s and an L40S 1.8 req/s, so
// the H100 is cheaper per request; the cheapest mix for 20 req/s is two H100
// (19 req/s, cost 8) topped up by one L40S (cost 1), not three H100 (cost 12).
func ExampleDecide() {
	cfg := &autoscaler.Config{
		Pools: []autoscaler.Pool{
			{Name: "h100", Min: 1, Max: 8, Cost: 4, Profile: autoscaler.Profile{MaxRate: 12, BaseTTFT: 150 * time.Millisecond}},
			{Name: "l40s", Min: 0, Max: 8, Cost: 1, Profile: autoscaler.Profile{MaxRate: 4, BaseTTFT: 300 * time.Millisecond}},
		},
		Analyzer: autoscaler.QueueingModel{TTFT: time.Second},
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ready := func(n int) []autoscaler.Replica {
		rs := make([]autoscaler.Replica, n)
		for i := range rs {
			rs[i] = autoscaler.Replica{Ready: true, Since: now.Add(-time.Hour),
				Metrics: autoscaler.Metrics{SampledAt: now, KVUsage: 0.3, Running: 8}}
		}
		return rs
	}
	obs := autoscaler.Observation{
		ArrivalRate: 20,
		Pools: []autoscaler.PoolObservation{
			{Name: "h100", Desired: 1, Replicas: ready(1)},
			{Name: "l40s", Desired: 1, Replicas: ready(1)},
		},
	}
	dec, _ := autoscaler.Decide(cfg, autoscaler.State{}, obs, now)
	for _, p := range dec.Pools {
		fmt.Printf("%s: %d -> %d\n", p.Name, p.Current, p.Desired)
	}
	// Output:
	// h100: 1 -> 2
	// l40s: 1 -> 1
}
