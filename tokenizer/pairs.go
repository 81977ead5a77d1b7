package tokenizer

import "math/bits"

// pairTable maps a (left, right) id pair to rank<<32|merged id. It is an open-addressing hash
// table with linear probing, so a lookup usually costs one cache miss (a Go map needs two or
// three on tables of this size, and merge lookups are the encoder's main cost). For byte-level
// models the pairs of single-byte tokens, which every word starts with, sit in a dense array.
type pairTable struct {
	slots  []pairSlot
	shift  uint8
	bytes  []uint64 // byte-level models: [left byte<<8|right byte], noMerge when absent
	byteOf map[uint32]uint8
}

type pairSlot struct {
	key uint64 // left<<32|right, plus one so that zero means empty
	val uint64
}

func newPairTable(n int) *pairTable {
	size := 1 << max(4, bits.Len(uint(n*2)))
	return &pairTable{slots: make([]pairSlot, size), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
}

func (p *pairTable) hash(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> p.shift }

func (p *pairTable) put(a, b uint32, val uint64) {
	key := (uint64(a)<<32 | uint64(b)) + 1
	mask := uint64(len(p.slots) - 1)
	for i := p.hash(key); ; i = (i + 1) & mask {
		s := &p.slots[i]
		if s.key == 0 || s.key == key {
			s.key, s.val = key, val // a later duplicate wins, like HF's map
			return
		}
	}
}

func (p *pairTable) get(a, b uint32) uint64 {
	key := (uint64(a)<<32 | uint64(b)) + 1
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
