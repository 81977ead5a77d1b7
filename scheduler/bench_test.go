package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
)

// benchFleet returns n endpoints with varied load and a prefix index in which
// every tenth endpoint holds most of a prompt of tokens tokens.
func benchFleet(b *testing.B, n, tokens int) ([]*pool.Endpoint, mapIndex, *Request) {
	specs := make([]ep, n)
	for i := range specs {
		specs[i] = ep{waiting: i % 7, running: i % 11, kv: float64(i%10) / 10, inflight: i % 3, tokens: 1000 * (i % 13)}
	}
	eps, _ := fleet(b, specs...)
	blocks := tokens / 16
	idx := mapIndex{}
	for i, e := range eps {
		if i%10 == 0 {
			idx[e.ID] = gpu(blocks * (i%7 + 3) / 10)
		}
	}
	tok := make([]uint32, tokens)
	for i := range tok {
		tok[i] = uint32(i)
	}
	return eps, idx, &Request{Model: "m", Tokens: tok, BlockKeys: keys(blocks), BlockSize: 16}
}

var benchSizes = []struct{ endpoints, tokens int }{
	{10, 8192}, {100, 8192}, {1000, 8192}, {10, 100_000}, {100, 100_000}, {1000, 100_000},
}

// BenchmarkSchedule measures one full decision with the default pipeline
// (prefix-affinity filter, token-load scorer, max-score picker) on a
// pre-tokenized request whose block keys are computed; the prefix index here
// is a constant-time stand-in, so this is the scheduler's own cost.
func BenchmarkSchedule(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d/tokens=%d", sz.endpoints, sz.tokens), func(b *testing.B) {
			eps, idx, req := benchFleet(b, sz.endpoints, sz.tokens)
			s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(idx))
			if err != nil {
				b.Fatal(err)
			}
			var d Decision
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ScheduleInto(ctx, req, eps, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchKV is benchFleet with a real kvcache.Index: every tenth endpoint holds a
// prefix of 30–90% of the prompt in GPU memory, others hold unrelated blocks.
func benchKV(b testing.TB, n, tokens int) ([]*pool.Endpoint, *kvcache.Index, *Request) {
	specs := make([]ep, n)
	for i := range specs {
		specs[i] = ep{waiting: i % 7, running: i % 11, kv: float64(i%10) / 10, inflight: i % 3, tokens: 1000 * (i % 13)}
	}
	eps, _ := fleet(b, specs...)
	idx, err := kvcache.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	blocks := tokens / 16
	k := keys(blocks)
	other := make([]uint64, 256)
	for i, e := range eps {
		if i%10 == 0 {
			if err := idx.Add(e.ID, kvcache.TierGPU, k[:blocks*(i%7+3)/10]); err != nil {
				b.Fatal(err)
			}
		}
		for j := range other {
			other[j] = mix(uint64(i+1)<<32, j)
		}
		if err := idx.Add(e.ID, kvcache.TierGPU, other); err != nil {
			b.Fatal(err)
		}
	}
	tok := make([]uint32, tokens)
	for i := range tok {
		tok[i] = uint32(i)
	}
	return eps, idx, &Request{Model: "m", Tokens: tok, BlockKeys: k, BlockSize: 16}
}

// BenchmarkScheduleKV is one full decision as a gateway makes it: the default
// pipeline over a real kvcache.Index lookup of the request's precomputed block
// keys (8k tokens = 512 blocks, 100k = 6,250).
func BenchmarkScheduleKV(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d/tokens=%d", sz.endpoints, sz.tokens), func(b *testing.B) {
			eps, idx, req := benchKV(b, sz.endpoints, sz.tokens)
			s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(KVIndex(idx)))
			if err != nil {
				b.Fatal(err)
			}
			var d Decision
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ScheduleInto(ctx, req, eps, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScheduleBlend is the 2/2/3 blend (queue, KV utilisation, prefix)
// llm-d's Helm chart still ships, with two fallbacks.
func BenchmarkScheduleBlend(b *testing.B) {
	prefix, _ := Prefix(TierWeights{})
	for _, sz := range benchSizes[:3] {
		b.Run(fmt.Sprintf("endpoints=%d/tokens=%d", sz.endpoints, sz.tokens), func(b *testing.B) {
			eps, idx, req := benchFleet(b, sz.endpoints, sz.tokens)
			s, err := New(Profile{Scorers: []WeightedScorer{
				Weighted(2, QueueDepth()), Weighted(2, KVCacheUtilization()), Weighted(3, prefix),
			}, Picker: MaxScore(rand.NewPCG(1, 1))}, WithPrefixIndex(idx))
			if err != nil {
				b.Fatal(err)
			}
			var d Decision
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ScheduleInto(ctx, req, eps, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNaive is the baseline: the same default pipeline written the
// map-per-scorer way (a fresh map of scores per scorer, candidate slices copied
// per filter, shuffle and sort to pick), as plugin frameworks that return
// map[Endpoint]float64 do.
func BenchmarkNaive(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d/tokens=%d", sz.endpoints, sz.tokens), func(b *testing.B) {
			eps, idx, req := benchFleet(b, sz.endpoints, sz.tokens)
			r := rand.New(rand.NewPCG(1, 1))
			b.ReportAllocs()
			for b.Loop() {
				if naiveDecide(req, eps, idx, r) == nil {
					b.Fatal("no pick")
				}
			}
		})
	}
}

func naiveDecide(req *Request, eps []*pool.Endpoint, idx mapIndex, r *rand.Rand) *pool.Endpoint {
	type scored struct {
		e     *pool.Endpoint
		score float64
	}
	match := map[string]PrefixMatch{}
	for _, e := range eps {
		match[e.ID] = idx[e.ID]
	}
	// affinity filter
	var sticky, all []*pool.Endpoint
	bestS, bestO := 1e18, 1e18
	for _, e := range eps {
		all = append(all, e)
		m := match[e.ID]
		t := float64(e.Load().UncachedTokens+int64(req.UncachedTokens(m.Blocks))) / 15928
		if float64(m.Blocks)/float64(len(req.BlockKeys)) >= 0.8 {
			sticky = append(sticky, e)
			bestS = min(bestS, t)
		} else {
			bestO = min(bestO, t)
		}
	}
	cands := all
	if len(sticky) > 0 && len(sticky) < len(all) && bestS-bestO <= 18 {
		cands = sticky
	}
	// token-load scorer
	scores := map[*pool.Endpoint]float64{}
	for _, e := range cands {
		t := float64(e.Load().UncachedTokens) + float64(req.UncachedTokens(match[e.ID].Blocks))
		scores[e] = 1 - min(1, t/DefaultTokenCapacity)
	}
	list := make([]scored, 0, len(cands))
	for _, e := range cands {
		list = append(list, scored{e, scores[e]})
	}
	r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	slices.SortStableFunc(list, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	return list[0].e
}

// BenchmarkScheduleLatency times every decision of BenchmarkScheduleKV's
// setup separately and reports its P50 and P99 (the target is a P50),
// at 100 endpoints.
func BenchmarkScheduleLatency(b *testing.B) {
	for _, tokens := range []int{8192, 100_000} {
		b.Run(fmt.Sprintf("endpoints=100/tokens=%d", tokens), func(b *testing.B) {
			eps, idx, req := benchKV(b, 100, tokens)
			s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(KVIndex(idx)))
			if err != nil {
				b.Fatal(err)
			}
			var d Decision
			ctx := context.Background()
			lat := make([]time.Duration, 0, 1<<16)
			b.ReportAllocs()
			for b.Loop() {
				t := time.Now()
				if err := s.ScheduleInto(ctx, req, eps, &d); err != nil {
					b.Fatal(err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}
