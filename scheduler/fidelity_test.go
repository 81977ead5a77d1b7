package scheduler

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// The tests in this file pin the built-ins that document themselves as llm-d's
// plugins to llm-d's formulas and defaults (see
// ../shared/reference/scheduler-anchors.md §2). Every expected value is worked
// out by hand from llm-d's formula in the comment beside it, not produced by
// the code under test.

// TestScorersMatchLLMD: queue-scorer, running-requests-size-scorer,
// kv-cache-utilization-scorer, token-load-scorer (default
// queueThresholdTokens), prefix-cache-scorer (default matchLengthWeight 0),
// lora-affinity-scorer and no-hit-lru-scorer.
func TestScorersMatchLLMD(t *testing.T) {
	prefix, err := Prefix(TierWeights{})
	require.NoError(t, err)
	// 512 blocks of 16 tokens: an 8,192-token prompt.
	req := &Request{BlockKeys: keys(512), BlockSize: 16}
	lora := func(max int, running, waiting []string) *pool.Metrics {
		return &pool.Metrics{MaxLoRA: max, RunningLoRAs: running, WaitingLoRAs: waiting}
	}
	tests := []struct {
		name   string
		scorer Scorer
		req    *Request
		give   []ep
		want   []float64
	}{
		// queue-scorer: (maxQ − q)/(maxQ − minQ); min 2, max 12.
		{"queue-scorer", QueueDepth(), req,
			[]ep{{waiting: 2}, {waiting: 7}, {waiting: 12}, {waiting: 9}},
			[]float64{1, 0.5, 0, 0.3}},
		{"queue-scorer all equal is 1", QueueDepth(), req,
			[]ep{{waiting: 4}, {waiting: 4}}, []float64{1, 1}},
		{"queue-scorer one endpoint is 1", QueueDepth(), req,
			[]ep{{waiting: 40}}, []float64{1}},
		// running-requests-size-scorer: same min-max; min 0, max 6.
		{"running-requests-size-scorer", RunningRequests(), req,
			[]ep{{running: 3}, {running: 0}, {running: 6}}, []float64{0.5, 1, 0}},
		// kv-cache-utilization-scorer: 1 − usage.
		{"kv-cache-utilization-scorer", KVCacheUtilization(), req,
			[]ep{{kv: 0}, {kv: 0.37}, {kv: 0.9}, {kv: 1}}, []float64{1, 0.63, 0.1, 0}},
		// token-load-scorer, Q = 4,194,304:
		//   idle, nothing cached:        1 − 8,192/Q               = 1 − 1/512
		//   2^20 in flight, 256 cached:  1 − (1,048,576 + 4,096)/Q = 1 − 0.2509765625
		//   Q in flight:                 1 − min(1, ≥ Q/Q)         = 0
		//   Q/2 in flight, all cached:   1 − 2,097,152/Q           = 0.5
		{"token-load-scorer default threshold", TokenLoad(0), req,
			[]ep{
				{},
				{inflight: 1, tokens: 1 << 20, prefix: gpu(256)},
				{inflight: 1, tokens: 4_194_304},
				{inflight: 1, tokens: 2_097_152, prefix: gpu(512)},
			},
			[]float64{1 - 1.0/512, 0.7490234375, 0, 0.5}},
		// prefix-cache-scorer with matchLengthWeight 0: matchBlocks/totalBlocks.
		{"prefix-cache-scorer", prefix, req,
			[]ep{{}, {prefix: gpu(128)}, {prefix: gpu(256)}, {prefix: gpu(512)}},
			[]float64{0, 0.25, 0.5, 1}},
		// lora-affinity-scorer: running 1.0; free slot 0.8 (checked before
		// waiting); waiting 0.6; else 0.
		{"lora-affinity-scorer", LoRAAffinity(), &Request{PromptTokens: 10, LoRA: "sql"},
			[]ep{
				{lora: lora(4, []string{"sql"}, nil)},
				{lora: lora(4, []string{"a"}, nil)},                  // 1+0 < 4
				{lora: lora(3, []string{"a", "b"}, []string{"sql"})}, // 2+1 = 3: no slot; waiting
				{lora: lora(4, []string{"a", "b"}, []string{"sql"})}, // 2+1 < 4: slot wins over waiting
				{lora: lora(3, []string{"a", "b", "c"}, nil)},        // full
			},
			[]float64{1, 0.8, 0.6, 0.8, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cands := fleet(t, tt.give...)
			out := make([]float64, len(cands))
			require.NoError(t, tt.scorer.Score(context.Background(), tt.req, cands, out))
			require.Len(t, out, len(tt.want))
			for i := range tt.want {
				assert.InDelta(t, tt.want[i], out[i], 1e-12, "candidate %d", i)
			}
		})
	}
}

