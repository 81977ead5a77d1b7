package kvcache

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Lookup walks keys from block 0 and writes into out[i] the match of
// endpoints[i]: how many consecutive blocks, from block 0, the endpoint holds,
// by the best tier it holds each in (its own GPU, CPU or disk tiers, a shared
// storage it is attached to, or learned entries). The walk stops at the first
// block no candidate holds. Unknown endpoints match nothing; an endpoint listed
// twice gets the same match twice. It returns the longest match, in blocks.
//
// Results are positional, so a caller maps them back to its endpoints by index
// without building a map. Passing the same []string of candidate IDs (the
// same string values) on every call lets Lookup reuse its previous name
// resolution; the strings must be ordinary immutable Go strings. Lookup takes no lock, does not allocate in steady
// state, and runs concurrently with writes: each block's holders are read as
// one consistent snapshot, and a write that lands during the walk may or may
// not be seen. out must be at least as long as endpoints (ErrShortOutput).
func (x *Index) Lookup(keys []uint64, endpoints []string, out []Match) (int, error) {
	if len(out) < len(endpoints) {
		return 0, ErrShortOutput
	}
	out = out[:len(endpoints)]
	clear(out)
	if len(keys) == 0 || len(endpoints) == 0 {
		return 0, nil
	}
	r := x.reg.Load()
	sc := x.scratch.Get().(*lookupScratch)
	longest := sc.run(x, r, keys, endpoints, out)
	x.scratch.Put(sc)
	return longest, nil
}

const noTier = 0xff

type cand struct {
	out      int32 // index into out
	storage  uint32
	seenAt   int32 // last block index this candidate was seen at
	ckAt     int32 // last block index a jump check counted it at
	runStart int32 // first block of the current run of equal tiers
	t        uint8 // best tier at seenAt
	runTier  uint8 // tier of the current run, noTier before block 0
}

// resolve maps endpoint names to location ids (0 for unknown). A scheduler
// passes the same candidate strings lookup after lookup, so the previous
// answer is reused when the registry is unchanged and every name is the very
// same string (same bytes in memory): comparing string headers is far cheaper
// than hashing the names.
func (sc *lookupScratch) resolve(r *registry, endpoints []string) []uint32 {
	if r == sc.lastReg && len(endpoints) == len(sc.lastNames) {
		same := true
		for i, name := range endpoints {
			last := sc.lastNames[i]
			if len(name) != len(last) || unsafe.StringData(name) != unsafe.StringData(last) {
				same = false
				break
			}
		}
		if same {
			return sc.lastIDs
		}
	}
	sc.lastReg = r
	sc.lastNames = append(sc.lastNames[:0], endpoints...)
	sc.lastIDs = sc.lastIDs[:0]
	for _, name := range endpoints {
		sc.lastIDs = append(sc.lastIDs, r.endpoints[name])
	}
	return sc.lastIDs
}

// lookupScratch is one Lookup's working memory, pooled. candOf and stamp are
// tagged with gen, the call's generation, so they never need clearing.
type lookupScratch struct {
	gen     uint64
	candOf  []uint64 // location id → gen<<32 | candidate index
	stamp   []uint64 // storage location id → gen<<32 | block index it was seen at
	cands   []cand
	alive   []int32
	changed []int32
	two     [2]uint32
	dups    [][2]int32 // (out index, first out index) for endpoints listed twice
	hbuf    []uint32
	probes  int // jump checks made, ever (for tests)

	// The last resolve: registry, names (their headers) and ids.
	lastReg   *registry
	lastNames []string
	lastIDs   []uint32
	pre       [maxBatch]uint64
}

// maxBatch is the most blocks whose slots Lookup touches ahead of walking them.
const maxBatch = 32

// prefetchSink keeps the prefetch loads from being optimized away.
var prefetchSink atomic.Uint64

// prefetch loads the first slot of each key's probe sequence, then the
// header of each overflow record, so that the misses overlap. It reads
// without validation: it only warms caches.
func (x *Index) prefetch(keys []uint64, pre *[maxBatch]uint64) {
	var sum uint64
	for j, k := range keys {
		k = fixKey(k)
		t := x.shards[k>>shardShift].tab.Load()
		pre[j] = atomic.LoadUint64(&t.s[2*(k&t.mask)+1])
	}
	for j, k := range keys {
		if hw := pre[j]; hw&overflowBit != 0 {
			ar := x.shards[fixKey(k)>>shardShift].ar.Load().a
			if r := uint32(hw); int(r) < len(ar) {
				sum += uint64(atomic.LoadUint32(&ar[r]))
			}
		} else {
			sum += hw
		}
	}
	if sum == 1 {
		prefetchSink.Store(sum) // practically never: defeats dead-code elimination
	}
}

