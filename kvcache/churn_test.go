package kvcache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tableCount is a brute-force recount of the block table: every holder of
// every live slot, by location id, with its tier bits.
type tableCount struct {
	entries, learned, blocks int64
	bits                     map[uint32]map[uint64]uint8 // location id → key → tier bits (no bitRef)
}

func recount(x *Index) tableCount {
	c := tableCount{bits: map[uint32]map[uint64]uint8{}}
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		t, ar := sh.tab.Load(), sh.ar.Load().a
		for s := 0; s < len(t.s); s += 2 {
			k, hw := t.s[s], t.s[s+1]
			if k == keyEmpty || k == keyTomb {
				continue
			}
			c.blocks++
			var hs []uint32
			if hw&overflowBit == 0 {
				hs = []uint32{uint32(hw), uint32(hw >> 32)}
			} else {
				r := uint32(hw)
				hs = ar[r+1 : r+1+ar[r]&hdrLenMask]
			}
			for _, h := range hs {
				if h == 0 {
					continue
				}
				tiers := holderTiers(h) &^ bitRef
				if c.bits[holderLoc(h)] == nil {
					c.bits[holderLoc(h)] = map[uint64]uint8{}
				}
				if _, dup := c.bits[holderLoc(h)][k]; dup {
					panic(fmt.Sprintf("key %#x held twice by location %d", k, holderLoc(h)))
				}
				c.bits[holderLoc(h)][k] = tiers
				c.entries++
				if tiers&bitLearned != 0 {
					c.learned++
				}
			}
		}
		sh.mu.Unlock()
	}
	return c
}

// checkConsistent compares every counter and every location's bookkeeping with
// a brute-force recount of the table.
func checkConsistent(t *testing.T, x *Index, msg string) tableCount {
	t.Helper()
	c := recount(x)
	s := x.Stats()
	require.Equal(t, c.entries, s.Entries, "%s: Stats.Entries against a recount", msg)
	require.Equal(t, c.learned, s.Learned, "%s: Stats.Learned against a recount", msg)
	require.Equal(t, c.blocks, s.Blocks, "%s: Stats.Blocks against a recount", msg)
	r := x.reg.Load()
	for id, l := range r.locs {
		if l == nil {
			if len(c.bits[uint32(id)]) != 0 { // not require.Empty: thousands of free ids per call
				t.Fatalf("%s: free id %d still holds blocks", msg, id)
			}
			continue
		}
		l.mu.Lock()
		held := c.bits[uint32(id)]
		assert.Equal(t, len(held), l.entries, "%s: %s entries", msg, l.name)
		inFIFO := map[uint64]bool{}
		for _, k := range l.fifo[l.head:] {
			inFIFO[k] = true
		}
		nl := 0
		for k, b := range held {
			assert.True(t, inFIFO[k], "%s: %s holds %#x outside its queue", msg, l.name, k)
			if b&bitLearned != 0 {
				nl++
				_, ok := l.learned[k]
				assert.True(t, ok, "%s: %s learned bit of %#x without a deadline", msg, l.name, k)
			}
		}
		assert.Equal(t, nl, len(l.learned), "%s: %s learned keys", msg, l.name)
		l.mu.Unlock()
	}
	return c
}

// TestChurnModel is a randomized differential test of everything the
// TestModelRandomized model leaves out: Unlearn, TTL expiry (Learn's and
// Expire's), SetLearnedCapacity, capacity eviction, and ids reused after
// the drop quarantine. After every step Stats and each location's
// bookkeeping must equal a brute-force recount of the table, and, where
// eviction took something, it took exactly what Stats.Evicted says.
func TestChurnModel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttl      time.Duration
		capacity int
	}{
		{"noTTL", 0, 1 << 20},
		{"ttl", 80 * time.Millisecond, 1 << 20},
		{"evict-noTTL", 0, 40},
		{"evict-ttl", 80 * time.Millisecond, 40},
	} {
		seeds, steps := uint64(2), 1000
		if raceEnabled || testing.Short() {
			seeds, steps = 1, 800
		}
		for seed := uint64(1); seed <= seeds; seed++ {
			t.Run(fmt.Sprint(tc.name, "/seed", seed), func(t *testing.T) {
				t.Parallel()
				runChurn(t, seed, steps, tc.ttl, tc.capacity)
			})
		}
	}
}