// TestNoHitLRUMatchesLLMD: cold request ⇒ never-used endpoints first (in
// candidate order), then least recently cold-picked; score = 1 − rank/(n−1).
// Any prefix hit ⇒ 0.5 for all, and the LRU is left alone.
func TestNoHitLRUMatchesLLMD(t *testing.T) {
	s := NoHitLRU(0)
	_, cands := fleet(t, ep{id: "a"}, ep{id: "b"}, ep{id: "c"}, ep{id: "d"})
	req := &Request{BlockKeys: keys(4)}
	steps := []struct {
		name    string
		observe string // endpoint cold-picked before scoring, "" for none
		warm    bool
		want    []float64 // a, b, c, d
	}{
		{"all never used: candidate order", "", false, []float64{1, 2.0 / 3, 1.0 / 3, 0}},
		// c picked: a, b, d never used (ranks 0-2), c rank 3.
		{"after c", "c", false, []float64{1, 2.0 / 3, 0, 1.0 / 3}},
		// a picked: b, d never used (0, 1), then c (older, 2), a (3).
		{"after c, a", "a", false, []float64{0, 1, 1.0 / 3, 2.0 / 3}},
		{"warm request", "", true, []float64{0.5, 0.5, 0.5, 0.5}},
		// A warm pick does not touch the order.
		{"warm pick of b changes nothing", "b", true, []float64{0.5, 0.5, 0.5, 0.5}},
		{"cold again", "", false, []float64{0, 1, 1.0 / 3, 2.0 / 3}},
	}
	for _, st := range steps {
		cs := append([]Candidate(nil), cands...)
		if st.warm {
			cs[3].Prefix = gpu(1)
		}
		if st.observe != "" {
			for i := range cs {
				if cs[i].ID == st.observe {
					s.Observe(req, &Result{Endpoint: cs[i].Endpoint, cands: cs})
				}
			}
		}
		out := make([]float64, len(cs))
		require.NoError(t, s.Score(context.Background(), req, cs, out))
		for i := range st.want {
			assert.InDelta(t, st.want[i], out[i], 1e-12, "%s: %s", st.name, cs[i].ID)
		}
	}
}

// TestCombinationMatchesLLMDRanking: llm-d sums weight·score without dividing
// by the sum of weights; routekit divides. The totals differ by the constant
// Σw, so the ranking, the max-score pick and the weighted-random
// proportions are the same. llm-d's no-config default blend: queue-scorer ×2,
// kv-cache-utilization-scorer ×2, prefix-cache-scorer ×3.
func TestCombinationMatchesLLMDRanking(t *testing.T) {
	prefix, err := Prefix(TierWeights{})
	require.NoError(t, err)
	eps, _ := fleet(t,
		ep{id: "a", waiting: 0, kv: 0.9}, // queue 1,   kv 0.1, prefix 0
		ep{id: "b", waiting: 4, kv: 0.5}, // queue 0,   kv 0.5, prefix 0.75
		ep{id: "c", waiting: 2, kv: 0.3}, // queue 0.5, kv 0.7, prefix 0.25
	)
	idx := mapIndex{"b": gpu(6), "c": gpu(2)}
	s, err := New(Profile{
		Scorers: []WeightedScorer{Weighted(2, QueueDepth()), Weighted(2, KVCacheUtilization()), Weighted(3, prefix)},
		Picker:  MaxScore(rand.NewPCG(1, 1)),
	}, WithPrefixIndex(idx))
	require.NoError(t, err)
	d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(8)}, eps)
	require.NoError(t, err)
	// llm-d raw totals: a = 2·1 + 2·0.1 + 3·0 = 2.2; b = 2·0 + 2·0.5 + 3·0.75 =
	// 3.25; c = 2·0.5 + 2·0.7 + 3·0.25 = 3.15. llm-d picks b, then c, then a.
	llmd := []float64{2.2, 3.25, 3.15}
	for i, raw := range llmd {
		assert.InDelta(t, raw/7, d.Results[0].Total[i], 1e-12, "total of %s is llm-d's raw sum / Σw", eps[i].ID)
	}
	assert.Equal(t, "b", d.Endpoint.ID)
	require.Len(t, d.Fallbacks, 2)
	assert.Equal(t, "c", d.Fallbacks[0].ID)
	assert.Equal(t, "a", d.Fallbacks[1].ID)
	assert.InDeltaSlice(t, []float64{2.0 / 7, 2.0 / 7, 3.0 / 7}, d.Results[0].Weights, 1e-15)
}

