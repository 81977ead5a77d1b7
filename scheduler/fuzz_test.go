package scheduler

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/routekit/routekit/pool"
)

// FuzzSchedule drives the default scheduler, with session affinity, LoRA
// affinity and the no-hit LRU scorer added, over fleets whose live state
// comes from fuzzed bytes: negative or huge queue depths, NaN, infinite or
// out-of-range KV usage, stale metrics, prefix matches longer than the
// prompt, odd prompt lengths and block sizes. It checks that Schedule never
// panics, fails only with the package's input errors (never a score out of
// range: the built-in scorers must absorb whatever a server reports), and
// that a success names an offered endpoint with distinct fallbacks. The
// seeds run as a normal test; fuzz with:
//
//	go test -run '^$' -fuzz FuzzSchedule ./scheduler
func FuzzSchedule(f *testing.F) {
	f.Add([]byte{}, int64(100), 4, uint16(0))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, int64(0), 0, uint16(16))
	f.Add([]byte{0xff, 0xfe, 0x80, 0x7f, 0, 0, 0, 1, 2, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, int64(-5), -3, uint16(1))
	f.Add([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), int64(math.MaxInt64), 64, uint16(65535))
	// Six fresh endpoints (state bytes: flags, waiting, running, kv, kv tokens,
	// in-flight, tokens, prefix; flags 2 adds a LoRA byte, 4 a tiered prefix),
	// then the stale policy, the fallbacks and the LoRA flag: a decision that
	// succeeds with fallbacks.
	f.Add([]byte{5, 0, 3, 2, 1, 0, 1, 5, 7, 0, 1, 1, 0, 1, 0, 0, 30, 2, 0, 9, 6, 2, 1, 3, 9, 4, 2,
		4, 200, 1, 7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 1}, int64(500), 30, uint16(16))
	f.Fuzz(func(t *testing.T, data []byte, promptTokens int64, nkeys int, blockSize uint16) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		kvValues := []float64{0, 0.5, 1, 1.0000001, -0.1, 2, math.NaN(), math.Inf(1), math.Inf(-1)}
		n := 1 + int(next()%6)
		specs := make([]ep, n)
		for i := range specs {
			b := next()
			specs[i] = ep{
				waiting:  int(int8(next())) * 1000,
				running:  int(int8(next())),
				kv:       kvValues[int(next())%len(kvValues)],
				kvTokens: int(int8(next())) << 20,
				inflight: int(next() % 4),
				tokens:   int(next()) * 100,
				stale:    b&1 == 1,
				prefix:   gpu(int(next() % 40)),
			}
			if b&2 != 0 {
				specs[i].lora = &pool.Metrics{MaxLoRA: int(int8(next())), RunningLoRAs: []string{"a"}}
			}
			if b&4 != 0 {
				specs[i].prefix = PrefixMatch{Blocks: 30, GPU: 10, CPU: 10, Storage: 10}
			}
		}
		eps, _ := fleet(t, specs...)
		idx := PrefixIndexFunc(func(_ *Request, cands []Candidate) {
			for i := range cands {
				cands[i].Prefix = specs[slices.Index(eps, cands[i].Endpoint)].prefix
			}
		})
		sessions := SessionAffinity(0, 4, func() time.Time { return t0 })
		p := DefaultProfile(rand.NewPCG(1, 2))
		p.Scorers = append(p.Scorers, Weighted(1, sessions), Weighted(1, LoRAAffinity()), Weighted(1, NoHitLRU(2)),
			Weighted(1, RunningRequests()), Weighted(1, InFlight()))
		s, err := New(p, WithPrefixIndex(idx), WithStalePolicy(StalePolicy(next()%3)), WithFallbacks(int(next()%4)))
		if err != nil {
			t.Fatal(err)
		}
		req := &Request{
			ID: "r", PromptTokens: int(promptTokens), BlockSize: int(blockSize), Session: "s",
			BlockKeys: keys(max(0, min(nkeys, 64))),
		}
		if next()&1 == 1 {
			req.LoRA = "a"
		}
		for range 2 { // the second decision sees the session binding and LRU state
			d, err := s.Schedule(context.Background(), req, eps)
			if err != nil {
				if !errors.Is(err, ErrNoPrompt) && !errors.Is(err, ErrAllStale) {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !slices.Contains(eps, d.Endpoint) {
				t.Fatalf("chose %v, not an offered endpoint", d.Endpoint)
			}
			seen := map[*pool.Endpoint]bool{d.Endpoint: true}
			for _, fb := range d.Fallbacks {
				if seen[fb] || !slices.Contains(eps, fb) {
					t.Fatalf("bad fallback %v", fb)
				}
				seen[fb] = true
			}
			if d.UncachedTokens < 0 {
				t.Fatalf("negative uncached tokens %d", d.UncachedTokens)
			}
		}
	})
}
