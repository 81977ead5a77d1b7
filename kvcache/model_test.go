package kvcache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refIndex is the reference model: plain maps, no concurrency, no cleverness.
type refIndex struct {
	keyer     testKeyer
	locs      map[string]*refLoc // endpoints by name, storages by "storage/"+name
	storageOf map[string]string
	lcap      int
	lseq      int
}

type refLoc struct {
	tiers   map[uint64]uint8
	engine  map[uint64]uint64 // engine hash → key
	learned map[uint64]int    // key → learn sequence number
	copies  map[dupKey]int    // (engine hash, tier) → stored copies beyond the first
}

func newRefLoc() *refLoc {
	return &refLoc{tiers: map[uint64]uint8{}, engine: map[uint64]uint64{}, learned: map[uint64]int{}, copies: map[dupKey]int{}}
}

func newRef(k testKeyer, lcap int) *refIndex {
	return &refIndex{keyer: k, locs: map[string]*refLoc{}, storageOf: map[string]string{}, lcap: lcap}
}

func (r *refIndex) loc(name string) *refLoc {
	l := r.locs[name]
	if l == nil {
		l = newRefLoc()
		r.locs[name] = l
	}
	return l
}

func (r *refIndex) target(ep string, tier Tier) (*refLoc, bool) {
	r.loc(ep)
	if tier != TierShared {
		return r.loc(ep), true
	}
	st, ok := r.storageOf[ep]
	if !ok {
		return nil, false
	}
	return r.loc("storage/" + st), true
}

func (r *refIndex) add(l *refLoc, k uint64, bits uint8) {
	k = fixKey(k)
	l.tiers[k] |= bits
}

// stored records one stored copy of engine hash h (key k) in tier: an extra
// copy when the tier already holds k under the same mapping.
func (r *refIndex) stored(l *refLoc, k uint64, tier Tier, h uint64) {
	k = fixKey(k)
	d := dupKey{h, tier}
	if old, ok := l.engine[h]; ok && old == k && l.tiers[k]&(1<<tier) != 0 {
		l.copies[d]++
	} else {
		delete(l.copies, d)
	}
	l.engine[h] = k
	l.tiers[k] |= 1 << tier
}

// removed removes one stored copy of engine hash h from tier.
func (r *refIndex) removed(l *refLoc, tier Tier, h uint64) {
	kk, ok := l.engine[h]
	if !ok {
		return
	}
	d := dupKey{h, tier}
	if n := l.copies[d]; n > 0 {
		if l.copies[d] = n - 1; n == 1 {
			delete(l.copies, d)
		}
		if l.tiers[kk]&(1<<tier) != 0 {
			return // another copy is still stored
		}
	}
	r.clearBits(l, kk, 1<<tier)
	if l.tiers[kk]&^bitLearned == 0 {
		delete(l.engine, h)
		for tr := range TierLearned {
			delete(l.copies, dupKey{h, tr})
		}
	}
}

func (r *refIndex) clearBits(l *refLoc, k uint64, bits uint8) {
	k = fixKey(k)
	t, ok := l.tiers[k]
	if !ok || t&bits == 0 {
		return
	}
	t &^= bits
	if bits&bitLearned != 0 {
		delete(l.learned, k)
	}
	if t == 0 {
		delete(l.tiers, k)
		return
	}
	l.tiers[k] = t
}

func (r *refIndex) learn(ep string, keys []uint64) {
	l := r.loc(ep)
	for i := len(keys) - 1; i >= 0; i-- { // tail first, as documented
		k := fixKey(keys[i])
		r.lseq++
		r.add(l, k, bitLearned)
		l.learned[k] = r.lseq
		for len(l.learned) > r.lcap {
			oldest, best := uint64(0), int(^uint(0)>>1)
			for kk, s := range l.learned {
				if s < best {
					oldest, best = kk, s
				}
			}
			r.clearBits(l, oldest, bitLearned)
		}
	}
}

func (r *refIndex) resolve(ep string, t *refLoc, h uint64) (uint64, bool) {
	if k, ok := t.engine[h]; ok {
		return k, true
	}
	if k, ok := r.loc(ep).engine[h]; ok {
		return k, true
	}
	if st, ok := r.storageOf[ep]; ok {
		k, ok := r.loc("storage/" + st).engine[h]
		return k, ok
	}
	return 0, false
}

func (r *refIndex) lookup(keys []uint64, eps []string) []Match {
	out := make([]Match, len(eps))
	for i, ep := range eps {
		l, ok := r.locs[ep]
		if !ok {
			continue
		}
		var st *refLoc
		if s, ok := r.storageOf[ep]; ok {
			st = r.locs["storage/"+s]
		}
		for _, k := range keys {
			k = fixKey(k)
			t := l.tiers[k]
			if st != nil && st.tiers[k] != 0 {
				t |= 1 << TierShared
			}
			if t == 0 {
				break
			}
			best := 0
			for t&(1<<best) == 0 {
				best++
			}
			out[i].Blocks[best]++
		}
	}
	return out
}

