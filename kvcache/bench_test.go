package kvcache_test

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/prefix"
)

// naiveIndex is the baseline: one mutex around a map from block key to a map
// from endpoint to tier bits, and a lookup that checks every live candidate at
// every block. It is what a straightforward implementation looks like.
type naiveIndex struct {
	mu sync.Mutex // guards m
	m  map[uint64]map[string]uint8
}

func newNaive() *naiveIndex { return &naiveIndex{m: map[uint64]map[string]uint8{}} }

func (n *naiveIndex) Add(ep string, tier kvcache.Tier, keys []uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		h := n.m[k]
		if h == nil {
			h = map[string]uint8{}
			n.m[k] = h
		}
		h[ep] |= 1 << tier
	}
	return nil
}

func (n *naiveIndex) Remove(ep string, tier kvcache.Tier, keys []uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		h := n.m[k]
		if h == nil {
			continue
		}
		if b := h[ep] &^ (1 << tier); b != 0 {
			h[ep] = b
		} else {
			delete(h, ep)
			if len(h) == 0 {
				delete(n.m, k)
			}
		}
	}
	return nil
}

func (n *naiveIndex) Lookup(keys []uint64, eps []string, out []kvcache.Match) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(out)
	alive := make([]bool, len(eps))
	for i := range alive {
		alive[i] = true
	}
	nalive, b := len(eps), 0
	for ; b < len(keys) && nalive > 0; b++ {
		h := n.m[keys[b]]
		if h == nil {
			break
		}
		for i, ep := range eps {
			if !alive[i] {
				continue
			}
			t := h[ep]
			if t == 0 {
				alive[i] = false
				nalive--
				continue
			}
			out[i].Blocks[bits.TrailingZeros8(t)]++
		}
	}
	longest := 0
	for _, m := range out {
		longest = max(longest, m.Total())
	}
	return longest, nil
}

type index interface {
	Add(ep string, tier kvcache.Tier, keys []uint64) error
	Remove(ep string, tier kvcache.Tier, keys []uint64) error
	Lookup(keys []uint64, eps []string, out []kvcache.Match) (int, error)
}

var _ index = (*kvcache.Index)(nil)

func endpointNames(n int) []string {
	eps := make([]string, n)
	for i := range eps {
		eps[i] = fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250)
	}
	return eps
}

// fleet is the benchmark workload, seeded: a 128k-token query prompt (8192
// blocks) whose first 512 blocks are the 8k prompt; a 512-token system prompt
// (32 blocks) that every endpoint holds on GPU; the whole prompt on endpoint 0
// (GPU) and endpoint 1 (GPU, its last quarter on CPU); its first half on
// endpoints 2 and 3. The rest of the blocks are filler conversations of 64
// blocks, each held by one random endpoint.
type fleet struct {
	eps    []string
	prompt []uint64
}

func loadFleet(x index, blocks, endpoints int) fleet {
	rng := rand.New(rand.NewPCG(uint64(blocks), uint64(endpoints)))
	f := fleet{eps: endpointNames(endpoints), prompt: make([]uint64, 8192)}
	for i := range f.prompt {
		f.prompt[i] = rng.Uint64()
	}
	for _, ep := range f.eps {
		_ = x.Add(ep, kvcache.TierGPU, f.prompt[:32])
	}
	_ = x.Add(f.eps[0], kvcache.TierGPU, f.prompt)
	_ = x.Add(f.eps[1%endpoints], kvcache.TierGPU, f.prompt[:6144])
	_ = x.Add(f.eps[1%endpoints], kvcache.TierCPU, f.prompt[6144:])
	_ = x.Add(f.eps[2%endpoints], kvcache.TierGPU, f.prompt[:4096])
	_ = x.Add(f.eps[3%endpoints], kvcache.TierGPU, f.prompt[:4096])
	chain := make([]uint64, 64)
	for left := blocks - len(f.prompt); left > 0; left -= len(chain) {
		for i := range chain {
			chain[i] = rng.Uint64()
		}
		_ = x.Add(f.eps[rng.IntN(endpoints)], kvcache.TierGPU, chain[:min(len(chain), left)])
	}
	return f
}

