package scheduler

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// Cost configures [CostPicker]. The zero value is a greedy (argmin) picker with
// prefill weight 1.
// It is a plain value, safe to copy and to read from several goroutines.
type Cost struct {
	// PrefillWeight multiplies the prefill term; zero means 1. Raise it to favour
	// cache hits over decode balance (Dynamo's overlap_score_weight).
	PrefillWeight float64
	// Temperature softens the choice: 0 picks the minimum cost (random tie-break);
	// T > 0 samples with probability ∝ exp(−(cost/maxCost)/T).
	Temperature float64
	// Rand drives sampling and tie-breaks; nil means a randomly seeded PCG.
	Rand rand.Source
}

// CostPicker returns a Dynamo-style picker that ignores scores and minimises the
// work an endpoint would have if chosen, in tokens:
//
//	prefill(e) = pool.Load(e).UncachedTokens + promptLen − cachedTokens(e)
//	decode(e)  = KVCacheUsage(e) · KVCacheTokens(e)     (tokens resident)
//	cost(e)    = PrefillWeight · prefill(e) + decode(e)
//
// With Temperature 0 it takes the argmin (ties broken at random); otherwise it
// samples without replacement with probability ∝ exp(−(cost/max cost)/T), by the
// Gumbel-top-k method. Fallbacks follow in the same order. Safe for concurrent
// use.
func CostPicker(c Cost) (Picker, error) {
	if c.PrefillWeight == 0 {
		c.PrefillWeight = 1
	}
	if !(c.PrefillWeight > 0) || math.IsInf(c.PrefillWeight, 0) {
		return nil, fmt.Errorf("scheduler: cost prefill weight %v, want > 0", c.PrefillWeight)
	}
	if !(c.Temperature >= 0) || math.IsInf(c.Temperature, 0) {
		return nil, fmt.Errorf("scheduler: cost temperature %v, want ≥ 0", c.Temperature)
	}
	return &costPicker{c: c, r: newLockedRand(c.Rand)}, nil
}

type costPicker struct {
	c Cost
	r *lockedRand
}

func (*costPicker) Name() string { return "cost" }

// costOf returns candidate c's cost for req.
func (p *costPicker) costOf(req *Request, c *Candidate) float64 {
	m := c.Metrics()
	prefill := float64(c.Load().UncachedTokens) + float64(req.UncachedTokens(c.Prefix.Blocks))
	u := m.KVCacheUsage
	if !(u >= 0) {
		u = 0
	}
	return p.c.PrefillWeight*prefill + min(u, 1)*float64(m.KVCacheTokens)
}

func (p *costPicker) Pick(_ context.Context, req *Request, cands []Candidate, _ []float64, out []int) int {
	seed := p.r.seed()
	tie := func(i int) uint64 { return mix(seed, i) }
	if p.c.Temperature == 0 {
		return topK(len(cands), func(i int) float64 { return -p.costOf(req, &cands[i]) }, tie, out)
	}
	maxCost := 0.0
	for i := range cands {
		maxCost = max(maxCost, p.costOf(req, &cands[i]))
	}
	if maxCost == 0 {
		maxCost = 1
	}
	key := func(i int) float64 {
		g := -math.Log(-math.Log(unit(mix(seed^0x2545f4914f6cdd1d, i)))) // Gumbel(0,1)
		return -p.costOf(req, &cands[i])/maxCost/p.c.Temperature + g
	}
	return topK(len(cands), key, tie, out)
}
