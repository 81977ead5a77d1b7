package scheduler

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/routekit/routekit/pool"
)

func TestBuiltinFilters(t *testing.T) {
	sel, err := labels.Parse("zone=a,tier!=spot")
	require.NoError(t, err)
	aff, err := PrefixAffinity(Affinity{PeakPrefillTokensPerSec: 100, MaxTTFTPenaltySeconds: 10})
	require.NoError(t, err)
	affSat, err := PrefixAffinity(Affinity{Saturation: &Saturation{}})
	require.NoError(t, err)
	req := &Request{BlockKeys: keys(10), BlockSize: 100, Model: "m"} // 1,000 prompt tokens
	tests := []struct {
		name   string
		filter Filter
		req    *Request
		give   []ep
		want   []string
	}{
		{"labels", Labels(sel), req, []ep{
			{id: "a", labels: map[string]string{"zone": "a"}},
			{id: "b", labels: map[string]string{"zone": "b"}},
			{id: "c", labels: map[string]string{"zone": "a", "tier": "spot"}},
			{id: "d", labels: map[string]string{"zone": "a", "tier": "gold"}},
		}, []string{"a", "d"}},
		{"roles decode", Roles(pool.RoleDecode, pool.RoleBoth), req, []ep{
			{id: "p", role: pool.RolePrefill}, {id: "d", role: pool.RoleDecode}, {id: "b"},
		}, []string{"d", "b"}},
		{"roles prefill", Roles(pool.RolePrefill), req, []ep{
			{id: "p", role: pool.RolePrefill}, {id: "d", role: pool.RoleDecode}, {id: "b"},
		}, []string{"p"}},
		{"model", Model(), req, []ep{
			{id: "a", models: []string{"m"}}, {id: "b", models: []string{"other"}}, {id: "c"},
		}, []string{"a", "c"}},
		{"model unset keeps all", Model(), &Request{PromptTokens: 1}, []ep{
			{id: "a", models: []string{"m"}}, {id: "b", models: []string{"other"}},
		}, []string{"a", "b"}},
		{"affinity keeps holders", aff, req, []ep{
			{id: "a"}, {id: "b", prefix: gpu(9)}, {id: "c", prefix: gpu(7)}, {id: "d", prefix: gpu(8)},
		}, []string{"b", "d"}},
		{"affinity: no holder keeps all", aff, req, []ep{
			{id: "a"}, {id: "b", prefix: gpu(5)},
		}, []string{"a", "b"}},
		{"affinity: CPU tier counts less", aff, req, []ep{
			{id: "a"}, {id: "b", prefix: PrefixMatch{Blocks: 9, GPU: 5, CPU: 4}}, {id: "c", prefix: PrefixMatch{Blocks: 10, CPU: 10}},
		}, []string{"b", "c"}}, // 5+3.2=8.2 ≥ 8; 8 ≥ 8
		{"affinity: holder within penalty", aff, req, []ep{
			// holder: 900 in flight + 100 own = 10 s; other: 1000 own = 10 s → gap 0
			{id: "a"}, {id: "b", prefix: gpu(9), inflight: 1, tokens: 900},
		}, []string{"b"}},
		{"affinity: saturated holder released", aff, req, []ep{
			// holder: 1950+100 = 20.5 s; other: 10 s → gap 10.5 s > 10 s
			{id: "a"}, {id: "b", prefix: gpu(9), inflight: 1, tokens: 1950},
		}, []string{"a", "b"}},
		{"affinity+saturation: saturated holder is not sticky", affSat, req, []ep{
			{id: "a"}, {id: "b", prefix: gpu(9), waiting: 5}, {id: "c", prefix: gpu(9), kv: 0.5},
		}, []string{"c"}},
		{"affinity+saturation: all holders saturated keeps all", affSat, req, []ep{
			{id: "a"}, {id: "b", prefix: gpu(9), kv: 0.9},
		}, []string{"a", "b"}},
		{"affinity: no keys keeps all", aff, &Request{PromptTokens: 5}, []ep{{id: "a"}, {id: "b", prefix: gpu(9)}}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cands := fleet(t, tt.give...)
			got := tt.filter.Filter(context.Background(), tt.req, cands)
			assert.Equal(t, tt.want, ids(got))
		})
	}
}

func TestPrefixAffinityExploration(t *testing.T) {
	aff, err := PrefixAffinity(Affinity{Exploration: 0.5, Rand: rand.NewPCG(1, 2)})
	require.NoError(t, err)
	req := &Request{BlockKeys: keys(10)}
	all := 0
	for range 1000 {
		_, cands := fleet(t, ep{id: "a"}, ep{id: "b", prefix: gpu(10)})
		if len(aff.Filter(context.Background(), req, cands)) == 2 {
			all++
		}
	}
	assert.InDelta(t, 500, all, 60)
}

func TestPrefixAffinityRejectsBadConfig(t *testing.T) {
	for _, a := range []Affinity{{Threshold: 1.5}, {Threshold: -1}, {PeakPrefillTokensPerSec: -1}, {MaxTTFTPenaltySeconds: -3}, {Exploration: 2}, {Tiers: TierWeights{GPU: 3}}, {Saturation: &Saturation{QueueThreshold: -1}}} {
		_, err := PrefixAffinity(a)
		assert.Error(t, err, "%+v", a)
	}
}
