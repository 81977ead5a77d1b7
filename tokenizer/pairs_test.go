package tokenizer

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPairTableLayouts checks that the packed and the wide slot layouts answer alike, including
// duplicate pairs (the later rank wins) and ids too large for the packed layout.
func TestPairTableLayouts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 5000
	type merge struct{ a, b uint32 }
	var all []merge
	for range n {
		all = append(all, merge{uint32(rng.IntN(300)), uint32(rng.IntN(300))})
	}
	packed := newPairTable(n, 1<<pairIDBits-2)
	wide := newPairTable(n, 1<<pairIDBits) // an id that does not fit: wide slots
	require.NotNil(t, packed.small)
	require.Nil(t, wide.small)
	want := map[merge]uint32{}
	for r, m := range all {
		packed.put(m.a, m.b, uint32(r), uint32(r+1000))
		wide.put(m.a, m.b, uint32(r), uint32(r+1000))
		want[m] = uint32(r)
	}
	for a := uint32(0); a < 310; a++ {
		for b := uint32(0); b < 310; b++ {
			w, ok := want[merge{a, b}]
			if !ok {
				w = noMerge
			}
			assert.Equal(t, w, packed.get(a, b), "packed %d %d", a, b)
			assert.Equal(t, w, wide.get(a, b), "wide %d %d", a, b)
		}
	}
	for _, tab := range []*pairTable{packed, wide} {
		assert.Equal(t, noMerge, tab.get(1<<pairIDBits-1, 0))
		assert.Equal(t, noMerge, tab.get(0, 1<<pairIDBits))
		assert.Equal(t, noMerge, tab.get(^uint32(0), ^uint32(0)))
		assert.Equal(t, uint32(1000+n-1), tab.merged[n-1])
	}
}

// TestPairTableLoadFactor checks that the packed table stays at most 2/3 full: linear probing
// degrades sharply above that (a 98% full table cost Gemma-3 ~1,100 probes per absent pair).
func TestPairTableLoadFactor(t *testing.T) {
	for _, n := range []int{1, 100, 127741, 151387, 199742, 280147, 514906} {
		tab := newPairTable(n, 1000)
		assert.GreaterOrEqual(t, len(tab.small), n+n/2, "n=%d", n)
		assert.Less(t, len(tab.small), 2*(n+n/2)+16, "n=%d", n)
	}
}
