package scheduler

import "math/rand/v2"

// DefaultProfile returns the out-of-the-box pipeline:
//
//   - filter [PrefixAffinity] with a [Saturation] detector: keep the endpoints
//     holding ≥ 80% of the prompt ("sticky") until their estimated TTFT is 18 s
//     worse than the best other endpoint's, and drop from the sticky set any
//     endpoint at its queue (5 waiting) or KV (80%) threshold;
//   - scorers [Prefix] ×3, [TokenLoad] ×2, [QueueDepth] ×2,
//     [KVCacheUtilization] ×2 (combined as Σ wᵢ·sᵢ / Σ wᵢ);
//   - picker [MaxScore], tie-break seeded from src (nil: random).
//
// It starts from llm-d's current "optimized baseline" (affinity filter +
// token-load scorer) and adds queue, KV and prefix-length signals: in the
// fleet simulations of examples/routecompare the baseline alone sometimes
// piled a hot prefix group onto one KV-starved replica (its only load signal is
// queued prefill tokens), which the extra signals prevent; see BENCHMARKS.md.
func DefaultProfile(src rand.Source) Profile {
	f, err := PrefixAffinity(Affinity{Saturation: &Saturation{}})
	if err != nil {
		panic(err) // unreachable: the defaults are valid
	}
	p, err := Prefix(TierWeights{})
	if err != nil {
		panic(err) // unreachable: the defaults are valid
	}
	return Profile{
		Name:    "default",
		Filters: []Filter{f},
		Scorers: []WeightedScorer{
			Weighted(3, p),
			Weighted(2, TokenLoad(0)),
			Weighted(2, QueueDepth()),
			Weighted(2, KVCacheUtilization()),
		},
		Picker: MaxScore(src),
	}
}

// Default returns a scheduler running [DefaultProfile] over idx (the prefix
// index, typically kvcache's through [KVIndex]; nil routes on load alone),
// excluding endpoints with stale metrics, with two fallbacks. opts override
// these.
//
//	s, err := scheduler.Default(scheduler.KVIndex(index))
func Default(idx PrefixIndex, opts ...Option) (*Scheduler, error) {
	all := append([]Option{WithPrefixIndex(idx)}, opts...)
	return New(DefaultProfile(nil), all...)
}
