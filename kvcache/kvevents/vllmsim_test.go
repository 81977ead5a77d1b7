package kvevents_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix"
)

// TestEndToEndVLLMStandIn: two vLLM stand-ins publish their real KV events
// (map and array schemas); a request served by one of them shows up in the
// index as that endpoint's GPU blocks, and only there.
func TestEndToEndVLLMStandIn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet, err := vllmsim.StartFleet(ctx,
		vllmsim.ReplicaSpec{KVEvents: true},
		vllmsim.ReplicaSpec{KVEvents: true, KVSchema: kvevents.ArrayLast})
	require.NoError(t, err)
	defer fleet.Close()
	cfg := fleet.Replicas[0].Config()

	hasher, err := prefix.NewHasher(cfg.Model, prefix.WithBlockSize(cfg.BlockSize))
	require.NoError(t, err)
	idx, err := kvcache.New(hasher)
	require.NoError(t, err)
	sub := newSubscriber(t, kvevents.NewKVCacheIndex(idx))
	var ids []string
	for _, r := range fleet.Replicas {
		ids = append(ids, r.Addr)
		require.NoError(t, sub.Add(kvevents.Source{ID: r.Addr, Endpoint: r.KVEndpoint, ReplayEndpoint: r.KVReplayEndpoint}))
	}
	runSubscriber(t, sub)
	// Both sockets are connected once their proactive replays were asked.
	waitFor(t, 10*time.Second, "connections", func() bool { return sub.Stats().Replays >= 2 })

	complete := func(url string, prompt []uint32) {
		body, _ := json.Marshal(map[string]any{"model": cfg.Model, "prompt": prompt, "max_tokens": 1})
		resp, err := http.Post(url+"/v1/completions", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	for i, r := range fleet.Replicas {
		prompt := make([]uint32, 8*cfg.BlockSize+3)
		for j := range prompt {
			prompt[j] = uint32(1000*(i+1) + j)
		}
		complete(r.URL, prompt)

		keys := hasher.AppendKeys(nil, prompt, prefix.Extra{})
		m := make([]kvcache.Match, len(ids))
		pings := 0
		last := time.Now()
		waitFor(t, 10*time.Second, "the prompt's blocks in the index", func() bool {
			_, err := idx.Lookup(keys, ids, m)
			require.NoError(t, err)
			if m[i].Blocks[kvcache.TierGPU] == 8 {
				return true
			}
			// Events published before the subscription reached the engine
			// are lost live; the next ones reveal the gap and replay fills it.
			if time.Since(last) > 300*time.Millisecond {
				pings++
				complete(r.URL, []uint32{uint32(900000 + 100*i + pings), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
				last = time.Now()
			}
			return false
		})
		assert.Zero(t, m[1-i].Total(), "the other replica holds none of them")
	}
	assert.Zero(t, sub.Stats().DecodeErrors)
}