func (r *refIndex) entries() int64 {
	n := 0
	for _, l := range r.locs {
		n += len(l.tiers)
	}
	return int64(n)
}

func TestModelRandomized(t *testing.T) {
	seeds, steps := uint64(8), 2500
	if testing.Short() {
		seeds = 2
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, steps)
		})
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	k := testKeyer{bs: 2}
	const lcap = 6
	x, err := New(k, WithLearnedTTL(0), WithLearnedCapacity(lcap), WithJumpSearch(0))
	require.NoError(t, err)
	ref := newRef(k, lcap)

	eps := []string{"a", "b", "c", "d", "e", "f", "g"}
	storages := []string{"s1", "s2"}
	// A few token streams sharing prefixes, so that stored chains overlap.
	d := newModelDriver(t, x, ref, k, rng, 4, 24, 4, 12)
	streamKeys := d.streamKeys
	randKeys := func() []uint64 {
		s := streamKeys[rng.IntN(len(streamKeys))]
		a := rng.IntN(len(s))
		b := a + 1 + rng.IntN(len(s)-a)
		if rng.IntN(10) == 0 {
			return []uint64{uint64(rng.IntN(3))} // includes reserved key 0
		}
		return s[a:b]
	}
	tiers := []Tier{TierGPU, TierCPU, TierDisk, TierShared}

	for step := 0; step < steps; step++ {
		ep := eps[rng.IntN(len(eps))]
		tier := tiers[rng.IntN(len(tiers))]
		var op string
		switch p := rng.IntN(100); {
		case p < 25:
			op = "add"
			d.add(ep, tier, randKeys())
		case p < 40:
			op = "remove"
			d.remove(ep, tier, randKeys())
		case p < 55:
			op = "stored"
			d.stored(ep, tier)
		case p < 65:
			op = "removed"
			d.removed(ep, tier)
		case p < 75:
			op = "learn"
			keys := randKeys()
			require.NoError(t, x.Learn(ep, keys))
			ref.learn(ep, keys)
		case p < 79:
			op = "attach"
			d.attach(ep, storages[rng.IntN(len(storages))])
		case p < 81:
			op = "detach"
			d.detach(ep)
		case p < 84:
			op = "clear"
			d.clear(ep)
		case p < 86:
			op = "drop"
			d.drop(ep)
		case p < 87:
			op = "dropstorage"
			d.dropStorage(storages[rng.IntN(len(storages))])
		case p < 88:
			op = "clearstorage"
			d.clearStorage(storages[rng.IntN(len(storages))])
		default:
			op = "lookup"
		}
		// Check a lookup after every step.
		keys := streamKeys[rng.IntN(len(streamKeys))]
		cands := slices.Clone(eps)
		rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		cands = cands[:1+rng.IntN(len(cands))]
		want := ref.lookup(keys, cands)
		got := make([]Match, len(cands))
		longest, err := x.Lookup(keys, cands, got)
		require.NoError(t, err)
		require.Equal(t, want, got, "step %d after %s on %s/%v: candidates %v", step, op, ep, tier, cands)
		wantLongest := 0
		for _, m := range want {
			wantLongest = max(wantLongest, m.Total())
		}
		require.Equal(t, wantLongest, longest, "step %d longest", step)
		require.Equal(t, ref.entries(), x.Stats().Entries, "step %d entries after %s", step, op)
	}
	// Everything dropped: the index is empty again.
	for _, ep := range eps {
		require.NoError(t, x.DropEndpoint(ep))
	}
	for _, st := range storages {
		require.NoError(t, x.DropStorage(st))
	}
	s := x.Stats()
	assert.Zero(t, s.Entries)
	assert.Zero(t, s.Learned)
	assert.Zero(t, s.Blocks)
}

// FuzzModel runs a short randomized model check per fuzz input; the seed
// corpus runs as an ordinary test.
func FuzzModel(f *testing.F) {
	for _, s := range []uint64{101, 202, 303} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { runModel(t, seed, 300) })
}

// modelDriver is what runModel and runChurn share: token streams whose first
// blocks are the same (so stored chains overlap), their keys, the engine
// hashes a server would publish for them, and the index writes that both
// apply to the index and to the reference model, checking the index's
// answer against the model's.
type modelDriver struct {
	t          *testing.T
	x          *Index
	ref        *refIndex
	k          testKeyer
	rng        *rand.Rand
	streams    [][]uint32
	streamKeys [][]uint64
	shared     int // blocks every stream starts with
	blocks     int // blocks of a stream that events cover
}

// newModelDriver makes n streams of tokens tokens each; the first shared
// blocks are the same in all of them; events cover their first blocks blocks.
func newModelDriver(t *testing.T, x *Index, ref *refIndex, k testKeyer, rng *rand.Rand, n, tokens, shared, blocks int) *modelDriver {
	d := &modelDriver{t: t, x: x, ref: ref, k: k, rng: rng, shared: shared, blocks: blocks}
	for i := range n {
		s := make([]uint32, tokens)
		for j := range s {
			if j < shared*k.bs {
				s[j] = uint32(j)
			} else {
				s[j] = uint32(100*i + j)
			}
		}
		d.streams = append(d.streams, s)
		d.streamKeys = append(d.streamKeys, k.AppendKeysFrom(nil, k.Root(), s, "", ""))
	}
	return d
}

