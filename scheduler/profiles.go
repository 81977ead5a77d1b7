package scheduler

import "context"

// ProfileHandler sequences the profiles of a multi-profile scheduler ([NewMulti]).
//
// Next returns the index (into the profiles given to NewMulti) of the next
// profile to run for req, or -1 when the decision is complete. d.Results holds the
// results of the profiles run so far, in order; the first one run is the primary.
// Next is called at most len(profiles)+1 times per decision. It must be safe for
// concurrent use.
type ProfileHandler interface {
	Next(ctx context.Context, req *Request, d *Decision) int
}

// ProfileHandlerFunc adapts a function to [ProfileHandler].
// The function must be safe for concurrent use: a Scheduler calls it from every
// goroutine that schedules.
type ProfileHandlerFunc func(ctx context.Context, req *Request, d *Decision) int

// Next calls f.
func (f ProfileHandlerFunc) Next(ctx context.Context, req *Request, d *Decision) int {
	return f(ctx, req, d)
}

// Disaggregated is a [ProfileHandler] for prefill/decode disaggregation: it runs
// the Decode profile first (the primary result: where the request is sent), then,
// if the prompt tokens the chosen decode endpoint does not hold are at least
// MinUncachedTokens, the Prefill profile. The gateway then sends the prefill to
// d.Result(prefill name).Endpoint and the decode to d.Endpoint; without a prefill
// result it sends the whole request to d.Endpoint.
//
// Formula: disaggregate ⇔ MinUncachedTokens > 0 ∧ promptLen − cached(decode) ≥
// MinUncachedTokens, where cached(decode) is the decode endpoint's matched
// prefix in tokens (matched blocks × block size, capped at promptLen).
// MinUncachedTokens is llm-d's prefix-based-pd-decider nonCachedTokens, with the
// same ≥ and the same 0 = never disaggregate. Not offered: the decider's
// separate promptTokens minimum (it matters only when set above
// nonCachedTokens, since the uncached part is never longer than the prompt).
// Unlike llm-d, which keeps a request local when the decode endpoint has no
// prefix information, a scheduler without a [PrefixIndex] sees nothing cached
// and disaggregates every prompt of at least MinUncachedTokens tokens.
// Disaggregated is immutable and safe for concurrent use.
type Disaggregated struct {
	Decode, Prefill   int // profile indices
	MinUncachedTokens int
}

// Next implements [ProfileHandler].
func (h Disaggregated) Next(_ context.Context, req *Request, d *Decision) int {
	switch len(d.Results) {
	case 0:
		return h.Decode
	case 1:
		if h.MinUncachedTokens > 0 && d.Results[0].Err == nil && d.Results[0].UncachedTokens >= h.MinUncachedTokens {
			return h.Prefill
		}
	}
	return -1
}
