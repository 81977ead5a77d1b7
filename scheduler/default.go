package scheduler

import "math/rand/v2"

// DefaultProfileTokenCapacity is the [TokenLoad] capacity of [DefaultProfile]:
// 65,536 in-flight uncached prompt tokens score 0.
const DefaultProfileTokenCapacity = 65_536

// DefaultProfile returns the out-of-the-box pipeline: scorers [Prefix] ×3,
// [TokenLoad] ×2 with capacity [DefaultProfileTokenCapacity], [QueueDepth] ×2
// and [KVCacheUtilization] ×2, combined as Σ wᵢ·sᵢ / Σ wᵢ, and the [MaxScore]
// picker with its tie-break seeded from src (nil: random). No filter: every
// fresh endpoint is a candidate.
//
// The token-load term is the fresh one: the gateway's own count of uncached
// prompt tokens in flight (plus this request's), where queue and KV come from
// scrapes that lag by a scrape interval. With llm-d's capacity of 4M tokens it
// barely moves; at 64K tokens (≈ 4 s of prefill on one H100-class server) it
// spreads distinct prompts as evenly as round robin does.
//
// A candidate holding the whole prompt on an idle server scores 1; one holding
// nothing on an idle server just under 6/9, since its own P uncached tokens
// count against token load: 6/9 − 2P/(9·65,536), 0.646 for a 6,000-token
// prompt. A whole-prompt match (3/9) outweighs either the longest queue or a
// full KV cache alone (2/9 each) but not both, so a request follows its prefix
// until the holder is clearly busier than the others, then spreads.
//
// llm-d's own no-config default is queue ×2, KV ×2, prefix ×3, which this
// extends with token load; its weights are not normalised (see
// [WeightedScorer]), which changes the totals, not the choice.
//
// Why not llm-d's current "optimized baseline" ([PrefixAffinity] filter +
// [TokenLoad])? In the fleet simulations of examples/routecompare (see
// BENCHMARKS.md) it was never better than this blend, was up to 2× worse on
// TTFT p90 for multi-turn chat near saturation (the filter removes every
// non-holder, so a busy holder cannot shed load), and in a KV-tight fleet it
// sometimes piled a hot prefix group onto one KV-starved replica (its only
// load signal is queued prefill tokens). To use it anyway:
//
//	f, _ := scheduler.PrefixAffinity(scheduler.Affinity{Saturation: &scheduler.Saturation{}})
//	p.Filters = append(p.Filters, f)
func DefaultProfile(src rand.Source) Profile {
	p, err := Prefix(TierWeights{})
	if err != nil {
		panic(err) // unreachable: the defaults are valid
	}
	return Profile{
		Name: "default",
		Scorers: []WeightedScorer{
			Weighted(3, p),
			Weighted(2, TokenLoad(DefaultProfileTokenCapacity)),
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
