package vllmsim

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// TestKVEventsMatchGoldenBytes builds the golden batch the way the server
// does (sha256_cbor hashes of the golden tokens, the server's field
// choices: medium "GPU", group_idx 0, "full_attention", extra_keys of
// Nones) and checks the encoded payload byte for byte against
// testdata/golden.json (a copy of ../shared/reference/vllm-golden) for
// every schema.
func TestKVEventsMatchGoldenBytes(t *testing.T) {
	raw, err := os.ReadFile("testdata/golden.json")
	require.NoError(t, err)
	var g struct {
		BlockHashes struct {
			Tokens []uint32 `json:"tokens"`
		} `json:"block_hashes"`
		KVEvents struct {
			TS       float64 `json:"ts"`
			Profiles map[string]struct {
				PayloadHex string `json:"payload_hex"`
			} `json:"profiles"`
		} `json:"kv_events"`
	}
	require.NoError(t, json.Unmarshal(raw, &g))
	ts := g.KVEvents.TS
	srv, err := NewServer(Fast(), WithClock(func() time.Time {
		return time.Unix(int64(ts), int64((ts-float64(int64(ts)))*1e9))
	}))
	require.NoError(t, err)
	tokens := g.BlockHashes.Tokens
	keys := srv.BlockKeys(tokens)
	require.Equal(t, []uint64{15134234118671934477, 4710519393156620912, 11371570995045912080}, keys)

	batch := srv.kvBatch([]KVEvent{
		{Kind: BlockStored, Keys: keys[1:3], Parent: keys[0], HasParent: true, Tokens: tokens[16:48], BlockSize: 16},
		{Kind: BlockRemoved, Keys: keys[0:1]},
		{Kind: AllBlocksCleared},
	})
	assert.InDelta(t, ts, batch.TS, 0)
	batch.TS = ts                                    // exact float, independent of clock rounding
	batch.DataParallelRank = kvevents.Some[int64](0) // the publisher fills it in
	for name, schema := range map[string]kvevents.Schema{
		"map_current/int": kvevents.MapCurrent, "array_last/int": kvevents.ArrayLast,
		"array_medium/int": kvevents.ArrayMedium, "array_v0_9_0/int": kvevents.ArrayV090,
	} {
		want, ok := g.KVEvents.Profiles[name]
		require.True(t, ok, name)
		got, err := kvevents.AppendBatch(nil, batch, schema)
		require.NoError(t, err, name)
		assert.Equal(t, want.PayloadHex, hex.EncodeToString(got), name)
	}
}