// TestPrefixAffinityMatchesLLMD: prefix-cache-affinity-filter with llm-d's
// defaults (affinityThreshold 0.80, peakPrefillThroughput 15,928 tok/s,
// maxTTFTPenaltyMs 18,000). routekit's TTFT estimate adds this request's own
// uncached tokens to each endpoint's in-flight tokens (llm-d uses in-flight
// tokens alone); the cases say where that changes the outcome.
func TestPrefixAffinityMatchesLLMD(t *testing.T) {
	aff, err := PrefixAffinity(Affinity{})
	require.NoError(t, err)
	// 8,192-token prompt; the holder h has 448 of 512 blocks (0.875 ≥ 0.80):
	// 7,168 cached, 1,024 uncached there. o1 has 300 blocks (0.59 < 0.80, not
	// sticky): 8,192 − 4,800 = 3,392 uncached, the best non-sticky estimate.
	req := &Request{BlockKeys: keys(512), BlockSize: 16}
	tests := []struct {
		name     string
		holderIn int // holder's in-flight uncached tokens
		want     []string
	}{
		// llm-d: (100,000 − 0)/15,928 = 6.28 s ≤ 18 s.
		// routekit: (100,000 + 1,024 − 3,392)/15,928 = 6.13 s ≤ 18 s.
		{"light load: sticky", 100_000, []string{"h"}},
		// llm-d: 288,000/15,928 = 18.08 s > 18 s ⇒ release.
		// routekit: (288,000 + 1,024 − 3,392)/15,928 = 17.93 s ≤ 18 s ⇒ still
		// sticky: the holder is credited with the prefill its cache saves.
		{"llm-d releases, routekit keeps the holder", 288_000, []string{"h"}},
		// routekit: (300,000 + 1,024 − 3,392)/15,928 = 18.69 s > 18 s ⇒ release
		// (llm-d: 18.83 s, too).
		{"heavy load: released", 300_000, []string{"o1", "h", "o2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cands := fleet(t,
				ep{id: "o1", prefix: gpu(300)}, // 300/512 = 0.59 < 0.80: not sticky
				ep{id: "h", prefix: gpu(448), inflight: 1, tokens: tt.holderIn},
				ep{id: "o2"},
			)
			assert.Equal(t, tt.want, ids(aff.Filter(context.Background(), req, cands)))
		})
	}
	t.Run("threshold is inclusive", func(t *testing.T) {
		// 410/512 = 0.80078 ≥ 0.80; 409/512 = 0.79883 < 0.80.
		_, cands := fleet(t, ep{id: "x", prefix: gpu(409)}, ep{id: "y", prefix: gpu(410)}, ep{id: "z"})
		assert.Equal(t, []string{"y"}, ids(aff.Filter(context.Background(), req, cands)))
	})
}

