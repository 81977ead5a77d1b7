package kvevents_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix"
)

// hx builds bytes from hex with spaces for readability.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			clean = append(clean, s[i])
		}
	}
	return unhex(t, string(clean))
}

const ts = "cb 41da556e40200000"

func TestDecodeForms(t *testing.T) {
	hash := func(v uint64) kvevents.Hash { return kvevents.HashUint64(v) }
	tests := []struct {
		name string
		give string
		want kvevents.Batch
	}{
		{
			name: "map-shaped batch, keys in any order, unknown key",
			give: "84 a6 6576656e7473 91 91 b0 416c6c426c6f636b73436c6561726564 a2 7473 " + ts +
				" b2 646174615f706172616c6c656c5f72616e6b 02 a5 6578747261 c0",
			want: kvevents.Batch{TS: 1767225600.5, DataParallelRank: kvevents.Some(int64(2)),
				Events: []kvevents.Event{{Type: kvevents.AllBlocksCleared}}},
		},
		{
			name: "4-element batch, null rank",
			give: "94 " + ts + " 90 c0 c3",
			want: kvevents.Batch{TS: 1767225600.5},
		},
		{
			name: "integer ts, unknown and untagged events skipped",
			give: "92 05 93 92 a6 467574757265 01 92 01 02 91 ac 426c6f636b52656d6f766564",
			want: kvevents.Batch{TS: 5, Skipped: 2, Events: []kvevents.Event{{Type: kvevents.BlockRemoved}}},
		},
		{
			name: "hash forms: int64 negative, int64 positive, uint32, decimal and hex strings, bin16",
			give: "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 96 d3 fffffffffffffffe d3 0000000000000005 ce ffffffff" +
				" a2 3432 a8 6162636430303031 c4 10 00112233445566778899aabbccddeeff",
			want: kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.BlockRemoved, BlockHashes: []kvevents.Hash{
				kvevents.HashInt64(-2), hash(5), hash(0xffffffff), hash(42),
				mustHash(t, "abcd0001"), mustHash(t, "00112233445566778899aabbccddeeff"),
			}}}},
		},
		{
			name: "decimal string hashes up to the largest uint64",
			give: "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 92 b4 3138343436373434303733373039353531363135" +
				" b4 3138343436373434303733373039353531363130",
			want: kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.BlockRemoved, BlockHashes: []kvevents.Hash{
				hash(18446744073709551615), hash(18446744073709551610),
			}}}},
		},
		{
			name: "map event: type key last, unknown keys, newest fields",
			give: "92 " + ts + " 91 86 a6 6d656469756d a3 435055 a8 6c6f63616c697479 a6 52454d4f5445 a3 6e6577 92 01 02" +
				" a9 6f776e657273686970 a2 7431 ac 626c6f636b5f686173686573 91 07 a4 74797065 ac 426c6f636b52656d6f766564",
			want: kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.BlockRemoved,
				BlockHashes: []kvevents.Hash{hash(7)}, Medium: kvevents.Some("CPU"),
				Locality: kvevents.Some("REMOTE"), Ownership: kvevents.Some("t1")}}},
		},
		{
			name: "array event with surplus trailing fields",
			give: "92 " + ts + " 91 97 ac 426c6f636b52656d6f766564 91 07 c0 c0 c0 c0 a3 787878",
			want: kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.BlockRemoved,
				BlockHashes: []kvevents.Hash{hash(7)}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got kvevents.Batch
			require.NoError(t, kvevents.Decode(hx(t, tt.give), &got))
			if len(got.Events) == 0 {
				got.Events = nil
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func mustHash(t testing.TB, s string) kvevents.Hash {
	h, err := kvevents.HashBytes(unhex(t, s))
	require.NoError(t, err)
	return h
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, give string
	}{
		{"empty", ""},
		{"not a container", "c3"},
		{"1-element batch", "91 " + ts},
		{"trailing bytes", "92 " + ts + " 90 00"},
		{"invalid type byte", "92 " + ts + " 91 c1"},
		{"hostile array32", "92 " + ts + " dd ffffffff"},
		{"hostile map32", "df ffffffff"},
		{"hostile str32 tag", "92 " + ts + " 91 91 db ffffffff"},
		// 32-bit lengths above math.MaxInt32 (negative as a 32-bit int).
		{"hostile bin32 in a skipped field", "92 " + ts + " 91 92 b0 416c6c426c6f636b73436c6561726564 c6 ffffffff 00"},
		{"hostile ext32 in a skipped field", "92 " + ts + " 91 92 b0 416c6c426c6f636b73436c6561726564 c9 80000000 01 00"},
		{"hostile str32 hash", "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 91 db 80000000 00"},
		{"hostile bin32 hash", "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 91 c6 80000000 00"},
		{"map16 with more pairs than bytes", "92 " + ts + " 91 de 0003 01 02 03"},
		{"hostile token array", "92 " + ts + " 91 93 ab 426c6f636b53746f726564 90 dd 7fffffff"},
		{"token out of range", "92 " + ts + " 91 94 ab 426c6f636b53746f726564 90 c0 91 cf 0000000100000000"},
		{"negative token", "92 " + ts + " 91 94 ab 426c6f636b53746f726564 90 c0 91 ff"},
		{"wrong field type", "92 " + ts + " 91 93 ac 426c6f636b52656d6f766564 90 01"},
		{"bin hash too long", "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 91 c4 21" + " 00000000000000000000000000000000000000000000000000000000000000000000"},
		{"bad string hash", "92 " + ts + " 91 92 ac 426c6f636b52656d6f766564 91 a3 78797a"},
		{"map event with non-string key", "92 " + ts + " 91 81 01 02"},
		{"rank overflows int64", "93 " + ts + " 90 cf ffffffffffffffff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b kvevents.Batch
			assert.ErrorIs(t, kvevents.Decode(hx(t, tt.give), &b), kvevents.ErrMalformed)
		})
	}
}

