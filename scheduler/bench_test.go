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
// (prefix, token-load, queue and KV scorers, max-score picker) on a
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
// map-per-scorer way (a fresh map of scores per scorer, shuffle and sort to
// pick), as plugin frameworks whose scorers return map[Endpoint]float64 do.
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
	n := float64(len(req.BlockKeys))
	prefix := map[*pool.Endpoint]float64{}
	for _, e := range eps {
		prefix[e] = float64(match[e.ID].GPU) / n
	}
	tok := map[*pool.Endpoint]float64{}
	for _, e := range eps {
		t := float64(e.Load().UncachedTokens) + float64(req.UncachedTokens(match[e.ID].Blocks))
		tok[e] = 1 - min(1, t/DefaultProfileTokenCapacity)
	}
	queue := map[*pool.Endpoint]float64{}
	lo, hi := 1e18, -1e18
	for _, e := range eps {
		q := float64(e.Metrics().Waiting)
		lo, hi = min(lo, q), max(hi, q)
	}
	for _, e := range eps {
		queue[e] = 1
		if hi > lo {
			queue[e] = (hi - float64(e.Metrics().Waiting)) / (hi - lo)
		}
	}
	kv := map[*pool.Endpoint]float64{}
	for _, e := range eps {
		kv[e] = 1 - min(1, max(0, e.Metrics().KVCacheUsage))
	}
	list := make([]scored, 0, len(eps))
	for _, e := range eps {
		list = append(list, scored{e, (3*prefix[e] + 2*tok[e] + 2*queue[e] + 2*kv[e]) / 9})
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
