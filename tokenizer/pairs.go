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
}

type pairSlot struct {
	key uint64 // left<<32|right, plus one so that zero means empty
	val uint64 // rank
}

const (
	pairIDBits   = 20
	pairRankBits = 24
)

func newPairTable(n int, maxID uint32) *pairTable {
	p := &pairTable{merged: make([]uint32, n)}
	if uint64(maxID)+1 < 1<<pairIDBits && uint64(n) < 1<<pairRankBits {
		// Load factor 1/4 to 1/2: eight packed slots share a cache line, so a longer probe
		// rarely costs a second miss, and the smaller table misses the cache less often.
		size := 1 << max(4, bits.Len(uint(n)))
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

// put records the merge of rank rank; a later duplicate pair wins, like HF's map.
func (p *pairTable) put(a, b uint32, rank uint32, merged uint32) {
	p.merged[rank] = merged
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
			s.key, s.val = key, uint64(rank)
			return
		}
	}
}

// get returns the rank of the merge of (a, b), noMerge when there is none.
func (p *pairTable) get(a, b uint32) uint64 {
	if p.small != nil {
		if a >= 1<<pairIDBits-1 || b >= 1<<pairIDBits {
			return noMerge // an id no merge uses (e.g. an added token)
		}
		key := uint64(a+1)<<pairIDBits | uint64(b)
		mask := uint64(len(p.small) - 1)
		for i := p.hash(key); ; i = (i + 1) & mask {
			s := p.small[i]
			if s>>pairRankBits == key {
				return s & (1<<pairRankBits - 1)
			}
			if s == 0 {
				return noMerge
			}
		}
	}
	return p.getWide(a, b)
}

func (p *pairTable) getWide(a, b uint32) uint64 {
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