// TestDecodeTruncated cuts every golden payload at every length: each cut
// is an error, never a panic.
func TestDecodeTruncated(t *testing.T) {
	g := loadGolden(t)
	var b kvevents.Batch
	for name, p := range g.KVEvents.Profiles {
		payload := unhex(t, p.PayloadHex)
		for n := range len(payload) {
			assert.ErrorIs(t, kvevents.Decode(payload[:n], &b), kvevents.ErrMalformed, "%s cut at %d", name, n)
		}
	}
}

// TestHostilePrefixAllocation: a 40-byte payload claiming 2^31 tokens must
// not make the decoder allocate for them.
func TestHostilePrefixAllocation(t *testing.T) {
	payload := hx(t, "92 "+ts+" 91 94 ab 426c6f636b53746f726564 90 c0 dd 7fffffff 01 02 03")
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var b kvevents.Batch
	for range 100 {
		require.Error(t, kvevents.Decode(payload, &b))
	}
	runtime.ReadMemStats(&ms1)
	assert.Less(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(1<<20))

	// The worst real amplification: 100,000 one-byte hashes become 100,000
	// 48-byte Hash values, within the documented 48× bound.
	big := hx(t, "92 "+ts+" 91 92 ac 426c6f636b52656d6f766564 dd 000186a0")
	for range 100000 {
		big = append(big, 0x01)
	}
	runtime.ReadMemStats(&ms0)
	var b2 kvevents.Batch
	require.NoError(t, kvevents.Decode(big, &b2))
	runtime.ReadMemStats(&ms1)
	assert.LessOrEqual(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(48*len(big)+1<<16))

	// Many minimal events: at most 24 bytes of Event per payload byte.
	many := hx(t, "92 "+ts+" dd 00002710")
	for range 10000 {
		many = append(many, hx(t, "91 ac 426c6f636b52656d6f766564")...)
	}
	runtime.ReadMemStats(&ms0)
	var b3 kvevents.Batch
	require.NoError(t, kvevents.Decode(many, &b3))
	runtime.ReadMemStats(&ms1)
	require.Len(t, b3.Events, 10000)
	assert.LessOrEqual(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(24*len(many)+1<<16))
}

