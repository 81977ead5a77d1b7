package vllmsim

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkPool verifies the block pool's invariants: reference counts match
// the sequences holding blocks, the free queue holds exactly the
// unreferenced blocks, and the cache map points at blocks holding its keys.
func checkPool(t *testing.T, e *Engine, live []*Seq) {
	t.Helper()
	p := e.pool
	refs := make([]int32, len(p.blocks))
	for _, s := range live {
		for _, id := range s.blocks {
			refs[id]++
		}
	}
	for _, s := range e.held {
		for _, id := range s.blocks {
			refs[id]++
		}
	}
	free := 0
	for id := p.head; id != nilBlock; id = p.blocks[id].next {
		require.Zero(t, p.blocks[id].ref, "block %d in the free queue is referenced", id)
		free++
	}
	require.Equal(t, p.numFree, free)
	for id := range p.blocks {
		require.Equal(t, refs[id], p.blocks[id].ref, "block %d", id)
		require.Equal(t, p.blocks[id].ref == 0, p.blocks[id].inFree, "block %d", id)
	}
	p.cached.rangeKeys(func(k uint64) bool {
		id, ok := p.cached.get(k)
		require.True(t, ok)
		require.True(t, p.blocks[id].hashed)
		require.Equal(t, k, p.blocks[id].key)
		return true
	})
	for k, ids := range p.dups {
		for _, id := range ids {
			require.Equal(t, k, p.blocks[id].key)
		}
		_, ok := p.cached.get(k)
		require.True(t, ok, "dup without primary")
	}
}

// TestEngineRandomOperations drives the engine with random adds, aborts,
// releases, resets and steps, checking the pool's invariants and that the
// KV-event stream reproduces the cache.
func TestEngineRandomOperations(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			cfg := Fast()
			cfg.NumBlocks = 40 + rng.IntN(60)
			cfg.MaxModelLen = 16 * cfg.NumBlocks
			cfg.MaxNumSeqs = 1 + rng.IntN(6)
			cfg.MaxBatchedTokens = 16 + rng.IntN(200)
			cfg.TransferPerBlock = time.Millisecond
			cfg.KVLease = 50 * time.Millisecond
			e, err := NewEngine(cfg, WithSeed(seed))
			require.NoError(t, err)
			prefixes := [][]uint32{}
			for i := range 4 {
				p := make([]uint32, 16*(1+rng.IntN(6)))
				for j := range p {
					p[j] = uint32(i*10000 + j)
				}
				prefixes = append(prefixes, p)
			}
			index := map[uint64]int{}
			var live []*Seq
			var now time.Duration
			n := 0
			for step := range 400 {
				switch op := rng.IntN(10); {
				case op < 3:
					p := append([]uint32(nil), prefixes[rng.IntN(len(prefixes))]...)
					for range rng.IntN(40) {
						p = append(p, uint32(rng.IntN(1000)))
					}
					n++
					req := &Request{ID: fmt.Sprint(n), Prompt: p, MaxTokens: 1 + rng.IntN(40), IgnoreEOS: rng.IntN(2) == 0,
						RemoteDecode: rng.IntN(8) == 0, RemotePrefill: rng.IntN(8) == 0}
					if s, err := e.Add(req, now); err == nil {
						live = append(live, s)
					}
				case op == 3 && len(live) > 0:
					e.Abort(live[rng.IntN(len(live))])
				case op == 4 && len(e.held) > 0:
					for id := range e.held {
						e.Release(id)
						break
					}
				case op == 5 && step%50 == 0:
					if ev, ok := e.ResetPrefixCache(); ok {
						assert.Equal(t, AllBlocksCleared, ev.Kind)
						clear(index)
					}
				default:
					d, ok := e.Schedule(now)
					if !ok {
						if w, ok := e.NextWake(); ok && w > now {
							now = w
						} else {
							now += time.Millisecond
						}
						continue
					}
					if rng.IntN(10) == 0 && len(live) > 0 {
						e.Abort(live[rng.IntN(len(live))]) // mid-step
					}
					now += d
					out := e.Complete(now)
					for _, ev := range out.Events {
						for _, k := range ev.Keys {
							switch ev.Kind {
							case BlockStored:
								index[k]++
							case BlockRemoved:
								index[k]--
								if index[k] == 0 {
									delete(index, k)
								}
							}
						}
					}
				}
				j := 0
				for _, s := range live {
					if s.finish == NotFinished {
						live[j] = s
						j++
					}
				}
				live = live[:j]
				checkPool(t, e, live)
			}
			// Drain: finish or abort everything, expire leases.
			for _, s := range live {
				e.Abort(s)
			}
			now += time.Hour
			e.expireLeases(now)
			checkPool(t, e, nil)
			assert.Equal(t, len(e.pool.blocks), e.pool.numFree)
			// Stored and removed events replay to exactly the cached keys.
			for k := range index {
				assert.True(t, e.Cached(k), "event index has %x, cache does not", k)
			}
			e.RangeCached(func(k uint64) bool {
				assert.Contains(t, index, k)
				return true
			})
		})
	}
}
