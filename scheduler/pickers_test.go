package scheduler

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pick(t testing.TB, p Picker, req *Request, cands []Candidate, scores []float64, k int) []int {
	out := make([]int, k)
	n := p.Pick(context.Background(), req, cands, scores, out)
	require.GreaterOrEqual(t, n, 1)
	return out[:n]
}

func TestMaxScore(t *testing.T) {
	_, cands := fleet(t, ep{}, ep{}, ep{}, ep{})
	req := &Request{PromptTokens: 1}
	tests := []struct {
		name   string
		scores []float64
		k      int
		want   []int
	}{
		{"best first", []float64{0.1, 0.9, 0.5, 0.3}, 1, []int{1}},
		{"fallbacks in score order", []float64{0.1, 0.9, 0.5, 0.3}, 3, []int{1, 2, 3}},
		{"k larger than n", []float64{0.2, 0.1}, 5, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pick(t, MaxScore(rand.NewPCG(1, 1)), req, cands[:len(tt.scores)], tt.scores, tt.k)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMaxScoreTieBreakIsUniformAndSeeded(t *testing.T) {
	_, cands := fleet(t, ep{}, ep{}, ep{}, ep{})
	scores := []float64{0.7, 0.7, 0.2, 0.7}
	p := MaxScore(rand.NewPCG(7, 7))
	counts := map[int]int{}
	var first []int
	for range 3000 {
		got := pick(t, p, &Request{PromptTokens: 1}, cands, scores, 4)
		counts[got[0]]++
		assert.Equal(t, 2, got[3], "lowest score last")
		first = append(first, got[0])
	}
	assert.Zero(t, counts[2])
	for _, i := range []int{0, 1, 3} {
		assert.InDelta(t, 1000, counts[i], 120, "index %d", i)
	}
	// Same seed, same sequence.
	q := MaxScore(rand.NewPCG(7, 7))
	for i := range 50 {
		assert.Equal(t, first[i], pick(t, q, &Request{PromptTokens: 1}, cands, scores, 1)[0])
	}
}

func TestWeightedRandomIsProportional(t *testing.T) {
	_, cands := fleet(t, ep{}, ep{}, ep{}, ep{})
	scores := []float64{0.1, 0.2, 0.7, 0}
	p := WeightedRandom(rand.NewPCG(3, 4))
	counts := make([]int, 4)
	const n = 20000
	for range n {
		got := pick(t, p, &Request{PromptTokens: 1}, cands, scores, 4)
		counts[got[0]]++
		assert.Equal(t, 3, got[3], "zero score last")
	}
	for i, s := range scores {
		assert.InDelta(t, s*n, counts[i], 400, "index %d", i)
	}
	// All zero: uniform.
	counts = make([]int, 4)
	for range 4000 {
		counts[pick(t, p, &Request{PromptTokens: 1}, cands, []float64{0, 0, 0, 0}, 1)[0]]++
	}
	for i := range counts {
		assert.InDelta(t, 1000, counts[i], 150)
	}
}

func TestRandomAndRoundRobin(t *testing.T) {
	_, cands := fleet(t, ep{}, ep{}, ep{})
	scores := []float64{1, 0, 0}
	counts := make([]int, 3)
	r := Random(rand.NewPCG(5, 6))
	for range 3000 {
		got := pick(t, r, &Request{PromptTokens: 1}, cands, scores, 3)
		counts[got[0]]++
		assert.ElementsMatch(t, []int{0, 1, 2}, got)
	}
	for i := range counts {
		assert.InDelta(t, 1000, counts[i], 120)
	}
	rr := RoundRobin()
	var seq []int
	for range 6 {
		seq = append(seq, pick(t, rr, &Request{PromptTokens: 1}, cands, scores, 2)...)
	}
	assert.Equal(t, []int{0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 0}, seq)
}

func TestCostPicker(t *testing.T) {
	req := &Request{BlockKeys: keys(10), BlockSize: 100} // 1,000 tokens
	// costs: a: 1000 prefill; b: 100 prefill + 0.5·1000 decode = 600; c: 0 + 500 in flight = 500.
	_, cands := fleet(t,
		ep{id: "a"},
		ep{id: "b", prefix: gpu(9), kv: 0.5, kvTokens: 1000},
		ep{id: "c", prefix: gpu(10), inflight: 1, tokens: 500},
	)
	greedy, err := CostPicker(Cost{Rand: rand.NewPCG(1, 1)})
	require.NoError(t, err)
	assert.Equal(t, []int{2, 1, 0}, pick(t, greedy, req, cands, []float64{1, 1, 1}, 3))

	heavy, err := CostPicker(Cost{PrefillWeight: 10, Rand: rand.NewPCG(1, 1)})
	require.NoError(t, err)
	// a: 10000, b: 1000+500 = 1500, c: 5000.
	assert.Equal(t, []int{1, 2, 0}, pick(t, heavy, req, cands, nil, 3))

	soft, err := CostPicker(Cost{Temperature: 0.5, Rand: rand.NewPCG(2, 2)})
	require.NoError(t, err)
	// p ∝ exp(−(cost/1000)/0.5): a e^-2, b e^-1.2, c e^-1.
	w := []float64{math.Exp(-2), math.Exp(-1.2), math.Exp(-1)}
	sum := w[0] + w[1] + w[2]
	counts := make([]int, 3)
	const n = 20000
	for range n {
		counts[pick(t, soft, req, cands, nil, 1)[0]]++
	}
	for i := range w {
		assert.InDelta(t, w[i]/sum*n, counts[i], 450, "index %d", i)
	}
	for _, c := range []Cost{{PrefillWeight: -1}, {Temperature: -1}, {Temperature: math.Inf(1)}} {
		_, err := CostPicker(c)
		assert.Error(t, err, "%+v", c)
	}
}

// TestRoundRobinCounterWrap: the pick counter is a uint64; past 2^63 its
// conversion to int is negative and so was the chosen index. Positions must
// stay in range and keep cycling across the wrap.
func TestRoundRobinCounterWrap(t *testing.T) {
	_, cands := fleet(t, ep{}, ep{}, ep{})
	tests := []struct {
		name  string
		start uint64
		want  []int
	}{
		{"at 2^63", 1 << 63, []int{2, 0, 1}},                    // 2^63 mod 3 = 2
		{"across the uint64 wrap", math.MaxUint64, []int{0, 0}}, // 2^64−1 mod 3 = 0, then 0 mod 3
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := RoundRobin().(*roundRobin)
			rr.next.Store(tt.start)
			var got []int
			for range tt.want {
				got = append(got, pick(t, rr, &Request{PromptTokens: 1}, cands, nil, 1)...)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
