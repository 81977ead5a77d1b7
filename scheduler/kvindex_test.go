package scheduler

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache"
)

func TestKVIndexTiers(t *testing.T) {
	idx, err := kvcache.New(nil)
	require.NoError(t, err)
	k := keys(10)
	require.NoError(t, idx.Add("a", kvcache.TierGPU, k[:6]))
	require.NoError(t, idx.Add("b", kvcache.TierGPU, k[:2]))
	require.NoError(t, idx.Add("b", kvcache.TierCPU, k[2:8]))
	require.NoError(t, idx.Add("c", kvcache.TierDisk, k[:3]))
	require.NoError(t, idx.Learn("d", k[:4]))
	_, cands := fleet(t, ep{id: "a"}, ep{id: "b"}, ep{id: "c"}, ep{id: "d"}, ep{id: "e"})
	KVIndex(idx).Match(&Request{BlockKeys: k}, cands)
	want := []PrefixMatch{
		{Blocks: 6, GPU: 6},
		{Blocks: 8, GPU: 2, CPU: 6},
		{Blocks: 3, Storage: 3},
		{Blocks: 4, GPU: 4},
		{},
	}
	for i := range want {
		assert.Equal(t, want[i], cands[i].Prefix, cands[i].ID)
	}
}

func TestDefaultWithKVIndexRoutesToHolder(t *testing.T) {
	idx, err := kvcache.New(nil)
	require.NoError(t, err)
	k := keys(64)
	require.NoError(t, idx.Add("e3", kvcache.TierGPU, k))
	eps, _ := fleet(t, ep{}, ep{}, ep{}, ep{}, ep{})
	s, err := Default(KVIndex(idx))
	require.NoError(t, err)
	d, err := s.Schedule(context.Background(), &Request{BlockKeys: k}, eps)
	require.NoError(t, err)
	assert.Equal(t, "e3", d.Endpoint.ID)
	assert.Zero(t, d.UncachedTokens)
	// A different prompt is cold: it goes elsewhere (all equal load: any).
	d, err = s.Schedule(context.Background(), &Request{BlockKeys: []uint64{999, 998}}, eps)
	require.NoError(t, err)
	assert.Equal(t, 32, d.UncachedTokens)
}

func TestScheduleWithKVIndexDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops scratch at random under -race")
	}
	eps, idx, req := benchKV(t, 100, 8192)
	s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(KVIndex(idx)))
	require.NoError(t, err)
	var d Decision
	require.NoError(t, s.ScheduleInto(context.Background(), req, eps, &d))
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.ScheduleInto(context.Background(), req, eps, &d); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