// BenchmarkLookup measures one Lookup of the query prompt over all endpoints,
// for each index size, endpoint count and prompt length: the index with its
// default jump search, the same index walking every block (index-exact), and
// the naive baseline (at 1M blocks only: at 10M it needs several GiB).
//
//	go test -run '^$' -bench Lookup -benchtime 2s ./kvcache/
func BenchmarkLookup(b *testing.B) {
	for _, blocks := range []int{1_000_000, 10_000_000} {
		for _, endpoints := range []int{8, 100, 1000} {
			name := fmt.Sprintf("blocks=%dM/endpoints=%d", blocks/1_000_000, endpoints)
			b.Run(name, func(b *testing.B) {
				impls := []struct {
					name string
					new  func() index
				}{
					{"index", func() index { x, _ := kvcache.New(nil, kvcache.WithCapacity(4*blocks)); return x }},
					{"index-exact", nil}, // the index above, with WithJumpSearch(0)
				}
				if blocks <= 1_000_000 {
					impls = append(impls, struct {
						name string
						new  func() index
					}{"naive", func() index { return newNaive() }})
				}
				var x index
				var f fleet
				for _, impl := range impls {
					if impl.new != nil {
						x = nil
						runtime.GC()
						x = impl.new()
						f = loadFleet(x, blocks, endpoints)
					}
					if ix, ok := x.(*kvcache.Index); ok {
						stride := kvcache.DefaultJumpStride
						if impl.name == "index-exact" {
							stride = 0
						}
						kvcache.SetJumpStride(ix, stride)
					}
					out := make([]kvcache.Match, endpoints)
					for _, tokens := range []int{8192, 131072} {
						keys := f.prompt[:tokens/16]
						b.Run(fmt.Sprintf("tokens=%dk/%s", tokens/1024, impl.name), func(b *testing.B) {
							b.ReportAllocs()
							var n int
							cpu := startCPU()
							for b.Loop() {
								n, _ = x.Lookup(keys, f.eps, out)
							}
							cpu.stop(b)
							if n != len(keys) || out[0].Total() != len(keys) {
								b.Fatalf("lookup matched %d of %d blocks", n, len(keys))
							}
						})
					}
				}
				x = nil
				runtime.GC()
			})
		}
	}
}

// BenchmarkLookupParallel measures Lookup from all cores at once (1M
// blocks, 100 endpoints, 8k-token prompt, default jump search).
//
//	go test -run '^$' -bench LookupParallel -benchtime 1s ./kvcache/
func BenchmarkLookupParallel(b *testing.B) {
	x, _ := kvcache.New(nil)
	f := loadFleet(x, 1_000_000, 100)
	keys := f.prompt[:512]
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]kvcache.Match, len(f.eps))
		for pb.Next() {
			if n, _ := x.Lookup(keys, f.eps, out); n != len(keys) {
				b.Errorf("matched %d of %d", n, len(keys))
				return
			}
		}
	})
}

// BenchmarkLearn measures the speculative insert a scheduler makes after each
// routing decision: Learn of an 8k-token prompt's 512 keys for the chosen
// endpoint, which already holds the first half (1M-block index).
//
//	go test -run '^$' -bench Learn -benchtime 1s ./kvcache/
func BenchmarkLearn(b *testing.B) {
	x, _ := kvcache.New(nil)
	f := loadFleet(x, 1_000_000, 8)
	keys := f.prompt[:512]
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		_ = x.Learn(f.eps[2], keys)
	}
	cpu.stop(b)
}

