package kvevents_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// goldenFile mirrors testdata/golden.json, a copy of
// ../shared/reference/vllm-golden/golden.json.
type goldenFile struct {
	BlockHashes struct {
		BlockSize int      `json:"block_size"`
		Tokens    []uint32 `json:"tokens"`
		Algos     map[string]struct {
			Cases map[string]struct {
				HashesHex []string `json:"hashes_hex"`
				EventInts []uint64 `json:"event_int_hashes"`
			} `json:"cases"`
		} `json:"algos"`
	} `json:"block_hashes"`
	KVEvents struct {
		TS       float64 `json:"ts"`
		Topic    string  `json:"topic"`
		Profiles map[string]struct {
			PayloadHex string   `json:"payload_hex"`
			EventsHex  []string `json:"events_hex"`
			FramesHex  []string `json:"zmq_frames_hex"`
		} `json:"profiles"`
		MinimalHex string `json:"map_current_minimal_blockstored_hex"`
	} `json:"kv_events"`
}

func loadGolden(t testing.TB) goldenFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/golden.json")
	require.NoError(t, err)
	var g goldenFile
	require.NoError(t, json.Unmarshal(raw, &g))
	return g
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

var profileSchemas = map[string]kvevents.Schema{
	"array_v0_9_0": kvevents.ArrayV090,
	"array_medium": kvevents.ArrayMedium,
	"array_last":   kvevents.ArrayLast,
	"map_current":  kvevents.MapCurrent,
}

// goldenBatch rebuilds the generator's batch: BlockStored(blocks 1, 2;
// parent block 0) + BlockRemoved(block 0) + AllBlocksCleared.
func goldenBatch(t testing.TB, g goldenFile, schema kvevents.Schema, bytesMode bool) kvevents.Batch {
	c := g.BlockHashes.Algos["sha256_cbor"].Cases["none"]
	var h [3]kvevents.Hash
	for i := range h {
		if bytesMode {
			var err error
			h[i], err = kvevents.HashBytes(unhex(t, c.HashesHex[i]))
			require.NoError(t, err)
		} else {
			h[i] = kvevents.HashUint64(c.EventInts[i])
		}
	}
	bs := g.BlockHashes.BlockSize
	stored := kvevents.Event{
		Type:            kvevents.BlockStored,
		BlockHashes:     []kvevents.Hash{h[1], h[2]},
		ParentBlockHash: kvevents.Some(h[0]),
		TokenIDs:        g.BlockHashes.Tokens[bs : 3*bs],
		BlockSize:       bs,
	}
	removed := kvevents.Event{Type: kvevents.BlockRemoved, BlockHashes: []kvevents.Hash{h[0]}}
	b := kvevents.Batch{TS: g.KVEvents.TS}
	if schema != kvevents.ArrayV090 {
		b.DataParallelRank = kvevents.Some(int64(0))
		stored.Medium = kvevents.Some("GPU")
		removed.Medium = kvevents.Some("GPU")
	}
	if schema >= kvevents.ArrayLast {
		stored.ExtraKeys = []byte{0x92, 0xc0, 0xc0} // [None, None]
		stored.GroupIdx = kvevents.Some(int64(0))
		stored.KVCacheSpecKind = kvevents.Some("full_attention")
		removed.GroupIdx = kvevents.Some(int64(0))
	}
	b.Events = []kvevents.Event{stored, removed, {Type: kvevents.AllBlocksCleared}}
	return b
}

func TestGoldenProfiles(t *testing.T) {
	g := loadGolden(t)
	require.Len(t, g.KVEvents.Profiles, 7)
	for name, p := range g.KVEvents.Profiles {
		t.Run(name, func(t *testing.T) {
			profile, mode, _ := strings.Cut(name, "/")
			schema, ok := profileSchemas[profile]
			require.True(t, ok, profile)
			want := goldenBatch(t, g, schema, mode == "bytes")
			payload := unhex(t, p.PayloadHex)

			var got kvevents.Batch
			require.NoError(t, kvevents.Decode(payload, &got))
			assert.Equal(t, want, got)

			enc, err := kvevents.AppendBatch(nil, &want, schema)
			require.NoError(t, err)
			assert.Equal(t, p.PayloadHex, hex.EncodeToString(enc), "batch bytes")
			for i := range want.Events {
				ev, err := kvevents.AppendEvent(nil, &want.Events[i], schema)
				require.NoError(t, err)
				assert.Equal(t, p.EventsHex[i], hex.EncodeToString(ev), "event %d bytes", i)
			}
			// Every encoder path round-trips through the decoder.
			for s := kvevents.ArrayV090; s <= kvevents.MapNewest; s++ {
				enc, err := kvevents.AppendBatch(nil, &want, s)
				require.NoError(t, err)
				var back kvevents.Batch
				require.NoError(t, kvevents.Decode(enc, &back), s)
				again, err := kvevents.AppendBatch(nil, &back, s)
				require.NoError(t, err)
				assert.Equal(t, enc, again, "%v re-encodes identically", s)
			}
		})
	}
}

func TestGoldenMinimalMapBlockStored(t *testing.T) {
	g := loadGolden(t)
	c := g.BlockHashes.Algos["sha256_cbor"].Cases["none"]
	e := kvevents.Event{
		Type:        kvevents.BlockStored,
		BlockHashes: []kvevents.Hash{kvevents.HashUint64(c.EventInts[0])},
		TokenIDs:    g.BlockHashes.Tokens[:16],
		BlockSize:   16,
		Medium:      kvevents.Some("GPU"),
	}
	got, err := kvevents.AppendEvent(nil, &e, kvevents.MapCurrent)
	require.NoError(t, err)
	assert.Equal(t, g.KVEvents.MinimalHex, hex.EncodeToString(got))

	// Decoded inside a batch, it yields the same event.
	payload := append([]byte{0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91}, got...)
	payload = append(payload, 0x07)
	var b kvevents.Batch
	require.NoError(t, kvevents.Decode(payload, &b))
	require.Len(t, b.Events, 1)
	assert.Equal(t, e, b.Events[0])
	assert.Equal(t, kvevents.Some(int64(7)), b.DataParallelRank)
}
