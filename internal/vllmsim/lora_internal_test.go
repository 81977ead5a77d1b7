package vllmsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// TestKVEventsLoRAFields runs requests with and without an adapter and a
// salt through the server's engine, encodes their BlockStored events as the
// server publishes them, and decodes them back: lora_id is the adapter's
// server-local id, lora_name its name, and extra_keys lists, per block, the
// adapter name then (first block only) the salt, as vLLM does.
func TestKVEventsLoRAFields(t *testing.T) {
	cfg := Fast()
	cfg.LoRA = &LoRAConfig{Adapters: []LoRA{{Name: "a"}, {Name: "bee"}}, MaxLoRAs: 2}
	tests := []struct {
		name, lora, salt string
		wantID           kvevents.Null[int64]
		wantName         kvevents.Null[string]
		wantExtra        [][]any
	}{
		{name: "base", wantExtra: [][]any{nil, nil, nil}},
		{name: "salt", salt: "s", wantExtra: [][]any{{"s"}, nil, nil}},
		{name: "a", lora: "a", wantID: kvevents.Some[int64](1), wantName: kvevents.Some("a"),
			wantExtra: [][]any{{"a"}, {"a"}, {"a"}}},
		{name: "bee with salt", lora: "bee", salt: "s", wantID: kvevents.Some[int64](2), wantName: kvevents.Some("bee"),
			wantExtra: [][]any{{"bee", "s"}, {"bee"}, {"bee"}}},
	}
	for _, tt := range tests {
		for _, schema := range []kvevents.Schema{kvevents.MapCurrent, kvevents.ArrayLast} {
			t.Run(tt.name+"/"+schema.String(), func(t *testing.T) {
				srv, err := NewServer(cfg)
				require.NoError(t, err)
				prompt := make([]uint32, 3*16+1)
				for i := range prompt {
					prompt[i] = uint32(i + 1)
				}
				_, err = srv.cores[0].eng.Add(&Request{ID: "r", Prompt: prompt, MaxTokens: 1, LoRA: tt.lora, CacheSalt: tt.salt}, 0)
				require.NoError(t, err)
				_, ok := srv.cores[0].eng.Schedule(0)
				require.True(t, ok)
				out := srv.cores[0].eng.Complete(time.Millisecond)
				require.Len(t, out.Events, 1)

				payload, err := kvevents.AppendBatch(nil, srv.kvBatch(out.Events), schema)
				require.NoError(t, err)
				var b kvevents.Batch
				require.NoError(t, kvevents.Decode(payload, &b))
				require.Len(t, b.Events, 1)
				ev := b.Events[0]
				assert.Equal(t, kvevents.BlockStored, ev.Type)
				assert.Equal(t, srv.cores[0].eng.BlockKeys(nil, prompt, tt.lora, tt.salt), hashesOf(ev.BlockHashes))
				assert.Equal(t, tt.wantID, ev.LoRAID)
				assert.Equal(t, tt.wantName, ev.LoRAName)
				extra, err := kvevents.DecodeExtraKeys(ev.ExtraKeys)
				require.NoError(t, err)
				assert.Equal(t, tt.wantExtra, extra)
			})
		}
	}
}

func hashesOf(hs []kvevents.Hash) []uint64 {
	out := make([]uint64, len(hs))
	for i, h := range hs {
		out[i] = h.Uint64()
	}
	return out
}

func TestExtraKeysLongStrings(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{{"fixstr", 31}, {"str8", 32}, {"str8 max", 255}, {"str16", 256}, {"str32", 70000}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lora := string(make([]byte, tt.n))
			raw := extraKeys(17, lora, "salt")
			got, err := kvevents.DecodeExtraKeys(raw)
			require.NoError(t, err)
			require.Len(t, got, 17)
			assert.Equal(t, []any{lora, "salt"}, got[0])
			assert.Equal(t, []any{lora}, got[16])
		})
	}
}