func runChurn(t *testing.T, seed uint64, steps int, ttl time.Duration, capacity int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	k := testKeyer{bs: 2}
	clk := &fakeClock{}
	clk.advance(time.Hour)
	lcap := 6
	if ttl > 0 {
		lcap = 1 << 10 // with a TTL the queue's order is the deadlines'; capacity pops are covered without one
	}
	x, err := New(k, WithLearnedTTL(ttl), WithLearnedCapacity(lcap), WithJumpSearch(0),
		WithCapacity(capacity), WithClock(clk.now))
	require.NoError(t, err)
	ref := newRef(k, lcap)
	lcaps := map[string]int{}                  // per-endpoint learned capacity (SetLearnedCapacity)
	deadlines := map[string]map[uint64]int64{} // with a TTL: endpoint → learned key → deadline

	eps := []string{"a", "b", "c", "d"}
	storages := []string{"s1", "s2"}
	d := newModelDriver(t, x, ref, k, rng, 3, 20, 3, 10)
	streamKeys := d.streamKeys
	randKeys := func() []uint64 {
		s := streamKeys[rng.IntN(len(streamKeys))]
		a := rng.IntN(len(s))
		return s[a : a+1+rng.IntN(len(s)-a)]
	}
	tiers := []Tier{TierGPU, TierCPU, TierDisk, TierShared}
	capOf := func(ep string) int {
		if c, ok := lcaps[ep]; ok {
			return c
		}
		return lcap
	}
	refExpire := func(ep string) {
		if ttl == 0 {
			return
		}
		now := clk.now().UnixNano()
		l := ref.locs[ep]
		for kk, d := range deadlines[ep] {
			if d <= now {
				delete(deadlines[ep], kk)
				if l != nil {
					ref.clearBits(l, kk, bitLearned)
				}
			}
		}
	}
	refLearn := func(ep string, keys []uint64) {
		if capOf(ep) == 0 {
			ref.loc(ep)
			return
		}
		if ttl == 0 {
			saved := ref.lcap
			ref.lcap = capOf(ep)
			ref.learn(ep, keys)
			ref.lcap = saved
			return
		}
		refExpire(ep)
		g := max(int64(ttl)/16, int64(time.Millisecond))
		now := clk.now().UnixNano()
		d := (now + int64(ttl) + g - 1) / g * g
		l := ref.loc(ep)
		if deadlines[ep] == nil {
			deadlines[ep] = map[uint64]int64{}
		}
		for _, kk := range keys {
			kk = fixKey(kk)
			ref.add(l, kk, bitLearned)
			l.learned[kk] = 0
			deadlines[ep][kk] = d
		}
	}
	// syncLearned forgets deadlines of learned entries the model dropped
	// otherwise (Unlearn, Clear, drop, eviction).
	syncLearned := func() {
		for ep, ds := range deadlines {
			l := ref.locs[ep]
			for kk := range ds {
				if l == nil || l.tiers[kk]&bitLearned == 0 {
					delete(ds, kk)
				}
			}
		}
	}
	dropCount := 0
	// churnIDs registers and drops throwaway endpoints until ids dropped
	// before are handed out again.
	churnIDs := func() {
		for range idQuarantine + 1 {
			dropCount++
			name := fmt.Sprint("tmp", dropCount)
			require.NoError(t, x.Add(name, TierGPU, streamKeys[0][:1]))
			require.NoError(t, x.DropEndpoint(name))
		}
	}
	evictedBefore := int64(0)

	for step := range steps {
		ep := eps[rng.IntN(len(eps))]
		tier := tiers[rng.IntN(len(tiers))]
		var op string
		switch p := rng.IntN(100); {
		case step == steps/2:
			op = "churn ids"
			churnIDs()
		case p < 18:
			op = "add"
			d.add(ep, tier, randKeys())
		case p < 26:
			op = "remove"
			d.remove(ep, tier, randKeys())
		case p < 40:
			op = "stored"
			d.stored(ep, tier)
		case p < 48:
			op = "removed"
			d.removed(ep, tier)
		case p < 62:
			op = "learn"
			keys := randKeys()
			require.NoError(t, x.Learn(ep, keys))
			refLearn(ep, keys)
		case p < 70:
			op = "unlearn"
			keys := randKeys()
			require.NoError(t, x.Unlearn(ep, keys))
			if l, ok := ref.locs[ep]; ok {
				for _, kk := range keys {
					ref.clearBits(l, kk, bitLearned)
				}
			}
		case p < 76:
			op = "tick"
			clk.advance(time.Duration(rng.IntN(40)) * time.Millisecond)
			if rng.IntN(2) == 0 {
				op = "expire"
				x.Expire()
				for _, e := range eps {
					refExpire(e)
				}
			}
		case p < 79:
			op = "setlcap"
			c := rng.IntN(8)
			if ttl > 0 {
				c = []int{0, lcap}[rng.IntN(2)] // see lcap above
			}
			require.NoError(t, x.SetLearnedCapacity(ep, c))
			lcaps[ep] = c
			l := ref.loc(ep)
			for len(l.learned) > c {
				oldest, best := uint64(0), int(^uint(0)>>1)
				for kk, s := range l.learned {
					if s < best {
						oldest, best = kk, s
					}
				}
				ref.clearBits(l, oldest, bitLearned)
			}
		case p < 83:
			op = "attach"
			d.attach(ep, storages[rng.IntN(len(storages))])
		case p < 85:
			op = "detach"
			d.detach(ep)
		case p < 88:
			op = "clear"
			d.clear(ep)
		case p < 91:
			op = "drop"
			d.drop(ep)
			delete(lcaps, ep)
		case p < 92:
			op = "dropstorage"
			d.dropStorage(storages[rng.IntN(len(storages))])
		case p < 93:
			op = "clearstorage"
			d.clearStorage(storages[rng.IntN(len(storages))])
		default:
			op = "lookup"
		}
		msg := fmt.Sprintf("step %d after %s on %s/%v", step, op, ep, tier)
		c := checkConsistent(t, x, msg)

		// Eviction: what the index holds is what the model holds, less whole
		// entries evicted; sync the model and account for them.
		r := x.reg.Load()
		lost := int64(0)
		for name, l := range ref.locs {
			var id uint32
			if st, ok := cutStorage(name); ok {
				id = r.storages[st]
			} else {
				id = r.endpoints[name]
			}
			held := map[uint64]uint8{}
			if id != 0 {
				held = c.bits[id]
			}
			for kk, b := range held {
				require.Equal(t, l.tiers[kk], b, "%s: %s bits of %#x", msg, name, kk)
			}
			for kk := range l.tiers {
				if _, ok := held[kk]; !ok {
					require.Less(t, capacity, 1<<20, "%s: %s lost %#x without eviction", msg, name, kk)
					ref.clearBits(l, kk, 0xff)
					lost++
				}
			}
		}
		// Locations the model forgot hold nothing in the index either.
		for name, id := range r.endpoints {
			if _, ok := ref.locs[name]; !ok {
				require.Empty(t, c.bits[id], "%s: %s holds blocks the model does not know", msg, name)
			}
		}
		ev := x.Stats().Evicted
		require.Equal(t, ev-evictedBefore, lost, "%s: evicted", msg)
		evictedBefore = ev
		require.LessOrEqual(t, c.entries, int64(capacity), "%s: over capacity", msg)
		syncLearned()

		keys := streamKeys[rng.IntN(len(streamKeys))]
		cands := slices.Clone(eps)
		rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		cands = cands[:1+rng.IntN(len(cands))]
		want := ref.lookup(keys, cands)
		got := make([]Match, len(cands))
		_, err := x.Lookup(keys, cands, got)
		require.NoError(t, err)
		require.Equal(t, want, got, "%s: lookup %v", msg, cands)
		for _, e := range eps {
			n := 0
			if l, ok := ref.locs[e]; ok {
				n = len(l.tiers)
			}
			require.Equal(t, n, x.Blocks(e), "%s: Blocks(%s)", msg, e)
		}
	}
	require.Positive(t, dropCount, "the id churn never ran")
	if capacity < 1<<20 {
		require.Positive(t, evictedBefore, "nothing was evicted")
	}
}

