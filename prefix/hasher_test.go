package prefix

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"
)

func seq(n int, start uint32) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = start + uint32(i)
	}
	return t
}

func mustHasher(t testing.TB, model string, opts ...Option) *Hasher {
	t.Helper()
	h, err := NewHasher(model, opts...)
	require.NoError(t, err)
	return h
}

func TestNewHasherBlockSize(t *testing.T) {
	tests := []struct {
		name    string
		give    int
		wantErr bool
	}{
		{name: "one", give: 1},
		{name: "default", give: 16},
		{name: "max", give: MaxBlockSize},
		{name: "zero", give: 0, wantErr: true},
		{name: "negative", give: -16, wantErr: true},
		{name: "too big", give: MaxBlockSize + 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHasher("m", WithBlockSize(tt.give))
			if tt.wantErr {
				assert.ErrorIs(t, err, ErrBlockSize)
				assert.Nil(t, h)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.give, h.BlockSize())
		})
	}
}

// TestKeysDefinition recomputes keys from the documented definition, so the
// fast path cannot drift from it.
func TestKeysDefinition(t *testing.T) {
	h := mustHasher(t, "model-a", WithBlockSize(4))
	tokens := seq(10, 1000)
	got := h.AppendKeys(nil, tokens, Extra{LoRA: "ad", CacheSalt: "s"})
	require.Len(t, got, 2)

	root := xxh3.HashStringSeed("model-a", seedRoot)
	lora := xxh3.HashStringSeed("ad", seedLoRA)
	salt := xxh3.HashStringSeed("s", seedSalt)
	le := func(ts []uint32) []byte {
		b := make([]byte, 4*len(ts))
		for i, v := range ts {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		return b
	}
	k0 := xxh3.HashSeed(le(tokens[0:4]), mix(mix(root, lora), salt))
	k1 := xxh3.HashSeed(le(tokens[4:8]), mix(k0, lora))
	assert.Equal(t, []uint64{k0, k1}, got)
	assert.Equal(t, root, h.Root())
}

// TestKeysPinned pins key values so that an accidental change of the scheme,
// which would silently invalidate every persisted or shared index, fails here.
func TestKeysPinned(t *testing.T) {
	h := mustHasher(t, "meta-llama/Llama-3.1-8B-Instruct")
	got := h.AppendKeys(nil, seq(48, 0), Extra{})
	assert.Equal(t, []uint64{0xbbebf9bd0d64ac48, 0xf5226fcefbbc30ea, 0x60b1d4f10e7dc5d8}, got)
}

func TestKeysSemantics(t *testing.T) {
	h := mustHasher(t, "m", WithBlockSize(16))
	base := seq(64, 7)
	keys := func(h *Hasher, ts []uint32, x Extra) []uint64 { return h.AppendKeys(nil, ts, x) }
	ref := keys(h, base, Extra{})
	require.Len(t, ref, 4)

	t.Run("deterministic", func(t *testing.T) {
		assert.Equal(t, ref, keys(mustHasher(t, "m"), base, Extra{}))
	})
	t.Run("partial tail ignored", func(t *testing.T) {
		assert.Equal(t, ref, keys(h, append(append([]uint32{}, base...), 1, 2, 3), Extra{}))
		assert.Equal(t, ref[:3], keys(h, base[:63], Extra{}))
		assert.Empty(t, keys(h, base[:15], Extra{}))
		assert.Empty(t, keys(h, nil, Extra{}))
	})
	t.Run("prefix property", func(t *testing.T) {
		other := append(append([]uint32{}, base[:32]...), seq(32, 99999)...)
		got := keys(h, other, Extra{})
		assert.Equal(t, ref[:2], got[:2])
		assert.NotEqual(t, ref[2], got[2])
		assert.NotEqual(t, ref[3], got[3])
	})
	t.Run("chained", func(t *testing.T) {
		// One token differing in block 0 changes every key.
		other := append([]uint32{}, base...)
		other[3]++
		got := keys(h, other, Extra{})
		for i := range ref {
			assert.NotEqual(t, ref[i], got[i], "block %d", i)
		}
	})
	t.Run("model seeds root", func(t *testing.T) {
		got := keys(mustHasher(t, "m2"), base, Extra{})
		assert.NotEqual(t, ref[0], got[0])
		assert.NotEqual(t, h.Root(), mustHasher(t, "m2").Root())
	})
	t.Run("lora on every block", func(t *testing.T) {
		a := keys(h, base, Extra{LoRA: "a"})
		b := keys(h, base, Extra{LoRA: "b"})
		for i := range ref {
			assert.NotEqual(t, ref[i], a[i])
			assert.NotEqual(t, a[i], b[i])
		}
		// LoRA is not only in the root: continuing a chain keeps mixing it in.
		cont := h.AppendKeysFrom(nil, a[1], base[32:], "a", "")
		assert.Equal(t, a[2:], cont)
		noLoRA := h.AppendKeysFrom(nil, a[1], base[32:], "", "")
		assert.NotEqual(t, a[2], noLoRA[0])
	})
	t.Run("salt on block 0 only", func(t *testing.T) {
		s := keys(h, base, Extra{CacheSalt: "tenant-1"})
		for i := range ref {
			assert.NotEqual(t, ref[i], s[i])
		}
		// Continuing from block 1's key ignores the salt argument.
		assert.Equal(t, s[2:], h.AppendKeysFrom(nil, s[1], base[32:], "", "tenant-1"))
		assert.Equal(t, s[2:], h.AppendKeysFrom(nil, s[1], base[32:], "", ""))
		// Starting from the root applies it.
		assert.Equal(t, s, h.AppendKeysFrom(nil, h.Root(), base, "", "tenant-1"))
	})
	t.Run("block size matters", func(t *testing.T) {
		got := keys(mustHasher(t, "m", WithBlockSize(32)), base, Extra{})
		require.Len(t, got, 2)
		assert.NotEqual(t, ref[1], got[0])
	})
	t.Run("appends", func(t *testing.T) {
		dst := []uint64{42}
		got := h.AppendKeys(dst, base, Extra{})
		assert.Equal(t, append([]uint64{42}, ref...), got)
	})
}

func TestPortableMatchesFast(t *testing.T) {
	for _, bs := range []int{1, 3, 16, 64, 100} {
		h := mustHasher(t, "m", WithBlockSize(bs))
		tokens := seq(bs*5+1, 0xfffff000)
		for _, x := range []Extra{{}, {LoRA: "l"}, {CacheSalt: "s"}, {LoRA: "l", CacheSalt: "s"}} {
			fast := h.AppendKeys(nil, tokens, x)
			var lk, sk uint64
			if x.LoRA != "" {
				lk = xxh3.HashStringSeed(x.LoRA, seedLoRA)
			}
			if x.CacheSalt != "" {
				sk = xxh3.HashStringSeed(x.CacheSalt, seedSalt)
			}
			n := h.NumBlocks(len(tokens))
			slow := h.appendPortable(nil, h.Root(), tokens[:n*bs], lk, sk)
			assert.Equal(t, fast, slow, "block size %d extra %+v", bs, x)
		}
	}
}

func TestTextKeys(t *testing.T) {
	h := mustHasher(t, "m", WithBlockSize(2)) // 8 bytes per block
	text := "abcdefgh12345678xyz"
	got := h.AppendTextKeys(nil, text, Extra{})
	require.Len(t, got, 2)

	// Equal to hashing the bytes as little-endian pseudo-tokens from the text root.
	pseudo := make([]uint32, 4)
	for i := range pseudo {
		pseudo[i] = binary.LittleEndian.Uint32([]byte(text[4*i:]))
	}
	assert.Equal(t, got, h.AppendKeysFrom(nil, h.textRoot, pseudo, "", ""))

	// Separate domain from token keys; shared byte prefix gives shared keys.
	assert.NotEqual(t, h.AppendKeys(nil, pseudo, Extra{}), got)
	assert.Equal(t, got[:1], h.AppendTextKeys(nil, "abcdefghZZZZZZZZ", Extra{})[:1])
	assert.Empty(t, h.AppendTextKeys(nil, "short", Extra{}))
	assert.NotEqual(t, got[0], h.AppendTextKeys(nil, text, Extra{CacheSalt: "s"})[0])
	assert.NotEqual(t, got[1], h.AppendTextKeys(nil, text, Extra{LoRA: "l"})[1])
}

func TestNumBlocks(t *testing.T) {
	h := mustHasher(t, "m")
	assert.Equal(t, 0, h.NumBlocks(-1))
	assert.Equal(t, 0, h.NumBlocks(15))
	assert.Equal(t, 1, h.NumBlocks(16))
	assert.Equal(t, 512, h.NumBlocks(8192))
	assert.Equal(t, "m", h.Model())
}

func TestZeroAllocs(t *testing.T) {
	h := mustHasher(t, "m")
	tokens := seq(8192, 0)
	dst := make([]uint64, 0, 512)
	allocs := testing.AllocsPerRun(50, func() {
		dst = h.AppendKeys(dst[:0], tokens, Extra{LoRA: "adapter", CacheSalt: "salt"})
	})
	assert.Zero(t, allocs)
	text := string(make([]byte, 32768))
	allocs = testing.AllocsPerRun(50, func() {
		dst = h.AppendTextKeys(dst[:0], text, Extra{})
	})
	assert.Zero(t, allocs)
}

func TestNonZero(t *testing.T) {
	assert.Equal(t, uint64(1), nonZero(0))
	assert.Equal(t, uint64(5), nonZero(5))
}