// BenchmarkWrite measures block operations per second on one goroutine: 64
// endpoints each store and later remove 16-block batches (one event's worth)
// against an index of about 1M blocks, alone and with 4 goroutines looking up
// 8k-token prompts all the while.
//
//	go test -run '^$' -bench Write -benchtime 2s ./kvcache/
func BenchmarkWrite(b *testing.B) {
	const endpoints, batch, window = 64, 16, 1 << 16 // window: batches alive at once
	for _, readers := range []int{0, 4} {
		for _, impl := range []string{"index", "naive"} {
			b.Run(fmt.Sprintf("readers=%d/%s", readers, impl), func(b *testing.B) {
				var x index
				if impl == "index" {
					x, _ = kvcache.New(nil)
				} else {
					x = newNaive()
				}
				f := loadFleet(x, 100_000, endpoints)
				rng := rand.New(rand.NewPCG(1, 2))
				keys := make([]uint64, window*batch)
				for i := range keys {
					keys[i] = rng.Uint64()
				}
				for i := 0; i < window; i++ {
					_ = x.Add(f.eps[i%endpoints], kvcache.TierGPU, keys[i*batch:(i+1)*batch])
				}
				// Steady state: churn until each endpoint's key queue has
				// reached its working size (it holds stale keys of removed
				// blocks up to a bound and is then filtered), so that the
				// measurement does not depend on how long it runs. The naive
				// baseline has no such state.
				if impl == "index" {
					for i := 0; i < 5*window; i++ {
						ep := f.eps[i%endpoints]
						_ = x.Remove(ep, kvcache.TierGPU, keys[i%window*batch:(i%window+1)*batch])
						_ = x.Add(ep, kvcache.TierGPU, keys[i%window*batch:(i%window+1)*batch])
					}
				}
				var stop atomic.Bool
				var wg sync.WaitGroup
				for r := 0; r < readers; r++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						out := make([]kvcache.Match, endpoints)
						for !stop.Load() {
							_, _ = x.Lookup(f.prompt[:512], f.eps, out)
						}
					}()
				}
				b.ReportAllocs()
				i := 0
				cpu := startCPU()
				for b.Loop() {
					// Remove the oldest batch and store it again: 2×16 block ops.
					j := i % window
					ep := f.eps[j%endpoints]
					_ = x.Remove(ep, kvcache.TierGPU, keys[j*batch:(j+1)*batch])
					_ = x.Add(ep, kvcache.TierGPU, keys[j*batch:(j+1)*batch])
					i++
				}
				cpu.stop(b)
				b.ReportMetric(float64(2*batch*b.N)/b.Elapsed().Seconds()/1e6, "Mblockops/s")
				stop.Store(true)
				wg.Wait()
			})
		}
	}
}

// BenchmarkStored measures applying BlockStored events of 16 blocks × 16
// tokens with engine hashes, including our hashing (prefix.Hasher), the
// engine-hash mappings and the matching BlockRemoved.
//
//	go test -run '^$' -bench Stored -benchtime 2s ./kvcache/
func BenchmarkStored(b *testing.B) {
	h, _ := prefix.NewHasher("m")
	x, _ := kvcache.New(h)
	rng := rand.New(rand.NewPCG(3, 4))
	const window = 4096
	type ev struct {
		stored *kvcache.BlockStored
	}
	evs := make([]ev, window)
	for i := range evs {
		tokens := make([]uint32, 256)
		for j := range tokens {
			tokens[j] = rng.Uint32N(128000)
		}
		hashes := make([]uint64, 16)
		for j := range hashes {
			hashes[j] = rng.Uint64()
		}
		evs[i].stored = &kvcache.BlockStored{EngineHashes: hashes, Tokens: tokens}
	}
	eps := endpointNames(16)
	for i := range evs {
		_ = x.Stored(eps[i%len(eps)], kvcache.TierGPU, evs[i].stored)
	}
	b.ReportAllocs()
	i := 0
	cpu := startCPU()
	for b.Loop() {
		j := i % window
		e := evs[j].stored
		_ = x.Removed(eps[j%len(eps)], kvcache.TierGPU, e.EngineHashes)
		_ = x.Stored(eps[j%len(eps)], kvcache.TierGPU, e)
		i++
	}
	cpu.stop(b)
	b.ReportMetric(float64(2*16*b.N)/b.Elapsed().Seconds()/1e6, "Mblockops/s")
}

// BenchmarkMemory measures the heap per (block, endpoint) entry at 10M
// entries: blocks stored through KV events (with engine-hash mappings) over
// 100 endpoints, with each block held by one endpoint and by two.
//
//	go test -run '^$' -bench Memory -benchtime 1x ./kvcache/
func BenchmarkMemory(b *testing.B) {
	const entries = 10_000_000
	for _, holders := range []int{1, 2} {
		b.Run(fmt.Sprintf("holders=%d", holders), func(b *testing.B) {
			for b.Loop() {
				h, _ := prefix.NewHasher("m")
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				x, _ := kvcache.New(h, kvcache.WithCapacity(entries))
				eps := endpointNames(100)
				rng := rand.New(rand.NewPCG(5, 6))
				tokens := make([]uint32, 256)
				hashes := make([]uint64, 16)
				ev := &kvcache.BlockStored{EngineHashes: hashes, Tokens: tokens}
				for n := 0; n < entries; n += 16 * holders {
					for j := range tokens {
						tokens[j] = rng.Uint32()
					}
					for e := 0; e < holders; e++ {
						for j := range hashes {
							hashes[j] = rng.Uint64()
						}
						_ = x.Stored(eps[rng.IntN(len(eps))], kvcache.TierGPU, ev)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				st := x.Stats()
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Entries), "B/entry")
				b.ReportMetric(float64(st.Entries), "entries")
				runtime.KeepAlive(x)
			}
		})
	}
}