// TestDecodeReuse: decoding into a used Batch leaves nothing stale, and a
// steady-state decode does not allocate.
func TestDecodeReuse(t *testing.T) {
	g := loadGolden(t)
	big := unhex(t, g.KVEvents.Profiles["map_current/bytes"].PayloadHex)
	small := hx(t, "92 "+ts+" 91 92 ac 426c6f636b52656d6f766564 91 07")
	var b kvevents.Batch
	require.NoError(t, kvevents.Decode(big, &b))
	require.NoError(t, kvevents.Decode(small, &b))
	want := kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.BlockRemoved,
		BlockHashes: []kvevents.Hash{kvevents.HashUint64(7)}}}}
	wantBytes, err := kvevents.AppendBatch(nil, &want, kvevents.MapNewest)
	require.NoError(t, err)
	gotBytes, err := kvevents.AppendBatch(nil, &b, kvevents.MapNewest)
	require.NoError(t, err)
	assert.Equal(t, wantBytes, gotBytes)

	require.NoError(t, kvevents.Decode(big, &b))
	allocs := testing.AllocsPerRun(50, func() {
		if err := kvevents.Decode(big, &b); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestHash(t *testing.T) {
	h := mustHash(t, "3f0ccc6914c9094b4b60ea75df313ca8f9d2fd7df773fc2cd20799bf0f09a40d")
	assert.Equal(t, uint64(15134234118671934477), h.Uint64(), "the event int of the digest")
	assert.True(t, h.IsBytes())
	assert.Equal(t, "3f0ccc6914c9094b4b60ea75df313ca8f9d2fd7df773fc2cd20799bf0f09a40d", h.String())
	assert.Len(t, h.Bytes(), 32)
	assert.Equal(t, "-2", kvevents.HashInt64(-2).String())
	assert.Equal(t, "18446744073709551614", kvevents.HashUint64(1<<64-2).String())
	assert.Nil(t, kvevents.HashUint64(1).Bytes())
	_, err := kvevents.HashBytes(nil)
	assert.Error(t, err)
	assert.Equal(t, "BlockStored", kvevents.BlockStored.String())
	assert.Equal(t, "EventType(9)", kvevents.EventType(9).String())
	assert.Equal(t, "map_newest", kvevents.MapNewest.String())
	_, err = kvevents.AppendBatch(nil, &kvevents.Batch{}, kvevents.Schema(0))
	assert.Error(t, err)
	_, err = kvevents.AppendEvent(nil, &kvevents.Event{}, kvevents.MapCurrent)
	assert.Error(t, err)
}

func TestDecodeExtraKeys(t *testing.T) {
	// [("my-lora", ("img", -12), "salt", b"\x01"), None]
	raw := hx(t, "92 94 a7 6d792d6c6f7261 92 a3 696d67 f4 a4 73616c74 c4 01 01 c0")
	got, err := kvevents.DecodeExtraKeys(raw)
	require.NoError(t, err)
	assert.Equal(t, [][]any{{"my-lora", []any{"img", int64(-12)}, "salt", []byte{1}}, nil}, got)
	none, err := kvevents.DecodeExtraKeys(nil)
	require.NoError(t, err)
	assert.Nil(t, none)
	_, err = kvevents.DecodeExtraKeys(hx(t, "91 01"))
	assert.ErrorIs(t, err, kvevents.ErrMalformed)
	_, err = kvevents.DecodeExtraKeys(hx(t, "91 91 01 02"))
	assert.ErrorIs(t, err, kvevents.ErrMalformed)
}

// TestKVCacheIndexAdapter checks what the adapter indexes and what it
// deliberately skips.
func TestKVCacheIndexAdapter(t *testing.T) {
	hasher, err := prefix.NewHasher("m", prefix.WithBlockSize(4))
	require.NoError(t, err)
	tokens := []uint32{1, 2, 3, 4, 5, 6, 7, 8}
	stored := func(mod func(e *kvevents.Event)) *kvevents.Event {
		e := &kvevents.Event{Type: kvevents.BlockStored, BlockHashes: []kvevents.Hash{kvevents.HashUint64(11), kvevents.HashUint64(12)},
			TokenIDs: tokens, BlockSize: 4, Medium: kvevents.Some("GPU")}
		if mod != nil {
			mod(e)
		}
		return e
	}
	lookup := func(idx *kvcache.Index, x prefix.Extra) kvcache.Match {
		m := make([]kvcache.Match, 1)
		_, err := idx.Lookup(hasher.AppendKeys(nil, tokens, x), []string{"a"}, m)
		require.NoError(t, err)
		return m[0]
	}
	tests := []struct {
		name    string
		event   *kvevents.Event
		skipped bool
		extra   prefix.Extra
		want    kvcache.Match
	}{
		{name: "plain", event: stored(nil), want: kvcache.Match{Blocks: [kvcache.NumTiers]int32{kvcache.TierGPU: 2}}},
		{name: "lora and salt from extra keys", event: stored(func(e *kvevents.Event) {
			e.LoRAName = kvevents.Some("my-lora")
			e.ExtraKeys = hx(t, "92 92 a7 6d792d6c6f7261 a4 73616c74 91 a7 6d792d6c6f7261")
		}), extra: prefix.Extra{LoRA: "my-lora", CacheSalt: "salt"}, want: kvcache.Match{Blocks: [kvcache.NumTiers]int32{kvcache.TierGPU: 2}}},
		{name: "unknown medium is a CPU tier", event: stored(func(e *kvevents.Event) { e.Medium = kvevents.Some("SOMECONNECTOR") }),
			want: kvcache.Match{Blocks: [kvcache.NumTiers]int32{kvcache.TierCPU: 2}}},
		{name: "sliding window group", skipped: true, event: stored(func(e *kvevents.Event) {
			e.KVCacheSpecKind = kvevents.Some("sliding_window")
		})},
		{name: "multimodal", skipped: true, event: stored(func(e *kvevents.Event) {
			e.ExtraKeys = hx(t, "92 91 92 a3 696d67 04 c0")
		})},
		{name: "multimodal, pre-0.19 bare identifier", skipped: true, event: stored(func(e *kvevents.Event) {
			e.ExtraKeys = append(append(hx(t, "92 91 d9 40"), []byte(strings.Repeat("ab", 32))...), 0xc0)
		})},
		{name: "lora id only", skipped: true, event: stored(func(e *kvevents.Event) { e.LoRAID = kvevents.Some(int64(1)) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := kvcache.New(hasher)
			require.NoError(t, err)
			a := kvevents.NewKVCacheIndex(idx)
			err = a.Apply("a", tt.event)
			if tt.skipped {
				assert.ErrorIs(t, err, kvevents.ErrNotIndexed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, lookup(idx, tt.extra))
			require.NoError(t, a.Apply("a", &kvevents.Event{Type: kvevents.BlockRemoved,
				BlockHashes: tt.event.BlockHashes[1:], Medium: tt.event.Medium}))
			assert.Equal(t, 1, lookup(idx, tt.extra).Total())
			require.NoError(t, a.Clear("a"))
			assert.Zero(t, lookup(idx, tt.extra).Total())
			require.NoError(t, a.Apply("a", tt.event))
			require.NoError(t, a.Drop("a"))
			assert.Zero(t, lookup(idx, tt.extra).Total())
		})
	}
	assert.Equal(t, kvcache.TierGPU, kvevents.MediumTier(kvevents.Null[string]{}))
	assert.Equal(t, kvcache.TierShared, kvevents.MediumTier(kvevents.Some("STORAGE")))
}

// TestKVCacheIndexHybridGroups: a hybrid model (say gpt-oss: full-attention
// and sliding-window layers) publishes each block's hash once per KV-cache
// group, with the group in group_idx. The sliding-window group's stores are
// not indexed, so its removals (which come early: the window slides) must not
// remove the full-attention group's block of the same hash.
func TestKVCacheIndexHybridGroups(t *testing.T) {
	hasher, err := prefix.NewHasher("m", prefix.WithBlockSize(4))
	require.NoError(t, err)
	tokens := []uint32{1, 2, 3, 4, 5, 6, 7, 8}
	hashes := []kvevents.Hash{kvevents.HashUint64(11), kvevents.HashUint64(12)}
	stored := func(group int64, kind string) *kvevents.Event {
		return &kvevents.Event{Type: kvevents.BlockStored, BlockHashes: hashes, TokenIDs: tokens, BlockSize: 4,
			Medium: kvevents.Some("GPU"), GroupIdx: kvevents.Some(group), KVCacheSpecKind: kvevents.Some(kind)}
	}
	removed := func(group int64) *kvevents.Event {
		return &kvevents.Event{Type: kvevents.BlockRemoved, BlockHashes: hashes[1:], Medium: kvevents.Some("GPU"),
			GroupIdx: kvevents.Some(group)}
	}
	total := func(idx *kvcache.Index) int {
		m := make([]kvcache.Match, 1)
		_, err := idx.Lookup(hasher.AppendKeys(nil, tokens, prefix.Extra{}), []string{"a"}, m)
		require.NoError(t, err)
		return m[0].Total()
	}
	idx, err := kvcache.New(hasher)
	require.NoError(t, err)
	a := kvevents.NewKVCacheIndex(idx)
	require.NoError(t, a.Apply("a", stored(0, "full_attention")))
	assert.ErrorIs(t, a.Apply("a", stored(1, "sliding_window")), kvevents.ErrNotIndexed)
	assert.Equal(t, 2, total(idx))

	assert.ErrorIs(t, a.Apply("a", removed(1)), kvevents.ErrNotIndexed, "removal from a group whose stores are skipped")
	assert.Equal(t, 2, total(idx), "the full-attention copy is still held")
	require.NoError(t, a.Apply("b", removed(1)), "another endpoint's group 1 is not known to be skipped")
	require.NoError(t, a.Apply("a", removed(0)))
	assert.Equal(t, 1, total(idx))

	// Drop forgets the endpoint's groups with its blocks.
	require.NoError(t, a.Drop("a"))
	require.NoError(t, a.Apply("a", removed(1)))
}