// eh is the engine hash of block j of stream i.
func (d *modelDriver) eh(i, j int) uint64 {
	if j < d.shared {
		return uint64(1000 + j)
	}
	return uint64(1000*(i+2) + j)
}

func (d *modelDriver) add(ep string, tier Tier, keys []uint64) {
	err := d.x.Add(ep, tier, keys)
	if l, ok := d.ref.target(ep, tier); ok {
		require.NoError(d.t, err)
		for _, kk := range keys {
			d.ref.add(l, kk, 1<<tier)
		}
	} else {
		require.ErrorIs(d.t, err, ErrNoStorage)
	}
}

func (d *modelDriver) remove(ep string, tier Tier, keys []uint64) {
	err := d.x.Remove(ep, tier, keys)
	if l, ok := d.ref.target(ep, tier); ok {
		require.NoError(d.t, err)
		for _, kk := range keys {
			d.ref.clearBits(l, kk, 1<<tier)
		}
	} else {
		require.ErrorIs(d.t, err, ErrNoStorage)
	}
}

// stored sends a BlockStored of a random run of a random stream (a quarter of
// them location-only).
func (d *modelDriver) stored(ep string, tier Tier) {
	t, rng, ref, k := d.t, d.rng, d.ref, d.k
	si := rng.IntN(len(d.streams))
	a := rng.IntN(d.blocks)
	n := 1 + rng.IntN(d.blocks-a)
	hashes := make([]uint64, n)
	for j := range hashes {
		hashes[j] = d.eh(si, a+j)
	}
	ev := &BlockStored{EngineHashes: hashes, Tokens: d.streams[si][k.bs*a : k.bs*(a+n)]}
	if a > 0 {
		ev.Parent, ev.HasParent = d.eh(si, a-1), true
	}
	locOnly := rng.IntN(4) == 0
	if locOnly {
		ev.Tokens = nil
	}
	err := d.x.Stored(ep, tier, ev)
	l, ok := ref.target(ep, tier)
	if !ok {
		require.ErrorIs(t, err, ErrNoStorage)
		return
	}
	if locOnly {
		require.NoError(t, err)
		for _, h := range hashes {
			if kk, ok := ref.resolve(ep, l, h); ok {
				ref.stored(l, kk, tier, h)
			}
		}
		return
	}
	parent := k.Root()
	if ev.HasParent {
		p, ok := ref.resolve(ep, l, ev.Parent)
		if !ok {
			require.ErrorIs(t, err, ErrUnknownParent)
			return
		}
		parent = p
	}
	require.NoError(t, err)
	for j, kk := range k.AppendKeysFrom(nil, parent, ev.Tokens, "", "") {
		ref.stored(l, kk, tier, hashes[j])
	}
}

// removed sends a BlockRemoved of two random blocks of a random stream.
func (d *modelDriver) removed(ep string, tier Tier) {
	si := d.rng.IntN(len(d.streams))
	hashes := []uint64{d.eh(si, d.rng.IntN(d.blocks)), d.eh(si, d.rng.IntN(d.blocks))}
	err := d.x.Removed(ep, tier, hashes)
	l, ok := d.ref.target(ep, tier)
	if !ok {
		require.ErrorIs(d.t, err, ErrNoStorage)
		return
	}
	require.NoError(d.t, err)
	for _, h := range hashes {
		d.ref.removed(l, tier, h)
	}
}

// attach, detach, clear, drop, dropStorage and clearStorage change
// membership in the index and the model alike.
func (d *modelDriver) attach(ep, st string) {
	require.NoError(d.t, d.x.Attach(ep, st))
	d.ref.storageOf[ep] = st
	d.ref.loc("storage/" + st)
	d.ref.loc(ep)
}

func (d *modelDriver) detach(ep string) {
	require.NoError(d.t, d.x.Detach(ep))
	delete(d.ref.storageOf, ep)
}

func (d *modelDriver) clear(ep string) {
	require.NoError(d.t, d.x.Clear(ep))
	if l, ok := d.ref.locs[ep]; ok {
		*l = *newRefLoc()
	}
}

func (d *modelDriver) drop(ep string) {
	require.NoError(d.t, d.x.DropEndpoint(ep))
	delete(d.ref.locs, ep)
	delete(d.ref.storageOf, ep)
}

func (d *modelDriver) dropStorage(st string) {
	require.NoError(d.t, d.x.DropStorage(st))
	delete(d.ref.locs, "storage/"+st)
	for e, s := range d.ref.storageOf {
		if s == st {
			delete(d.ref.storageOf, e)
		}
	}
}

func (d *modelDriver) clearStorage(st string) {
	require.NoError(d.t, d.x.ClearStorage(st))
	if _, ok := d.ref.locs["storage/"+st]; ok {
		delete(d.ref.locs, "storage/"+st)
		d.ref.loc("storage/" + st)
	}
}
