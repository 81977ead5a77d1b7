package kvcache

import (
	"math/bits"
	"sync/atomic"
)

// Lookup walks keys from block 0 and writes into out[i] the match of
// endpoints[i]: how many consecutive blocks, from block 0, the endpoint holds,
// by the best tier it holds each in (its own GPU, CPU or disk tiers, a shared
// storage it is attached to, or learned entries). The walk stops at the first
// block no candidate holds. Unknown endpoints match nothing; an endpoint listed
// twice gets the same match twice. It returns the longest match, in blocks.
//
// Results are positional, so a caller maps them back to its endpoints by index
// without building a map. Lookup takes no lock, does not allocate in steady
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
	runStart int32 // first block of the current run of equal tiers
	t        uint8 // best tier at seenAt
	runTier  uint8 // tier of the current run, noTier before block 0
}

// lookupScratch is one Lookup's working memory, pooled. candOf and stamp are
// tagged with gen, the call's generation, so they never need clearing.
type lookupScratch struct {
	gen    uint64
	candOf []uint64 // location id → gen<<32 | candidate index
	stamp  []uint64 // storage location id → gen<<32 | block index it was seen at
	cands  []cand
	alive  []int32
	seen   []int32
	dups   [][2]int32 // (out index, first out index) for endpoints listed twice
	hbuf   []uint32
}

func (sc *lookupScratch) run(x *Index, r *registry, keys []uint64, endpoints []string, out []Match) int {
	sc.gen++
	if len(sc.candOf) < len(r.locs) || sc.gen >= 1<<32 {
		sc.candOf = make([]uint64, len(r.locs)+len(r.locs)/4)
		sc.stamp = make([]uint64, len(sc.candOf))
		sc.gen = 1
	}
	gen := sc.gen << 32
	sc.cands, sc.alive, sc.seen, sc.dups = sc.cands[:0], sc.alive[:0], sc.seen[:0], sc.dups[:0]
	hasStorage := false
	for i, name := range endpoints {
		id, ok := r.endpoints[name]
		if !ok {
			continue
		}
		if c := sc.candOf[id]; c&^(1<<32-1) == gen {
			sc.dups = append(sc.dups, [2]int32{int32(i), sc.cands[uint32(c)].out})
			continue
		}
		sc.candOf[id] = gen | uint64(len(sc.cands))
		sc.cands = append(sc.cands, cand{out: int32(i), storage: r.storageOf[id], seenAt: -1, runTier: noTier})
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

func (sc *lookupScratch) walk(x *Index, keys []uint64, out []Match, hasStorage bool, gen uint64) int {
	candOf, stamp, cands := sc.candOf, sc.stamp, sc.cands
	nlocs := uint32(len(candOf))
	b := 0
	for ; b < len(keys); b++ {
		k := fixKey(keys[b])
		sh := &x.shards[k>>shardShift]
	retry:
		t := sh.tab.Load()
		i := k & t.mask
		var hw uint64
		found := false
		for {
			kk := atomic.LoadUint64(&t.s[2*i])
			if kk == k {
				hw = atomic.LoadUint64(&t.s[2*i+1])
				found = atomic.LoadUint64(&t.s[2*i]) == k
				break
			}
			if kk == keyEmpty {
				break
			}
			i = (i + 1) & t.mask
		}
		if !found {
			break
		}
		hs := sc.hbuf[:0]
		if hw&overflowBit == 0 {
			hs = append(hs, uint32(hw), uint32(hw>>32))
		} else {
			ar := sh.ar.Load().a
			rec := uint32(hw)
			if int(rec) >= len(ar) {
				goto retry
			}
			n := atomic.LoadUint32(&ar[rec]) & hdrLenMask
			if int(rec)+1+int(n) > len(ar) {
				goto retry
			}
			for j := uint32(0); j < n; j++ {
				hs = append(hs, atomic.LoadUint32(&ar[rec+1+j]))
			}
			if atomic.LoadUint64(&t.s[2*i+1]) != hw || atomic.LoadUint64(&t.s[2*i]) != k {
				sc.hbuf = hs
				goto retry
			}
			sc.hbuf = hs
		}
		bb := int32(b)
		seen := sc.seen[:0]
		storageHit := false
		for _, h := range hs {
			if h == 0 {
				continue
			}
			loc := holderLoc(h)
			if loc >= nlocs {
				continue // registered after our snapshot
			}
			tiers := holderTiers(h)
			if ci := candOf[loc]; ci&^(1<<32-1) == gen {
				c := &cands[uint32(ci)]
				best := uint8(bits.TrailingZeros8(tiers))
				if c.seenAt != bb {
					if c.seenAt != bb-1 {
						continue // already dead
					}
					c.seenAt, c.t = bb, best
					seen = append(seen, int32(uint32(ci)))
				} else if best < c.t {
					c.t = best
				}
			} else if hasStorage && tiers&(1<<TierShared) != 0 {
				stamp[loc] = gen | uint64(uint32(bb))
				storageHit = true
			}
		}
		if storageHit {
			for _, ci := range sc.alive {
				c := &cands[ci]
				if c.storage == 0 || stamp[c.storage] != gen|uint64(uint32(bb)) {
					continue
				}
				if c.seenAt != bb {
					c.seenAt, c.t = bb, uint8(TierShared)
					seen = append(seen, ci)
				} else if uint8(TierShared) < c.t {
					c.t = uint8(TierShared)
				}
			}
		}
		sc.seen = seen
		for _, ci := range seen {
			c := &cands[ci]
			if c.t != c.runTier {
				if c.runTier != noTier {
					out[c.out].Blocks[c.runTier] += bb - c.runStart
				}
				c.runTier, c.runStart = c.t, bb
			}
		}
		if len(seen) < len(sc.alive) {
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
				break
			}
		}
	}
	for _, ci := range sc.alive {
		c := &cands[ci]
		if c.runTier != noTier {
			out[c.out].Blocks[c.runTier] += int32(b) - c.runStart
		}
	}
	return b
}
