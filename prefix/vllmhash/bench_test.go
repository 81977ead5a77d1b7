package vllmhash_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/prefix/vllmhash"
)

func benchTokens(n int) []uint32 {
	toks := make([]uint32, n)
	for i := range toks {
		toks[i] = uint32(i*7919) % 151000
	}
	return toks
}

func BenchmarkAppendBlockHashes(b *testing.B) {
	for _, algo := range []vllmhash.Algorithm{vllmhash.SHA256, vllmhash.SHA256CBOR, vllmhash.XXHash, vllmhash.XXHashCBOR} {
		for _, n := range []int{1024, 8192} {
			b.Run(fmt.Sprintf("%v/tokens=%d", algo, n), func(b *testing.B) {
				h, err := vllmhash.New(algo, "0")
				require.NoError(b, err)
				toks := benchTokens(n)
				dst := make([]vllmhash.Digest, 0, n/16)
				b.SetBytes(int64(4 * n))
				b.ReportAllocs()
				for b.Loop() {
					dst = h.AppendBlockHashes(dst[:0], vllmhash.Digest{}, toks, 16, nil)
				}
			})
		}
	}
}

func TestAppendBlockHashesZeroAlloc(t *testing.T) {
	for _, algo := range []vllmhash.Algorithm{vllmhash.SHA256, vllmhash.SHA256CBOR, vllmhash.XXHash, vllmhash.XXHashCBOR} {
		h, err := vllmhash.New(algo, "0")
		require.NoError(t, err)
		toks := benchTokens(1024)
		dst := make([]vllmhash.Digest, 0, 64)
		extra := (&vllmhash.Request{LoRAName: "a", CacheSalt: "b"}).ExtraKeys(64, 16)
		// Up to three tries: a GC in the middle of one can empty the buffer
		// pool (and CI once saw a stray count); a real allocation per call
		// shows in every try.
		var allocs float64
		for range 3 {
			allocs = testing.AllocsPerRun(20, func() {
				dst = h.AppendBlockHashes(dst[:0], vllmhash.Digest{}, toks, 16, extra)
			})
			if allocs == 0 {
				break
			}
		}
		assert.Zero(t, allocs, "%v", algo)
	}
}

func TestErrors(t *testing.T) {
	_, err := vllmhash.ParseAlgorithm("builtin")
	assert.ErrorIs(t, err, vllmhash.ErrUnknownAlgorithm)
	_, err = vllmhash.New(vllmhash.Algorithm(9), "0")
	assert.ErrorIs(t, err, vllmhash.ErrUnknownAlgorithm)
	_, err = vllmhash.DigestFromBytes(make([]byte, 8))
	assert.Error(t, err)
	_, err = vllmhash.ParseDigest("zz")
	assert.Error(t, err)
	d, err := vllmhash.ParseDigest("1ebe36576dcb573f26b99533a20aaeca")
	require.NoError(t, err)
	_, err = vllmhash.NewWithNoneHash(vllmhash.SHA256, d)
	assert.Error(t, err, "a 16-byte NONE_HASH cannot seed a 32-byte algorithm")
	h, err := vllmhash.NewWithNoneHash(vllmhash.XXHashCBOR, d)
	require.NoError(t, err)
	h2, err := vllmhash.New(vllmhash.XXHashCBOR, "0")
	require.NoError(t, err)
	assert.Equal(t, h2.NoneHash(), h.NoneHash())
	assert.Equal(t, uint64(0), vllmhash.Digest{}.Uint64())
	assert.Equal(t, 16, vllmhash.XXHash.DigestSize())

	r := vllmhash.Request{LoRAName: "a", MM: []vllmhash.MMItem{{Identifier: "x", Offset: 0, Length: 4}}}
	assert.Nil(t, r.ExtraKeys(-1, 16), "negative block count")
	assert.Nil(t, r.ExtraKeys(2, 0), "zero block size")
	assert.Nil(t, r.ExtraKeys(2, -16), "negative block size")
	assert.Len(t, r.ExtraKeys(2, 16), 2)
}