func (sc *lookupScratch) run(x *Index, r *registry, keys []uint64, endpoints []string, out []Match) int {
	sc.gen++
	if len(sc.candOf) < len(r.locs) || sc.gen >= 1<<32 {
		sc.candOf = make([]uint64, len(r.locs)+len(r.locs)/4)
		sc.stamp = make([]uint64, len(sc.candOf))
		sc.gen = 1
	}
	gen := sc.gen << 32
	sc.cands, sc.alive, sc.changed, sc.dups = sc.cands[:0], sc.alive[:0], sc.changed[:0], sc.dups[:0]
	ids := sc.resolve(r, endpoints)
	hasStorage := false
	for i, id := range ids {
		if id == 0 {
			continue
		}
		if c := sc.candOf[id]; c&^(1<<32-1) == gen {
			sc.dups = append(sc.dups, [2]int32{int32(i), sc.cands[uint32(c)].out})
			continue
		}
		sc.candOf[id] = gen | uint64(len(sc.cands))
		sc.cands = append(sc.cands, cand{out: int32(i), storage: r.storageOf[id], seenAt: -1, ckAt: -1, runTier: noTier})
		sc.alive = append(sc.alive, int32(len(sc.cands)-1))
		if r.storageOf[id] != 0 {
			hasStorage = true
		}
	}
	longest := 0
	if len(sc.alive) > 0 {
		longest = sc.walk(x, keys, out, hasStorage, gen)
	}
	for _, d := range sc.dups {
		out[d[0]] = out[d[1]]
	}
	return longest
}

// holders returns a consistent snapshot of block k's holders, copied into
// sc's buffers, and whether k is in the index at all.
func (sc *lookupScratch) holders(x *Index, k uint64) ([]uint32, bool) {
	sh := &x.shards[k>>shardShift]
	for {
		t := sh.tab.Load()
		i := k & t.mask
		var hw uint64
		for {
			kk := atomic.LoadUint64(&t.s[2*i])
			if kk == k {
				hw = atomic.LoadUint64(&t.s[2*i+1])
				if atomic.LoadUint64(&t.s[2*i]) != k {
					return nil, false // deleted under us: treat as a miss
				}
				break
			}
			if kk == keyEmpty {
				return nil, false
			}
			i = (i + 1) & t.mask
		}
		if hw&overflowBit == 0 {
			sc.two = [2]uint32{uint32(hw), uint32(hw >> 32)}
			return sc.two[:], true
		}
		ar := sh.ar.Load().a
		rec := uint32(hw)
		if int(rec) >= len(ar) {
			continue
		}
		n := atomic.LoadUint32(&ar[rec]) & hdrLenMask
		if int(rec)+1+int(n) > len(ar) {
			continue
		}
		hs := sc.hbuf[:0]
		for j := uint32(0); j < n; j++ {
			hs = append(hs, atomic.LoadUint32(&ar[rec+1+j]))
		}
		sc.hbuf = hs
		// The record may have been freed and reused while we copied it.
		if atomic.LoadUint64(&t.s[2*i+1]) == hw && atomic.LoadUint64(&t.s[2*i]) == k {
			return hs, true
		}
	}
}

// check reports whether every live candidate holds block k (at position b)
// in the tier of its current run, without changing any state but the check
// stamps. last is the last block walked: live candidates were seen there.
// A candidate whose run is in its shared storage passes when the storage
// holds the block and the candidate does not hold it itself (holding it in
// any own tier fails the check, even a worse one, and the walk then goes
// block by block); a run in the learned tier fails where the storage holds
// the block, since TierShared beats it.
func (sc *lookupScratch) check(x *Index, k uint64, b, last int32) bool {
	sc.probes++
	hs, ok := sc.holders(x, k)
	if !ok {
		return false
	}
	candOf, cands, stamp, gen := sc.candOf, sc.cands, sc.stamp, sc.gen<<32
	nlocs := uint32(len(candOf))
	n := 0
	storageHit := false
	for _, h := range hs {
		if h == 0 || holderLoc(h) >= nlocs {
			continue
		}
		ci := candOf[holderLoc(h)]
		if ci&^(1<<32-1) != gen {
			if holderTiers(h)&(1<<TierShared) != 0 {
				stamp[holderLoc(h)] = gen | uint64(uint32(b))
				storageHit = true
			}
			continue
		}
		c := &cands[uint32(ci)]
		if c.seenAt != last || c.ckAt == b {
			continue // dead, or counted already
		}
		if c.runTier != uint8(bits.TrailingZeros8(holderTiers(h))) {
			c.ckAt = -2 - b // seen in another tier: it changes tier here
			continue
		}
		c.ckAt = b
		n++
	}
	if storageHit {
		// Candidates whose shared storage holds the block: it continues a run
		// in TierShared, or it beats a run in a worse tier (learned).
		for _, ci := range sc.alive {
			c := &cands[ci]
			if c.storage == 0 || stamp[c.storage] != gen|uint64(uint32(b)) {
				continue
			}
			switch {
			case c.ckAt == b && c.runTier > uint8(TierShared):
				c.ckAt = -2 - b
				n--
			case c.runTier == uint8(TierShared) && c.ckAt != b && c.ckAt != -2-b:
				c.ckAt = b
				n++
			}
		}
	}
	return n == len(sc.alive)
}