// TestDisaggregatedMatchesLLMDDecider: prefix-based-pd-decider with
// nonCachedTokens N: disaggregate iff N > 0 and promptTokens − cached(decode)
// ≥ N, cached = matched blocks × block size on the chosen decode endpoint.
func TestDisaggregatedMatchesLLMDDecider(t *testing.T) {
	eps, _ := fleet(t, ep{id: "d", role: pool.RoleDecode}, ep{id: "p", role: pool.RolePrefill})
	decode := Profile{Name: "decode", Filters: []Filter{Roles(pool.RoleDecode)}}
	prefill := Profile{Name: "prefill", Filters: []Filter{Roles(pool.RolePrefill)}}
	tests := []struct {
		name      string
		threshold int // nonCachedTokens
		prompt    int // prompt tokens
		cached    int // blocks of 16 the decode endpoint holds
		want      bool
	}{
		{"nonCachedTokens 0 never disaggregates", 0, 10_000, 0, false},
		{"short prompt stays local", 16, 15, 0, false},                       // 15 < 16
		{"uncached below threshold", 16, 100, 6, false},                      // 100 − 96 = 4 < 16
		{"uncached at threshold disaggregates", 16, 112, 6, true},            // 112 − 96 = 16 ≥ 16
		{"uncached above threshold", 16, 100, 5, true},                       // 100 − 80 = 20 ≥ 16
		{"sample config nonCachedTokens 8", 8, 1000, 62, true},               // 1000 − 992 = 8 ≥ 8
		{"sample config nonCachedTokens 8, more cached", 8, 1000, 63, false}, // 1000 − 1008 < 8
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := mapIndex{"d": gpu(tt.cached)}
			s, err := NewMulti(Disaggregated{Decode: 0, Prefill: 1, MinUncachedTokens: tt.threshold},
				[]Profile{decode, prefill}, WithPrefixIndex(idx))
			require.NoError(t, err)
			n := (tt.prompt + 15) / 16
			d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(n), BlockSize: 16, PromptTokens: tt.prompt}, eps)
			require.NoError(t, err)
			assert.Equal(t, "d", d.Endpoint.ID, "decode is primary")
			r := d.Result("prefill")
			if !tt.want {
				assert.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			assert.Equal(t, "p", r.Endpoint.ID)
		})
	}
}

// TestSaturationMatchesLLMD: utilization-detector with its defaults
// (queueDepthThreshold 5, kvCacheUtilThreshold 0.8): endpoint score
// max(q/5, kv/0.8), pool = unweighted mean, stale = 1.0; saturated at ≥ 1.
func TestSaturationMatchesLLMD(t *testing.T) {
	var s Saturation
	tests := []struct {
		name string
		give []ep
		want float64
	}{
		// max(0, 0.5) = 0.5; max(2, 0.25) = 2; stale 1 ⇒ 3.5/3.
		{"mixed", []ep{{kv: 0.4}, {waiting: 10, kv: 0.2}, {stale: true}}, 3.5 / 3},
		// max(0.2, 0.5) = 0.5; max(0.4, 0) = 0.4 ⇒ 0.45.
		{"unsaturated", []ep{{waiting: 1, kv: 0.4}, {waiting: 2}}, 0.45},
		// max(1, 0.5) = 1 ⇒ exactly saturated.
		{"at threshold", []ep{{waiting: 5, kv: 0.4}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps, _ := fleet(t, tt.give...)
			assert.InDelta(t, tt.want, s.Level(eps), 1e-12)
			assert.Equal(t, tt.want >= 1, s.Saturated(eps))
		})
	}
}

// TestDefaultProfileDocNumbers checks the numbers DefaultProfile's doc quotes:
// on an idle fleet, the whole-prompt holder totals 1 and a non-holder
// 6/9 − 2P/(9·65,536) = (2·(1 − 6,000/65,536) + 2 + 2)/9 = 0.6463216… for a
// 6,000-token prompt.
func TestDefaultProfileDocNumbers(t *testing.T) {
	s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(mapIndex{"h": gpu(375)}))
	require.NoError(t, err)
	eps, _ := fleet(t, ep{id: "h"}, ep{id: "o"})
	d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(375), BlockSize: 16}, eps)
	require.NoError(t, err)
	assert.Equal(t, "h", d.Endpoint.ID)
	assert.InDelta(t, 1, d.Results[0].Total[0], 1e-12)
	assert.InDelta(t, 5.81689453125/9, d.Results[0].Total[1], 1e-12)
	assert.InDelta(t, 0.646, d.Results[0].Total[1], 0.0005)
}
