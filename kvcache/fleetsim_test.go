package kvcache_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/prefix"
)

// TestFleetsimEventsApplyCleanly feeds the virtual-time vLLM stand-in's KV
// events (shared-prefix workload, a KV cache small enough to evict, so that
// one block hash is at times held in several physical copies) straight into
// an Index, as a precise router does, and checks that every BlockStored
// finds its parent and that the Index ends up holding exactly what each
// replica's engine holds.
func TestFleetsimEventsApplyCleanly(t *testing.T) {
	cfg := vllmsim.Qwen3_32B_H100x2()
	cfg.NumBlocks = 1500 // KV-tight: evictions, and duplicate copies freed one at a time
	hasher, err := prefix.NewHasher(cfg.Model, prefix.WithBlockSize(cfg.BlockSize))
	require.NoError(t, err)
	x, err := kvcache.New(hasher)
	require.NoError(t, err)

	var stored, removed, unknownParent, otherErr int
	var firstErr error
	onKV := func(r *fleetsim.Replica, _ time.Duration, ev vllmsim.KVEvent) {
		id := "r" + strconv.Itoa(r.ID())
		var err error
		switch ev.Kind {
		case vllmsim.BlockStored:
			stored++
			err = x.Stored(id, kvcache.TierGPU, &kvcache.BlockStored{
				EngineHashes: ev.Keys, Parent: ev.Parent, HasParent: ev.HasParent,
				Tokens: ev.Tokens, BlockSize: ev.BlockSize,
			})
			if errors.Is(err, kvcache.ErrUnknownParent) {
				unknownParent++
				return
			}
		case vllmsim.BlockRemoved:
			removed++
			err = x.Removed(id, kvcache.TierGPU, ev.Keys)
		case vllmsim.AllBlocksCleared:
			err = x.Clear(id)
		}
		if err != nil {
			otherErr++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	var replicas []*fleetsim.Replica
	router := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
		replicas = st.Replicas
		return st.Replicas[req.Group%len(st.Replicas)]
	})
	w := fleetsim.SharedPrefix{
		Groups: 20, PromptsPerGroup: 4, SystemPromptLen: 3000, QuestionLen: 500, OutputLen: 100,
		Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: 4}}},
		NumRequests: 250, Seed: 3,
	}.Workload()
	sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 3, OnKVEvent: onKV}, w, router)
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 250, rep.Finished)
	require.Positive(t, removed, "the small cache must evict")
	t.Logf("stored events %d, removed events %d, unknown parent %d", stored, removed, unknownParent)
	assert.Zero(t, unknownParent, "BlockStored events rejected with ErrUnknownParent")
	assert.Zero(t, otherErr, "first: %v", firstErr)
	for _, r := range replicas {
		assert.Equal(t, r.NumCachedBlocks(), x.Blocks("r"+strconv.Itoa(r.ID())), "replica %d", r.ID())
	}
}
