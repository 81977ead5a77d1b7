package scheduler

import "math/rand/v2"

// DefaultProfile returns the out-of-the-box pipeline, llm-d's current
// "optimized baseline": the [PrefixAffinity] filter (sticky to the endpoints
// holding the prompt's prefix until their estimated TTFT is 18 s worse than the
// best other endpoint's), the [TokenLoad] scorer (fewest uncached prefill tokens
// in flight, this request's included), and the [MaxScore] picker. src seeds the
// picker's tie-break (nil: random).
func DefaultProfile(src rand.Source) Profile {
	f, err := PrefixAffinity(Affinity{})
	if err != nil {
		panic(err) // unreachable: the defaults are valid
	}
	return Profile{
		Name:    "default",
		Filters: []Filter{f},
		Scorers: []WeightedScorer{Weighted(1, TokenLoad(0))},
		Picker:  MaxScore(src),
	}
}

// Default returns a scheduler running [DefaultProfile] over idx (the prefix
// index, typically kvcache's; nil routes on load alone), excluding endpoints with
// stale metrics, with two fallbacks. opts override these.
//
//	s, err := scheduler.Default(scheduler.KVIndex(index))
func Default(idx PrefixIndex, opts ...Option) (*Scheduler, error) {
	all := append([]Option{WithPrefixIndex(idx)}, opts...)
	return New(DefaultProfile(nil), all...)
}