func (sc *lookupScratch) walk(x *Index, keys []uint64, out []Match, hasStorage bool, gen uint64) int {
	candOf, stamp, cands := sc.candOf, sc.stamp, sc.cands
	nlocs := uint32(len(candOf))
	jump := x.cfg.jump
	b := 0
	batch, batchEnd := 4, 0
	segEnd := len(keys)
	if jump > 0 {
		segEnd = 1 // walk block 0, which sets every candidate's first tier, then jump
	}
walk:
	for b < len(keys) {
		if b == segEnd {
			// Jump search: from the last block walked (lo), probe one block a
			// stride ahead (hi); if every live candidate holds it in the tier
			// of its current run, take the blocks in between as held alike.
			// If not, something changes in (lo, hi]: bisect down to it, then
			// walk the last few blocks one by one.
			lo := b - 1
			hi := min(lo+jump, len(keys)-1)
			bad := -1 // the nearest block above lo known to fail the check
			for hi > lo {
				if sc.check(x, fixKey(keys[hi]), int32(hi), int32(lo)) {
					for _, ci := range sc.alive {
						cands[ci].seenAt = int32(hi)
					}
					lo = hi
					if bad < 0 {
						hi = min(lo+jump, len(keys)-1)
						continue
					}
					hi = bad // keep bisecting below it, not a whole stride again
				} else {
					bad = hi
				}
				if hi-lo <= 2 {
					break
				}
				hi = lo + (hi-lo)/2
			}
			b = lo + 1
			segEnd = hi + 1
			batchEnd = b
			if b == len(keys) {
				break
			}
		}
		if b == batchEnd {
			// Touch the next batch's slots (and holder records) before walking
			// them: the loads are independent, so their cache and TLB misses
			// overlap instead of being paid one after the other.
			batchEnd = min(b+batch, segEnd)
			batch = min(2*batch, maxBatch)
			x.prefetch(keys[b:batchEnd], &sc.pre)
		}
		hs, found := sc.holders(x, fixKey(keys[b]))
		if !found {
			break
		}
		bb := int32(b)
		nseen := 0
		changed := sc.changed[:0]
		storageHit := false
		for _, h := range hs {
			if h == 0 {
				continue
			}
			loc := holderLoc(h)
			if loc >= nlocs {
				continue // registered after our snapshot
			}
			ci := candOf[loc]
			if ci&^(1<<32-1) != gen {
				if hasStorage && holderTiers(h)&(1<<TierShared) != 0 {
					stamp[loc] = gen | uint64(uint32(bb))
					storageHit = true
				}
				continue
			}
			c := &cands[uint32(ci)]
			best := uint8(bits.TrailingZeros8(holderTiers(h)))
			switch c.seenAt {
			case bb - 1: // first sighting at this block
				c.seenAt, c.t = bb, best
				nseen++
				if best != c.runTier {
					changed = append(changed, int32(uint32(ci)))
				}
			case bb: // seen twice (a holder moved under us): keep the best
				if best < c.t {
					c.t = best
					changed = append(changed, int32(uint32(ci)))
				}
			}
			// Otherwise the candidate died at an earlier block.
		}
		if storageHit {
			for _, ci := range sc.alive {
				c := &cands[ci]
				if c.storage == 0 || stamp[c.storage] != gen|uint64(uint32(bb)) {
					continue
				}
				if c.seenAt != bb {
					c.seenAt, c.t = bb, uint8(TierShared)
					nseen++
					changed = append(changed, ci)
				} else if uint8(TierShared) < c.t {
					c.t = uint8(TierShared)
					changed = append(changed, ci)
				}
			}
		}
		// Close the runs of candidates whose tier changed (idempotent for
		// candidates listed twice).
		for _, ci := range changed {
			c := &cands[ci]
			if c.t != c.runTier {
				if c.runTier != noTier {
					out[c.out].Blocks[c.runTier] += bb - c.runStart
				}
				c.runTier, c.runStart = c.t, bb
			}
		}
		sc.changed = changed
		if nseen < len(sc.alive) {
			alive := sc.alive[:0]
			for _, ci := range sc.alive {
				c := &cands[ci]
				if c.seenAt == bb {
					alive = append(alive, ci)
					continue
				}
				if c.runTier != noTier {
					out[c.out].Blocks[c.runTier] += bb - c.runStart
				}
			}
			sc.alive = alive
			if len(alive) == 0 {
				break walk
			}
		}
		b++
	}
	for _, ci := range sc.alive {
		c := &cands[ci]
		if c.runTier != noTier {
			out[c.out].Blocks[c.runTier] += int32(b) - c.runStart
		}
	}
	return b
}
