package kvcache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentStress runs writers for many endpoints (stores, removals,
// learns, clears, drops, attachments) against readers. Endpoints "pin0" and
// "pin1" hold a fixed chain that no writer touches, while churn shares its
// blocks (forcing inline↔overflow moves and table growth): every lookup must
// see the pinned chain whole. Run with -race.
func TestConcurrentStress(t *testing.T) {
	x, err := New(testKeyer{bs: 2}, WithCapacity(1<<20), WithLearnedCapacity(64))
	require.NoError(t, err)
	pinned := make([]uint64, 64)
	for i := range pinned {
		pinned[i] = uint64(i + 1)
	}
	require.NoError(t, x.Add("pin0", TierGPU, pinned))
	require.NoError(t, x.Attach("pin1", "store"))
	require.NoError(t, x.Add("pin1", TierShared, pinned))

	const writers = 6
	ops := 1500
	if testing.Short() {
		ops = 300
	}
	var done atomic.Bool
	var wg, rg sync.WaitGroup
	var lookups atomic.Int64
	errs := make(chan error, 16)
	for r := 0; r < 3; r++ {
		rg.Add(1)
		go func(r int) {
			defer rg.Done()
			cands := []string{"w0", "pin0", "w1", "w2", "pin1", "w3", "w4", "w5", "nobody"}
			out := make([]Match, len(cands))
			for !done.Load() || lookups.Load() < 100 {
				n, err := x.Lookup(pinned, cands, out)
				lookups.Add(1)
				if err != nil {
					errs <- err
					return
				}
				if out[1] != (Match{Blocks: [NumTiers]int32{TierGPU: 64}}) || out[4].Blocks[TierShared]+out[4].Blocks[TierGPU] == 0 || n != 64 {
					errs <- fmt.Errorf("reader %d: pinned chain not whole: %+v longest %d", r, out, n)
					return
				}
				for i, m := range out {
					if m.Total() > len(pinned) {
						errs <- fmt.Errorf("reader %d: %s matched %d > %d", r, cands[i], m.Total(), len(pinned))
						return
					}
				}
				if out[8] != (Match{}) {
					errs <- fmt.Errorf("unknown endpoint matched: %+v", out[8])
					return
				}
			}
		}(r)
	}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			ep := fmt.Sprintf("w%d", w)
			for i := 0; i < ops; i++ {
				a := rng.IntN(len(pinned))
				b := a + 1 + rng.IntN(len(pinned)-a)
				keys := pinned[a:b]
				var err error
				switch rng.IntN(12) {
				case 0, 1, 2:
					err = x.Add(ep, Tier(rng.IntN(3)), keys)
				case 3, 4:
					err = x.Remove(ep, Tier(rng.IntN(3)), keys)
				case 5:
					err = x.Learn(ep, keys)
				case 6:
					tokens := make([]uint32, 2*(1+rng.IntN(8)))
					for j := range tokens {
						tokens[j] = uint32(rng.IntN(4))
					}
					hashes := make([]uint64, len(tokens)/2)
					for j := range hashes {
						hashes[j] = uint64(rng.IntN(64) + 1)
					}
					_ = x.Stored(ep, TierGPU, &BlockStored{EngineHashes: hashes, Tokens: tokens})
				case 7:
					err = x.Removed(ep, TierGPU, []uint64{uint64(rng.IntN(64) + 1)})
				case 8:
					if rng.IntN(4) == 0 {
						err = x.Clear(ep)
					}
				case 9:
					if rng.IntN(8) == 0 {
						err = x.DropEndpoint(ep)
					}
				case 10:
					err = x.Attach(ep, "store")
				case 11:
					// Fresh blocks to grow the tables.
					fresh := make([]uint64, 32)
					for j := range fresh {
						fresh[j] = rng.Uint64()
					}
					err = x.Add(ep, TierCPU, fresh)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	done.Store(true)
	rg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Positive(t, lookups.Load())

	// The bookkeeping agrees with itself after the storm: with the writers'
	// blocks still held, then with them dropped.
	checkConsistent(t, x, "after the storm")
	for w := 0; w < writers; w++ {
		require.NoError(t, x.DropEndpoint(fmt.Sprintf("w%d", w)))
	}
	s := x.Stats()
	assert.Equal(t, int64(128), s.Entries) // pin0's 64 + the store's 64
	assert.Equal(t, int64(64), s.Blocks)
	assert.Zero(t, s.Learned)
	checkConsistent(t, x, "after the drops")
}
