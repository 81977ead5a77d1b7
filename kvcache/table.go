package kvcache

import (
	"sync"
	"sync/atomic"
)

// The block table maps a block key to the set of locations holding it. It is
// split into numShards shards by the key's top bits; each shard is an
// open-addressing, linear-probing hash table of 16-byte slots:
//
//	word 0: the block key (0 = empty slot, keyTomb = deleted slot)
//	word 1: the holders: two inline 32-bit holders (loc<<0 | tiers<<24; 0 = none),
//	        or, when overflowBit is set, the index of a record in the shard's arena
//	        (a []uint32: header = len | class<<24, then cap holders).
//
// Writers hold the shard's mutex. Readers take no lock: every word is read and
// written with atomic operations, and the store order makes each word a
// consistent snapshot (a holder word is written before its key, a record is
// filled before the slot points at it, a record is freed only after the slot
// stops pointing at it, and readers re-check the slot afterwards). Growing a
// table or an arena builds a new one and swaps the pointer, so a reader that
// still holds the old one reads a stale but consistent view.

const (
	shardBits  = 8
	numShards  = 1 << shardBits
	shardShift = 64 - shardBits

	keyEmpty = 0
	keyTomb  = ^uint64(0)

	overflowBit = uint64(1) << 63
	locBits     = 24
	maxLoc      = 1<<locBits - 1
	locMask     = 1<<locBits - 1

	minTableSlots = 16
	hdrLenMask    = 1<<24 - 1
	numClasses    = 24
)

// holder packs a location id and its tier bits into 32 bits.
func holder(loc uint32, tiers uint8) uint32 { return loc | uint32(tiers)<<locBits }

func holderLoc(h uint32) uint32  { return h & locMask }
func holderTiers(h uint32) uint8 { return uint8(h >> locBits) }
func classCap(class uint32) int  { return 4 << class }
func inline(a, b uint32) uint64  { return uint64(a) | uint64(b)<<32 }
func fixKey(k uint64) uint64 {
	if k == keyEmpty || k == keyTomb {
		return 2 // the two reserved values share one ordinary key
	}
	return k
}

type table struct {
	mask uint64
	s    []uint64 // 2 words per slot
}

func newTable(slots int) *table {
	return &table{mask: uint64(slots - 1), s: make([]uint64, 2*slots)}
}

type arena struct{ a []uint32 }

type shard struct {
	mu    sync.Mutex // guards writes to tab, ar and the fields below
	tab   atomic.Pointer[table]
	ar    atomic.Pointer[arena]
	used  int // live slots
	tombs int // deleted slots
	top   uint32
	free  [numClasses][]uint32
	_     [64]byte // keep shards' hot words on separate cache lines
}

func (s *shard) init() {
	s.tab.Store(newTable(minTableSlots))
	s.ar.Store(&arena{a: make([]uint32, 64)})
	s.top = 1 // index 0 is never a record, so a zero word is never mistaken for one
}

// find returns the slot index of k in t, or -1.
func (t *table) find(k uint64) int {
	i := k & t.mask
	for {
		kk := t.s[2*i]
		if kk == k {
			return int(i)
		}
		if kk == keyEmpty {
			return -1
		}
		i = (i + 1) & t.mask
	}
}

// findAtomic is find for callers that do not hold the shard's lock.
func (t *table) findAtomic(k uint64) int {
	i := k & t.mask
	for {
		kk := atomic.LoadUint64(&t.s[2*i])
		if kk == k {
			return int(i)
		}
		if kk == keyEmpty {
			return -1
		}
		i = (i + 1) & t.mask
	}
}

// Tier bits beyond the Tier values: bitRef marks an entry touched since the
// evictor last looked (a CLOCK reference bit). It is never set alone.
const (
	bitLearned = 1 << TierLearned
	bitRef     = 1 << 5
	realBits   = 1<<NumTiers - 1
)

