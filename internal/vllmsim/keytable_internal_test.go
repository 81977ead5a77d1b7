package vllmsim

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeyTableAgainstMap checks the table against a Go map under random
// inserts, overwrites and deletes, with clustered keys that collide.
func TestKeyTableAgainstMap(t *testing.T) {
	for _, spread := range []uint64{64, 1 << 40} {
		rng := rand.New(rand.NewPCG(spread, 1))
		const maxKeys = 500
		kt := newKeyTable(maxKeys)
		ref := map[uint64]int32{}
		for i := range 40000 {
			k := rng.Uint64N(spread) * 0x100000000 // low bits equal: worst case for weak hashing
			switch op := rng.IntN(3); {
			case op == 0 && len(ref) < maxKeys:
				kt.put(k, int32(i))
				ref[k] = int32(i)
			case op == 1:
				kt.del(k)
				delete(ref, k)
			default:
				v, ok := kt.get(k)
				rv, rok := ref[k]
				require.Equal(t, rok, ok, "key %x", k)
				require.Equal(t, rv, v)
			}
			require.Equal(t, len(ref), kt.n)
		}
		n := 0
		kt.rangeKeys(func(k uint64) bool {
			_, ok := ref[k]
			assert.True(t, ok)
			n++
			return true
		})
		assert.Equal(t, len(ref), n)
		kt.clear()
		for k := range ref {
			_, ok := kt.get(k)
			assert.False(t, ok)
		}
	}
}
