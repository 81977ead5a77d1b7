package tokenizer

import "math/bits"

// pairTable maps a (left, right) id pair to the rank of its merge; merged[rank] is the id the
// merge produces. It is an open-addressing hash table with linear probing, so a lookup usually
// costs one cache miss (a Go map needs two or three on tables of this size, and merge lookups are
// the encoder's main cost). When ids and ranks fit, a slot packs pair and rank into 8 bytes
// (left+1 in 20 bits, right in 20, rank in 24), which halves the table and its cache misses;
// otherwise it falls back to 16-byte slots. The merged id is read only when a merge is applied.
type pairTable struct {
	small  []uint64   // packed slots, zero = empty
	slots  []pairSlot // wide slots, used when small is nil
	shift  uint8
	merged []uint32 // rank -> merged id

	// filter is a Bloom filter of the pairs (two bits in one word per pair), eight bits per
	// merge, small enough to stay in the core's cache. Most lookups during encoding are of
	// pairs that have no merge (every pair of neighbouring final tokens is one), and the
	// filter answers most of those without touching the large table.
	filter []uint64
	fshift uint8
}

type pairSlot struct {
	key uint64 // left<<32|right, plus one so that zero means empty
	val uint32 // rank
}

const (
	pairIDBits   = 20
	pairRankBits = 24
)

func newPairTable(n int, maxID uint32) *pairTable {
	p := &pairTable{merged: make([]uint32, n)}
	words := 1 << max(1, bits.Len(uint(n))+3-6)
	p.filter = make([]uint64, words)
	p.fshift = uint8(64 - bits.TrailingZeros(uint(words)))
	if uint64(maxID)+1 < 1<<pairIDBits && uint64(n) < 1<<pairRankBits {
		// Load factor 1/3 to 2/3: eight packed slots share a cache line, so a longer probe
		// rarely costs a second miss, and the smaller table misses the cache less often. (The
		// size used to be the power of two above n, up to 98% full for Gemma-3 and DeepSeek-V3:
		// clusters of over 10,000 slots, ~1,100 probes per absent pair, 90% of their encode.)
		size := 16
		for size < n+n/2 {
			size <<= 1
		}
		p.shift = uint8(64 - bits.TrailingZeros(uint(size)))
		p.small = make([]uint64, size)
	} else {
		size := 1 << max(4, bits.Len(uint(n*2)))
		p.shift = uint8(64 - bits.TrailingZeros(uint(size)))
		p.slots = make([]pairSlot, size)
	}
	return p
}

func (p *pairTable) hash(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> p.shift }

// filterBits returns the filter word index and the two bits of a pair.
func (p *pairTable) filterBits(a, b uint32) (uint64, uint64) {
	h := (uint64(a)<<32 | uint64(b)) * 0xD6E8FEB86659FD93
	return h >> p.fshift, 1<<(h>>20&63) | 1<<(h>>26&63)
}

// put records the merge of rank rank; a later duplicate pair wins, like HF's map.
func (p *pairTable) put(a, b uint32, rank uint32, merged uint32) {
	p.merged[rank] = merged
	w, m := p.filterBits(a, b)
	p.filter[w] |= m
	if p.small != nil {
		key := uint64(a+1)<<pairIDBits | uint64(b)
		mask := uint64(len(p.small) - 1)
		for i := p.hash(key); ; i = (i + 1) & mask {
			s := &p.small[i]
			if *s == 0 || *s>>pairRankBits == key {
				*s = key<<pairRankBits | uint64(rank)
				return
			}
		}
	}
	key := (uint64(a)<<32 | uint64(b)) + 1
	mask := uint64(len(p.slots) - 1)
	for i := p.hash(key); ; i = (i + 1) & mask {
		s := &p.slots[i]
		if s.key == 0 || s.key == key {
			s.key, s.val = key, rank
			return
		}
	}
}

// get returns the rank of the merge of (a, b), noMerge when there is none.
func (p *pairTable) get(a, b uint32) uint32 {
	if w, m := p.filterBits(a, b); p.filter[w]&m != m {
		return noMerge
	}
	if p.small != nil {
		if a >= 1<<pairIDBits-1 || b >= 1<<pairIDBits {
			return noMerge // an id no merge uses (e.g. an added token)
		}
		key := uint64(a+1)<<pairIDBits | uint64(b)
		mask := uint64(len(p.small) - 1)
		for i := p.hash(key); ; i = (i + 1) & mask {
			s := p.small[i]
			if s>>pairRankBits == key {
				return uint32(s & (1<<pairRankBits - 1))
			}
			if s == 0 {
				return noMerge
			}
		}
	}
	return p.getWide(a, b)
}

func (p *pairTable) getWide(a, b uint32) uint32 {
	key := (uint64(a)<<32 | uint64(b)) + 1
	if key == 0 {
		return noMerge // (2^32-1, 2^32-1) wraps; no vocabulary has such ids
	}
	mask := uint64(len(p.slots) - 1)
	for i := p.hash(key); ; i = (i + 1) & mask {
		s := &p.slots[i]
		if s.key == key {
			return s.val
		}
		if s.key == 0 {
			return noMerge
		}
	}
}