func cutStorage(name string) (string, bool) {
	const p = "storage/"
	if len(name) > len(p) && name[:len(p)] == p {
		return name[len(p):], true
	}
	return "", false
}

// TestConcurrentEvictionChurn: writers that evict each other (a small
// capacity), learn, unlearn, expire and drop endpoints, concurrently with
// lookups. Afterwards the counters must equal a recount of the table and the
// index must be within its capacity. Run with -race.
func TestConcurrentEvictionChurn(t *testing.T) {
	clk := &fakeClock{}
	const capacity = 300
	x, err := New(testKeyer{bs: 2}, WithCapacity(capacity), WithLearnedTTL(50*time.Millisecond),
		WithLearnedCapacity(40), WithClock(clk.now))
	require.NoError(t, err)
	ops := 1500
	if raceEnabled || testing.Short() {
		ops = 600
	}
	shared := make([]uint64, 96)
	for i := range shared {
		shared[i] = uint64(i + 1)
	}
	done := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		cands := []string{"w0", "w1", "w2", "w3"}
		out := make([]Match, len(cands))
		for {
			select {
			case <-done:
				readerDone <- nil
				return
			default:
			}
			if _, err := x.Lookup(shared, cands, out); err != nil {
				readerDone <- err
				return
			}
			for _, m := range out {
				if m.Total() > len(shared) {
					readerDone <- fmt.Errorf("matched %d of %d", m.Total(), len(shared))
					return
				}
			}
		}
	}()
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			ep := fmt.Sprint("w", w)
			var err error
			for i := 0; i < ops && err == nil; i++ {
				a := rng.IntN(len(shared))
				keys := shared[a : a+1+rng.IntN(len(shared)-a)]
				switch rng.IntN(10) {
				case 0, 1:
					err = x.Add(ep, Tier(rng.IntN(3)), keys)
				case 2:
					err = x.Remove(ep, Tier(rng.IntN(3)), keys)
				case 3, 4:
					err = x.Learn(ep, keys)
				case 5:
					err = x.Unlearn(ep, keys)
				case 6:
					fresh := make([]uint64, 16)
					for j := range fresh {
						fresh[j] = rng.Uint64()
					}
					err = x.Add(ep, TierCPU, fresh)
				case 7:
					clk.advance(time.Duration(rng.IntN(20)) * time.Millisecond)
					x.Expire()
				case 8:
					if rng.IntN(6) == 0 {
						err = x.DropEndpoint(ep)
					}
				case 9:
					err = x.Attach(ep, "store")
					if err == nil {
						err = x.Add(ep, TierShared, keys)
					}
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	close(done)
	require.NoError(t, <-readerDone)
	c := checkConsistent(t, x, "after the churn")
	assert.LessOrEqual(t, c.entries, int64(capacity))
	assert.Positive(t, x.Stats().Evicted)
}
