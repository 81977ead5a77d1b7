package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

func TestBuiltinScorers(t *testing.T) {
	prefix, err := Prefix(TierWeights{})
	require.NoError(t, err)
	prefixCustom, err := Prefix(TierWeights{GPU: 1, CPU: 0.5, Storage: 0.25})
	require.NoError(t, err)
	req := &Request{BlockKeys: keys(10), BlockSize: 16} // 160 prompt tokens
	tests := []struct {
		name   string
		scorer Scorer
		req    *Request
		give   []ep
		want   []float64
	}{
		{"queue depth min-max", QueueDepth(), req, []ep{{waiting: 0}, {waiting: 5}, {waiting: 10}}, []float64{1, 0.5, 0}},
		{"queue depth all equal", QueueDepth(), req, []ep{{waiting: 3}, {waiting: 3}}, []float64{1, 1}},
		{"running requests", RunningRequests(), req, []ep{{running: 4}, {running: 0}, {running: 1}}, []float64{0, 1, 0.75}},
		{"in-flight", InFlight(), req, []ep{{inflight: 2}, {inflight: 0}, {inflight: 4}}, []float64{0.5, 1, 0}},
		{"kv utilization", KVCacheUtilization(), req, []ep{{kv: 0}, {kv: 0.25}, {kv: 1}, {kv: 1.3}}, []float64{1, 0.75, 0, 0}},
		{
			"token load: in-flight plus own uncached", TokenLoad(1000), req,
			[]ep{{}, {inflight: 1, tokens: 500}, {prefix: gpu(10)}, {inflight: 1, tokens: 2000}},
			[]float64{1 - 160.0/1000, 1 - 660.0/1000, 1, 0},
		},
		{"token load default capacity", TokenLoad(0), req, []ep{{inflight: 1, tokens: DefaultTokenCapacity / 2}}, []float64{1 - (DefaultTokenCapacity/2+160.0)/DefaultTokenCapacity}},
		{
			"prefix tier weighted", prefix, req,
			[]ep{{}, {prefix: gpu(5)}, {prefix: gpu(10)}, {prefix: PrefixMatch{Blocks: 10, GPU: 4, CPU: 4, Storage: 2}}},
			[]float64{0, 0.5, 1, (4 + 0.8*4 + 0.5*2) / 10},
		},
		{"prefix custom tiers", prefixCustom, req, []ep{{prefix: PrefixMatch{Blocks: 4, CPU: 2, Storage: 2}}}, []float64{(0.5*2 + 0.25*2) / 10}},
		{"prefix without keys", prefix, &Request{PromptTokens: 100}, []ep{{prefix: gpu(3)}}, []float64{0}},
		{
			"lora affinity", LoRAAffinity(), &Request{PromptTokens: 1, LoRA: "a"},
			[]ep{
				{lora: &pool.Metrics{MaxLoRA: 2, RunningLoRAs: []string{"a"}}},
				{lora: &pool.Metrics{MaxLoRA: 2, RunningLoRAs: []string{"b"}}},
				{lora: &pool.Metrics{MaxLoRA: 2, RunningLoRAs: []string{"b"}, WaitingLoRAs: []string{"a"}}},
				{lora: &pool.Metrics{MaxLoRA: 2, RunningLoRAs: []string{"b", "c"}}},
				{},
			},
			[]float64{1, 0.8, 0.6, 0, 0},
		},
		{"lora none requested", LoRAAffinity(), &Request{PromptTokens: 1}, []ep{{}, {lora: &pool.Metrics{MaxLoRA: 1}}}, []float64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cands := fleet(t, tt.give...)
			out := make([]float64, len(cands))
			require.NoError(t, tt.scorer.Score(context.Background(), tt.req, cands, out))
			require.Len(t, out, len(tt.want))
			for i := range tt.want {
				assert.InDelta(t, tt.want[i], out[i], 1e-9, "candidate %d", i)
			}
		})
	}
}

func TestPrefixRejectsBadTierWeights(t *testing.T) {
	for _, w := range []TierWeights{{GPU: 2}, {GPU: 1, CPU: -0.1}} {
		_, err := Prefix(w)
		assert.Error(t, err, "%+v", w)
	}
}

func TestNoHitLRU(t *testing.T) {
	s := NoHitLRU(0)
	_, cands := fleet(t, ep{id: "a"}, ep{id: "b"}, ep{id: "c"})
	req := &Request{BlockKeys: keys(4)}
	score := func(cs []Candidate) []float64 {
		out := make([]float64, len(cs))
		require.NoError(t, s.Score(context.Background(), req, cs, out))
		return out
	}
	// Nothing used yet: candidate order breaks ties.
	assert.Equal(t, []float64{1, 0.5, 0}, score(cands))
	// A cold pick of "a" makes it the most recent.
	s.Observe(req, &Result{Endpoint: cands[0].Endpoint, cands: cands})
	assert.Equal(t, []float64{0, 1, 0.5}, score(cands))
	s.Observe(req, &Result{Endpoint: cands[1].Endpoint, cands: cands})
	assert.Equal(t, []float64{0.5, 0, 1}, score(cands))
	// A warm request scores 0.5 everywhere and does not change the order.
	warm := append([]Candidate(nil), cands...)
	warm[2].Prefix = gpu(1)
	assert.Equal(t, []float64{0.5, 0.5, 0.5}, score(warm))
	s.Observe(req, &Result{Endpoint: warm[2].Endpoint, cands: warm})
	assert.Equal(t, []float64{0.5, 0, 1}, score(cands))
	// One candidate.
	assert.Equal(t, []float64{1}, score(cands[:1]))
}

func TestSessionAffinity(t *testing.T) {
	now := t0
	s := SessionAffinity(time.Minute, 2, func() time.Time { return now })
	_, cands := fleet(t, ep{id: "a"}, ep{id: "b"})
	score := func(session string) []float64 {
		out := make([]float64, len(cands))
		require.NoError(t, s.Score(context.Background(), &Request{Session: session}, cands, out))
		return out
	}
	assert.Equal(t, []float64{0, 0}, score("s1"), "unbound")
	s.Observe(&Request{Session: "s1"}, &Result{Endpoint: cands[1].Endpoint})
	assert.Equal(t, []float64{0, 1}, score("s1"))
	assert.Equal(t, []float64{0, 0}, score(""), "no session")
	now = now.Add(59 * time.Second)
	assert.Equal(t, []float64{0, 1}, score("s1"), "still live")
	now = now.Add(time.Second)
	assert.Equal(t, []float64{0, 0}, score("s1"), "expired")
	// Bounded: the least recently bound session goes first.
	s.Observe(&Request{Session: "x"}, &Result{Endpoint: cands[0].Endpoint})
	s.Observe(&Request{Session: "y"}, &Result{Endpoint: cands[0].Endpoint})
	s.Observe(&Request{Session: "x"}, &Result{Endpoint: cands[1].Endpoint})
	s.Observe(&Request{Session: "z"}, &Result{Endpoint: cands[0].Endpoint})
	assert.Equal(t, 2, s.Len())
	_, ok := s.Lookup("y")
	assert.False(t, ok)
	id, ok := s.Lookup("x")
	assert.True(t, ok)
	assert.Equal(t, "b", id)
}