// update sets and clears tier bits of loc for block k and returns the old and
// new bits; touch also sets bitRef if loc already held k. Bits without a tier
// left are dropped, removing loc (and the block, if no holder is left). The
// caller holds s.mu.
func (s *shard) update(k uint64, loc uint32, set, clr uint8, touch bool) (old, new uint8) {
	t := s.tab.Load()
	i := t.find(k)
	if i < 0 {
		if set&realBits == 0 {
			return 0, 0
		}
		new = set &^ clr
		if (s.used+s.tombs+1)*4 > len(t.s)/2*3 {
			t = s.rehash()
		}
		j := k & t.mask
		for {
			kk := t.s[2*j]
			if kk == keyEmpty || kk == keyTomb {
				if kk == keyTomb {
					s.tombs--
				}
				break
			}
			j = (j + 1) & t.mask
		}
		atomic.StoreUint64(&t.s[2*j+1], inline(holder(loc, new), 0))
		atomic.StoreUint64(&t.s[2*j], k)
		s.used++
		return 0, new
	}
	next := func(old uint8) uint8 {
		n := (old | set) &^ clr
		if touch && old != 0 {
			n |= bitRef
		}
		if n&realBits == 0 {
			return 0
		}
		return n
	}
	hw := t.s[2*i+1]
	if hw&overflowBit == 0 {
		a, b := uint32(hw), uint32(hw>>32)
		switch {
		case a != 0 && holderLoc(a) == loc:
			old = holderTiers(a)
			new = next(old)
			if new == old {
				return old, new
			}
			a = 0
			if new != 0 {
				a = holder(loc, new)
			}
			s.storeInline(t, i, a, b)
			return old, new
		case b != 0 && holderLoc(b) == loc:
			old = holderTiers(b)
			new = next(old)
			if new == old {
				return old, new
			}
			b = 0
			if new != 0 {
				b = holder(loc, new)
			}
			s.storeInline(t, i, a, b)
			return old, new
		}
		new = next(0)
		if new == 0 {
			return 0, 0
		}
		switch {
		case a == 0:
			atomic.StoreUint64(&t.s[2*i+1], inline(holder(loc, new), b))
		case b == 0:
			atomic.StoreUint64(&t.s[2*i+1], inline(a, holder(loc, new)))
		default:
			r := s.alloc(0)
			ar := s.ar.Load().a
			atomic.StoreUint32(&ar[r+1], a)
			atomic.StoreUint32(&ar[r+2], b)
			atomic.StoreUint32(&ar[r+3], holder(loc, new))
			atomic.StoreUint32(&ar[r], 3)
			atomic.StoreUint64(&t.s[2*i+1], overflowBit|uint64(r))
		}
		return 0, new
	}
	// Overflow record.
	r := uint32(hw)
	ar := s.ar.Load().a
	hdr := ar[r]
	n, class := hdr&hdrLenMask, hdr>>24
	hs := ar[r+1 : r+1+n]
	for j, h := range hs {
		if holderLoc(h) != loc {
			continue
		}
		old = holderTiers(h)
		new = next(old)
		if new == old {
			return old, new
		}
		if new != 0 {
			atomic.StoreUint32(&ar[r+1+uint32(j)], holder(loc, new))
			return old, new
		}
		if n-1 <= 2 {
			// Back to inline: the two remaining holders.
			var rest [2]uint32
			m := 0
			for jj, hh := range hs {
				if jj != j {
					rest[m] = hh
					m++
				}
			}
			atomic.StoreUint64(&t.s[2*i+1], inline(rest[0], rest[1]))
			s.release(r, class)
			return old, 0
		}
		// Move the last holder into the gap, then shrink: a concurrent reader
		// sees every remaining holder at least once.
		atomic.StoreUint32(&ar[r+1+uint32(j)], hs[n-1])
		atomic.StoreUint32(&ar[r], (n-1)|class<<24)
		return old, 0
	}
	new = next(0)
	if new == 0 {
		return 0, 0
	}
	if int(n) < classCap(class) {
		atomic.StoreUint32(&ar[r+1+n], holder(loc, new))
		atomic.StoreUint32(&ar[r], (n+1)|class<<24)
		return 0, new
	}
	nr := s.alloc(class + 1)
	nar := s.ar.Load().a             // alloc may have grown the arena
	for j := uint32(0); j < n; j++ { // atomic: the record may be a reused one a reader still reads
		atomic.StoreUint32(&nar[nr+1+j], nar[r+1+j])
	}
	atomic.StoreUint32(&nar[nr+1+n], holder(loc, new))
	atomic.StoreUint32(&nar[nr], (n+1)|(class+1)<<24)
	atomic.StoreUint64(&t.s[2*i+1], overflowBit|uint64(nr))
	s.release(r, class)
	return 0, new
}

// storeInline writes an inline holder word, deleting the slot when it is empty.
func (s *shard) storeInline(t *table, i int, a, b uint32) {
	if a == 0 && b == 0 {
		// The holder word is left as is: no one reads it behind a tombstone
		// (readers re-check the key), and reusing the slot rewrites it first.
		atomic.StoreUint64(&t.s[2*i], keyTomb)
		s.used--
		s.tombs++
		return
	}
	atomic.StoreUint64(&t.s[2*i+1], inline(a, b))
}

// rehash rebuilds the table without tombstones, doubling it if it is more
// than half full, and publishes it.
func (s *shard) rehash() *table {
	old := s.tab.Load()
	slots := int(old.mask + 1)
	for (s.used+1)*2 > slots {
		slots *= 2
	}
	for slots > minTableSlots && (s.used+1)*8 < slots {
		slots /= 2
	}
	t := newTable(slots)
	for i := 0; i < len(old.s); i += 2 {
		k := old.s[i]
		if k == keyEmpty || k == keyTomb {
			continue
		}
		j := k & t.mask
		for t.s[2*j] != keyEmpty {
			j = (j + 1) & t.mask
		}
		t.s[2*j], t.s[2*j+1] = k, old.s[i+1]
	}
	s.tombs = 0
	s.tab.Store(t)
	return t
}

// alloc returns the index of a free record of the given class. It may grow and
// republish the arena.
func (s *shard) alloc(class uint32) uint32 {
	if f := s.free[class]; len(f) > 0 {
		r := f[0] // FIFO reuse: a record freed long ago is the least likely to be read
		s.free[class] = f[1:]
		return r
	}
	size := uint32(1 + classCap(class))
	ar := s.ar.Load()
	if int(s.top+size) > len(ar.a) {
		n := 2 * len(ar.a)
		for int(s.top+size) > n {
			n *= 2
		}
		na := &arena{a: make([]uint32, n)}
		copy(na.a, ar.a[:s.top])
		s.ar.Store(na)
	}
	r := s.top
	s.top += size
	return r
}

func (s *shard) release(r, class uint32) { s.free[class] = append(s.free[class], r) }
