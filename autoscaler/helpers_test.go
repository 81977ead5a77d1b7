package autoscaler

import (
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// warm returns n ready, warmed-up replicas sampled at now.
func warm(now time.Time, n int, kv, waiting float64) []Replica {
	rs := make([]Replica, n)
	for i := range rs {
		rs[i] = Replica{Ready: true, Since: now.Add(-time.Hour),
			Metrics: Metrics{SampledAt: now, KVUsage: kv, Waiting: waiting, Running: kv * 10}}
	}
	return rs
}

// notReady returns n replicas created age ago and not ready.
func notReady(now time.Time, n int, age time.Duration) []Replica {
	rs := make([]Replica, n)
	for i := range rs {
		rs[i] = Replica{Since: now.Add(-age)}
	}
	return rs
}

// young returns n replicas ready for age, with samples.
func young(now time.Time, n int, age time.Duration, kv float64) []Replica {
	rs := make([]Replica, n)
	for i := range rs {
		rs[i] = Replica{Ready: true, Since: now.Add(-age), Metrics: Metrics{SampledAt: now, KVUsage: kv}}
	}
	return rs
}

func join(rs ...[]Replica) []Replica {
	var out []Replica
	for _, r := range rs {
		out = append(out, r...)
	}
	return out
}

// onePool is a single-pool config with the given analyzer and no stabilization
// (so analyzer and guard effects show directly).
func onePool(a Analyzer, minR, maxR int) *Config {
	return &Config{
		Pools:     []Pool{{Name: "p", Min: minR, Max: maxR, Cost: 1, Profile: Profile{MaxRate: 10, BaseTTFT: 100 * time.Millisecond}}},
		Analyzer:  a,
		ScaleUp:   &ScalingRules{},
		ScaleDown: &ScalingRules{},
	}
}

func obs1(desired int, rs []Replica) Observation {
	return Observation{ArrivalRate: nanRate(), Pools: []PoolObservation{{Name: "p", Desired: desired, Replicas: rs}}}
}

func nanRate() float64 {
	var zero float64
	return zero / zero
}
