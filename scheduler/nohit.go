package scheduler

import (
	"context"
	"slices"
	"sync"
)

// NoHitLRU spreads cold prefixes: when no candidate holds any of the request's
// prefix, it prefers the endpoint least recently chosen for a cold request, so
// that new prefix groups land on different endpoints instead of piling onto one.
// With the candidates ordered never-used first, then by oldest cold pick, rank r
// in 0..n−1:
//
//	cold request:  score = 1 − r/(n−1)   (1 for all when n = 1)
//	warm request:  score = 0.5 for all   (some candidate has a prefix hit)
//
// Only cold requests update the order (it is an [Observer]). It remembers at most
// maxEndpoints endpoints (≤ 0 means 1024). It is llm-d's no-hit-lru-scorer, with
// one difference: r ranks the candidates among themselves, while llm-d ranks a
// used endpoint by its position in the whole LRU, so endpoints that are not
// candidates (filtered out, or in another profile's role) still take ranks and
// several candidates can clamp to the same 0. Both agree whenever every
// endpoint the LRU remembers is a candidate. Safe for concurrent use.
func NoHitLRU(maxEndpoints int) *ColdLRU {
	if maxEndpoints <= 0 {
		maxEndpoints = 1024
	}
	return &ColdLRU{max: maxEndpoints, last: make(map[string]uint64)}
}

// ColdLRU is the scorer returned by [NoHitLRU]. It is safe for concurrent use.
type ColdLRU struct {
	max int

	mu   sync.Mutex        // guards the fields below
	tick uint64            // counts cold picks
	last map[string]uint64 // endpoint ID → tick of its last cold pick
	idx  []int             // scratch for ranking
}

// Name returns "no-hit-lru".
func (*ColdLRU) Name() string { return "no-hit-lru" }

func cold(cands []Candidate) bool {
	for i := range cands {
		if cands[i].Prefix.Blocks > 0 {
			return false
		}
	}
	return true
}

// Score implements [Scorer].
func (s *ColdLRU) Score(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
	n := len(cands)
	if !cold(cands) {
		for i := range out {
			out[i] = 0.5
		}
		return nil
	}
	if n == 1 {
		out[0] = 1
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx = s.idx[:0]
	for i := range cands {
		s.idx = append(s.idx, i)
	}
	// never used (tick 0) first, then oldest; stable keeps candidate order on ties.
	slices.SortStableFunc(s.idx, func(a, b int) int {
		ta, tb := s.last[cands[a].ID], s.last[cands[b].ID]
		switch {
		case ta < tb:
			return -1
		case ta > tb:
			return 1
		}
		return 0
	})
	for r, i := range s.idx {
		out[i] = 1 - float64(r)/float64(n-1)
	}
	return nil
}

// Observe records a cold request's chosen endpoint as the most recently used.
func (s *ColdLRU) Observe(_ *Request, res *Result) {
	if res.Endpoint == nil || !cold(res.Candidates()) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick++
	s.last[res.Endpoint.ID] = s.tick
	if len(s.last) > s.max { // forget the oldest
		oldest, ot := "", ^uint64(0)
		for id, t := range s.last {
			if t < ot {
				oldest, ot = id, t
			}
		}
		delete(s.last, oldest)
	}
}
