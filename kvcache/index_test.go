package kvcache

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testKeyer is a small Keyer for tests: FNV-1a over parent, lora, salt and tokens.
type testKeyer struct{ bs int }

func (k testKeyer) BlockSize() int { return k.bs }
func (k testKeyer) Root() uint64   { return 0x1234 }
func (k testKeyer) AppendKeysFrom(dst []uint64, parent uint64, tokens []uint32, lora, salt string) []uint64 {
	for i := 0; i+k.bs <= len(tokens); i += k.bs {
		h := fnv.New64a()
		var b [8]byte
		for j := range b {
			b[j] = byte(parent >> (8 * j))
		}
		h.Write(b[:])
		h.Write([]byte(lora))
		if parent == k.Root() {
			h.Write([]byte(salt))
		}
		for _, t := range tokens[i : i+k.bs] {
			h.Write([]byte{byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24)})
		}
		parent = h.Sum64()
		dst = append(dst, parent)
	}
	return dst
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newIndex(t testing.TB, opts ...Option) *Index {
	t.Helper()
	x, err := New(testKeyer{bs: 4}, opts...)
	require.NoError(t, err)
	return x
}

func m(t ...int32) Match {
	var mm Match
	copy(mm.Blocks[:], t)
	return mm
}

func lookup(t testing.TB, x *Index, keys []uint64, eps ...string) ([]Match, int) {
	t.Helper()
	out := make([]Match, len(eps))
	n, err := x.Lookup(keys, eps, out)
	require.NoError(t, err)
	return out, n
}

func TestLookupSemantics(t *testing.T) {
	keys := []uint64{11, 12, 13, 14, 15, 16}
	type add struct {
		ep   string
		tier Tier
		keys []uint64
	}
	tests := []struct {
		name     string
		attach   map[string]string
		adds     []add
		learn    map[string][]uint64
		holes    bool // holdings not prefix-closed per tier: exact mode only
		eps      []string
		want     []Match
		wantLong int
	}{
		{
			name: "empty index",
			eps:  []string{"a"},
			want: []Match{{}},
		},
		{
			name:     "full match gpu",
			adds:     []add{{"a", TierGPU, keys}},
			eps:      []string{"a"},
			want:     []Match{m(6)},
			wantLong: 6,
		},
		{
			name:     "partial match stops at first missing block",
			holes:    true,
			adds:     []add{{"a", TierGPU, keys[:3]}, {"a", TierGPU, keys[4:]}},
			eps:      []string{"a"},
			want:     []Match{m(3)},
			wantLong: 3,
		},
		{
			name:     "gap at block 0 means no match",
			adds:     []add{{"a", TierGPU, keys[1:]}},
			eps:      []string{"a"},
			want:     []Match{{}},
			wantLong: 0,
		},
		{
			name: "per endpoint stop, others continue",
			adds: []add{
				{"a", TierGPU, keys[:2]},
				{"b", TierGPU, keys[:5]},
				{"c", TierGPU, keys[2:]},
			},
			eps:      []string{"a", "b", "c"},
			want:     []Match{m(2), m(5), {}},
			wantLong: 5,
		},
		{
			name: "tiers counted by best tier per block",
			adds: []add{
				{"a", TierGPU, keys[:2]},
				{"a", TierCPU, keys[:4]},
				{"a", TierDisk, keys[3:5]},
			},
			eps:      []string{"a"},
			want:     []Match{m(2, 2, 1)},
			wantLong: 5,
		},
		{
			name:     "tier change back and forth",
			holes:    true,
			adds:     []add{{"a", TierCPU, keys}, {"a", TierGPU, []uint64{11, 13, 15}}},
			eps:      []string{"a"},
			want:     []Match{m(3, 3)},
			wantLong: 6,
		},
		{
			name:     "shared storage counts for attached endpoints only",
			attach:   map[string]string{"a": "s", "b": "s", "c": "t"},
			adds:     []add{{"a", TierShared, keys[:4]}, {"b", TierGPU, keys[:1]}, {"c", TierGPU, keys[:1]}},
			eps:      []string{"a", "b", "c", "d"},
			want:     []Match{m(0, 0, 0, 4), m(1, 0, 0, 3), m(1), {}},
			wantLong: 4,
		},
		{
			name:     "shared storage fills a gap of the endpoint's own tiers",
			attach:   map[string]string{"a": "s"},
			adds:     []add{{"a", TierGPU, []uint64{11, 12, 14, 15}}, {"a", TierShared, []uint64{13}}},
			eps:      []string{"a"},
			want:     []Match{m(4, 0, 0, 1)},
			wantLong: 5,
		},
		{
			name:     "learned entries",
			adds:     []add{{"a", TierCPU, keys[:2]}},
			learn:    map[string][]uint64{"a": keys[:4], "b": keys[:1]},
			eps:      []string{"a", "b"},
			want:     []Match{m(0, 2, 0, 0, 2), m(0, 0, 0, 0, 1)},
			wantLong: 4,
		},
		{
			name:     "unknown and duplicate endpoints",
			adds:     []add{{"a", TierGPU, keys[:2]}},
			eps:      []string{"zz", "a", "a", ""},
			want:     []Match{{}, m(2), m(2), {}},
			wantLong: 2,
		},
		{
			name: "many holders overflow the inline slot",
			adds: []add{
				{"a", TierGPU, keys[:1]}, {"b", TierGPU, keys[:2]}, {"c", TierGPU, keys[:3]},
				{"d", TierCPU, keys[:4]}, {"e", TierGPU, keys[:5]},
			},
			eps:      []string{"e", "d", "c", "b", "a"},
			want:     []Match{m(5), m(0, 4), m(3), m(2), m(1)},
			wantLong: 5,
		},
	}
	for _, tt := range tests {
		for _, stride := range []int{0, 2, DefaultJumpStride} {
			if stride != 0 && tt.holes {
				continue
			}
			t.Run(fmt.Sprintf("%s/jump=%d", tt.name, stride), func(t *testing.T) {
				x := newIndex(t, WithJumpSearch(stride))
				for ep, st := range tt.attach {
					require.NoError(t, x.Attach(ep, st))
				}
				for _, a := range tt.adds {
					require.NoError(t, x.Add(a.ep, a.tier, a.keys))
				}
				for ep, ks := range tt.learn {
					require.NoError(t, x.Learn(ep, ks))
				}
				got, n := lookup(t, x, keys, tt.eps...)
				assert.Equal(t, tt.want, got)
				assert.Equal(t, tt.wantLong, n)
			})
		}
	}
}

func TestLookupErrors(t *testing.T) {
	x := newIndex(t)
	_, err := x.Lookup([]uint64{1}, []string{"a", "b"}, make([]Match, 1))
	assert.ErrorIs(t, err, ErrShortOutput)
	n, err := x.Lookup(nil, []string{"a"}, make([]Match, 1))
	require.NoError(t, err)
	assert.Zero(t, n)
	// Stale results are cleared.
	out := []Match{m(9, 9)}
	_, err = x.Lookup([]uint64{1}, []string{"a"}, out)
	require.NoError(t, err)
	assert.Equal(t, Match{}, out[0])
}

func TestReservedKeys(t *testing.T) {
	x := newIndex(t)
	require.NoError(t, x.Add("a", TierGPU, []uint64{0, ^uint64(0), 7}))
	got, _ := lookup(t, x, []uint64{0, ^uint64(0), 7}, "a")
	assert.Equal(t, m(3), got[0])
}

func TestWriteErrors(t *testing.T) {
	x := newIndex(t)
	assert.ErrorIs(t, x.Add("", TierGPU, []uint64{1}), ErrEmptyID)
	assert.ErrorIs(t, x.Add("a", TierLearned, []uint64{1}), ErrTier)
	assert.ErrorIs(t, x.Add("a", Tier(9), []uint64{1}), ErrTier)
	assert.ErrorIs(t, x.Add("a", TierShared, []uint64{1}), ErrNoStorage)
	assert.ErrorIs(t, x.Remove("a", TierShared, []uint64{1}), ErrNoStorage)
	assert.ErrorIs(t, x.Removed("a", TierShared, []uint64{1}), ErrNoStorage)
	assert.ErrorIs(t, x.Learn("", []uint64{1}), ErrEmptyID)
	assert.Error(t, x.SetLearnedCapacity("a", -1))
	assert.NoError(t, x.Clear("never-seen"))
	assert.NoError(t, x.DropEndpoint("never-seen"))
	assert.NoError(t, x.Detach("never-seen"))
	assert.Equal(t, int64(0), x.Stats().Entries)
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		give []Option
	}{
		{"capacity", []Option{WithCapacity(0)}},
		{"ttl", []Option{WithLearnedTTL(-time.Second)}},
		{"learned capacity", []Option{WithLearnedCapacity(-1)}},
		{"clock", []Option{WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := New(nil, tt.give...)
			assert.Error(t, err)
			assert.Nil(t, x)
		})
	}
}

func TestParseMedium(t *testing.T) {
	tests := []struct {
		give    string
		want    Tier
		wantErr bool
	}{
		{"", TierGPU, false}, {"GPU", TierGPU, false}, {"gpu", TierGPU, false},
		{"CPU", TierCPU, false}, {"cpu_pinned", TierCPU, false},
		{"DISK", TierDisk, false}, {"LMCACHE", TierShared, false},
		{"tape", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMedium(tt.give)
		if tt.wantErr {
			assert.ErrorIs(t, err, ErrMedium, tt.give)
			continue
		}
		require.NoError(t, err, tt.give)
		assert.Equal(t, tt.want, got, tt.give)
	}
	assert.Equal(t, "gpu", TierGPU.String())
	assert.Equal(t, "learned", TierLearned.String())
	assert.Equal(t, "Tier(9)", Tier(9).String())
}

func storedEv(hashes []uint64, parent uint64, hasParent bool, tokens []uint32) *BlockStored {
	return &BlockStored{EngineHashes: hashes, Parent: parent, HasParent: hasParent, Tokens: tokens}
}

func toks(n int, start uint32) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = start + uint32(i)
	}
	return t
}

func TestStoredRemoved(t *testing.T) {
	k := testKeyer{bs: 4}
	tokens := toks(16, 100)
	keys := k.AppendKeysFrom(nil, k.Root(), tokens, "", "")
	x := newIndex(t)

	// Two events: blocks 0-1 with no parent, then 2-3 chained on engine hash 0xb.
	require.NoError(t, x.Stored("a", TierGPU, storedEv([]uint64{0xa, 0xb}, 0, false, tokens[:8])))
	require.NoError(t, x.Stored("a", TierGPU, storedEv([]uint64{0xc, 0xd}, 0xb, true, tokens[8:])))
	got, _ := lookup(t, x, keys, "a")
	assert.Equal(t, m(4), got[0])

	// Unknown parent: nothing applied.
	err := x.Stored("a", TierGPU, storedEv([]uint64{0xe}, 0x999, true, toks(4, 1)))
	assert.ErrorIs(t, err, ErrUnknownParent)
	// Size mismatch.
	assert.ErrorIs(t, x.Stored("a", TierGPU, storedEv([]uint64{0xe}, 0, false, toks(5, 1))), ErrBlockSize)
	bad := storedEv([]uint64{0xe}, 0, false, toks(4, 1))
	bad.BlockSize = 16
	assert.ErrorIs(t, x.Stored("a", TierGPU, bad), ErrBlockSize)
	assert.Equal(t, int64(4), x.Stats().Entries)

	// Location-only CPU offload of blocks 0-2, one unknown hash.
	require.NoError(t, x.Stored("a", TierCPU, storedEv([]uint64{0xa, 0xb, 0xc, 0x777}, 0, false, nil)))
	assert.Equal(t, int64(1), x.Stats().UnresolvedHashes)
	// GPU evicts blocks 1 and 3.
	require.NoError(t, x.Removed("a", TierGPU, []uint64{0xb, 0xd, 0x888}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(2, 1), got[0]) // 0:gpu 1:cpu 2:gpu(+cpu) 3:gone
	got[0] = Match{}
	// CPU evicts block 1: the chain breaks at 1.
	require.NoError(t, x.Removed("a", TierCPU, []uint64{0xb}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(1), got[0])
	// Block 1's mapping is gone with its last tier.
	err = x.Stored("a", TierGPU, storedEv([]uint64{0xf}, 0xb, true, tokens[8:12]))
	assert.ErrorIs(t, err, ErrUnknownParent)

	// LoRA and salt flow into the keys.
	require.NoError(t, x.Stored("b", TierGPU, &BlockStored{EngineHashes: []uint64{1}, Tokens: tokens[:4], LoRA: "l", CacheSalt: "s", BlockSize: 4}))
	got, _ = lookup(t, x, k.AppendKeysFrom(nil, k.Root(), tokens[:4], "l", "s"), "b")
	assert.Equal(t, m(1), got[0])

	// AllBlocksCleared.
	require.NoError(t, x.Clear("a"))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, Match{}, got[0])
	assert.ErrorIs(t, x.Stored("a", TierGPU, storedEv([]uint64{0xf}, 0xa, true, tokens[4:8])), ErrUnknownParent)
	assert.Equal(t, int64(1), x.Stats().Entries)
}

func TestStoredShared(t *testing.T) {
	k := testKeyer{bs: 4}
	tokens := toks(12, 5)
	keys := k.AppendKeysFrom(nil, k.Root(), tokens, "", "")
	x := newIndex(t)
	require.NoError(t, x.Attach("a", "lmcache"))
	require.NoError(t, x.Attach("b", "lmcache"))
	// a computes block 0 on GPU; the connector saves blocks 0-2 to storage,
	// chaining its shared event on the GPU block's hash.
	require.NoError(t, x.Stored("a", TierGPU, storedEv([]uint64{1}, 0, false, tokens[:4])))
	require.NoError(t, x.Stored("a", TierShared, storedEv([]uint64{2, 3}, 1, true, tokens[4:])))
	require.NoError(t, x.Stored("a", TierShared, storedEv([]uint64{1}, 0, false, nil)))
	got, _ := lookup(t, x, keys, "a", "b", "c")
	assert.Equal(t, []Match{m(1, 0, 0, 2), m(0, 0, 0, 3), {}}, got)
	// b sees storage removals reported by a.
	require.NoError(t, x.Removed("a", TierShared, []uint64{3}))
	got, _ = lookup(t, x, keys, "b")
	assert.Equal(t, m(0, 0, 0, 2), got[0])
	// Clearing a does not clear the storage; ClearStorage does.
	require.NoError(t, x.Clear("a"))
	got, _ = lookup(t, x, keys, "a", "b")
	assert.Equal(t, []Match{m(0, 0, 0, 2), m(0, 0, 0, 2)}, got)
	require.NoError(t, x.Detach("b"))
	got, _ = lookup(t, x, keys, "b")
	assert.Equal(t, Match{}, got[0])
	require.NoError(t, x.DropStorage("lmcache"))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, Match{}, got[0])
	assert.Equal(t, int64(0), x.Stats().Entries)
	assert.ErrorIs(t, x.Add("a", TierShared, keys), ErrNoStorage)
}

func TestDropEndpoint(t *testing.T) {
	x := newIndex(t)
	keys := []uint64{1, 2, 3}
	require.NoError(t, x.Attach("a", "s"))
	require.NoError(t, x.Add("a", TierGPU, keys))
	require.NoError(t, x.Add("b", TierGPU, keys))
	require.NoError(t, x.Learn("a", []uint64{9}))
	require.NoError(t, x.DropEndpoint("a"))
	got, _ := lookup(t, x, keys, "a", "b")
	assert.Equal(t, []Match{{}, m(3)}, got)
	st := x.Stats()
	assert.Equal(t, int64(3), st.Entries)
	assert.Equal(t, int64(0), st.Learned)
	assert.Equal(t, 0, x.Blocks("a"))
	assert.Equal(t, 3, x.Blocks("b"))
	assert.Equal(t, 0, x.Blocks(""))
	assert.Equal(t, 1, st.Endpoints)
	assert.Equal(t, 1, st.Storages)
	// A new endpoint may reuse a's id: it must not inherit anything.
	require.NoError(t, x.Add("c", TierCPU, keys[:1]))
	got, _ = lookup(t, x, keys, "a", "b", "c")
	assert.Equal(t, []Match{{}, m(3), m(0, 1)}, got)
	// a comes back, unattached.
	require.NoError(t, x.Add("a", TierGPU, keys[:2]))
	assert.ErrorIs(t, x.Add("a", TierShared, keys), ErrNoStorage)
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(2), got[0])
}

func TestLearnedTTL(t *testing.T) {
	var c fakeClock
	c.ns.Store(1e18)
	x := newIndex(t, WithClock(c.now), WithLearnedTTL(2*time.Second))
	keys := []uint64{1, 2, 3}
	require.NoError(t, x.Add("a", TierGPU, keys[:1]))
	require.NoError(t, x.Learn("a", keys))
	got, _ := lookup(t, x, keys, "a")
	assert.Equal(t, m(1, 0, 0, 0, 2), got[0])
	assert.Equal(t, int64(3), x.Stats().Learned)

	c.advance(time.Second)
	require.NoError(t, x.Learn("a", keys[2:])) // refresh block 2 only
	c.advance(time.Second + 1)
	x.Expire()
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(1), got[0]) // block 1 expired; 2 alive but after a gap
	assert.Equal(t, int64(1), x.Stats().Learned)
	assert.Equal(t, int64(2), x.Stats().Entries)

	// Writes expire the writer's own entries without Expire.
	c.advance(2 * time.Second)
	require.NoError(t, x.Learn("a", nil))
	assert.Equal(t, int64(0), x.Stats().Learned)
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(1), got[0]) // the confirmed block stays
}

func TestLearnedCapacity(t *testing.T) {
	x := newIndex(t, WithLearnedTTL(0), WithLearnedCapacity(4))
	// Within one Learn the tail is the oldest: 4, 3, 2, 1.
	require.NoError(t, x.Learn("a", []uint64{1, 2, 3, 4}))
	require.NoError(t, x.Learn("a", []uint64{1})) // refresh 1
	require.NoError(t, x.Learn("a", []uint64{5, 6}))
	for _, tt := range []struct {
		key  uint64
		want int
	}{{1, 1}, {2, 1}, {3, 0}, {4, 0}, {5, 1}, {6, 1}} {
		got, _ := lookup(t, x, []uint64{tt.key}, "a")
		assert.Equal(t, tt.want, got[0].Total(), "key %d", tt.key)
	}
	assert.Equal(t, int64(4), x.Stats().Learned)

	require.NoError(t, x.SetLearnedCapacity("a", 1))
	assert.Equal(t, int64(1), x.Stats().Learned)
	require.NoError(t, x.SetLearnedCapacity("b", 0))
	require.NoError(t, x.Learn("b", []uint64{1}))
	got, _ := lookup(t, x, []uint64{1}, "b")
	assert.Equal(t, Match{}, got[0])
}

// TestUnlearn: withdrawing speculation clears only the learned entries of
// that endpoint, keeps what its events stored, and leaves the learned queue
// consistent (capacity and TTL expiry still work afterwards).
func TestUnlearn(t *testing.T) {
	for _, ttl := range []time.Duration{0, 2 * time.Second} {
		t.Run(fmt.Sprint("ttl=", ttl), func(t *testing.T) {
			var c fakeClock
			c.ns.Store(1e18)
			x := newIndex(t, WithClock(c.now), WithLearnedTTL(ttl), WithLearnedCapacity(3))
			keys := []uint64{1, 2, 3}
			require.NoError(t, x.Add("a", TierGPU, keys[:1]))
			require.NoError(t, x.Learn("a", keys))
			require.NoError(t, x.Learn("b", keys))
			require.NoError(t, x.Unlearn("a", keys))
			got, _ := lookup(t, x, keys, "a", "b")
			assert.Equal(t, []Match{m(1), m(0, 0, 0, 0, 3)}, got)
			st := x.Stats()
			assert.Equal(t, int64(3), st.Learned) // b's
			assert.Equal(t, int64(4), st.Entries)

			// No-ops: keys not learned, an unknown endpoint. An empty ID fails.
			require.NoError(t, x.Unlearn("a", []uint64{7}))
			require.NoError(t, x.Unlearn("nobody", keys))
			assert.ErrorIs(t, x.Unlearn("", keys), ErrEmptyID)

			// The queue is still right: a's capacity holds three new keys.
			require.NoError(t, x.Learn("a", []uint64{4, 5, 6}))
			got, _ = lookup(t, x, []uint64{4, 5, 6}, "a")
			assert.Equal(t, m(0, 0, 0, 0, 3), got[0])
			if ttl > 0 {
				c.advance(2*ttl + time.Second)
				x.Expire()
				assert.Equal(t, int64(0), x.Stats().Learned)
			}
		})
	}
}

// TestLearnAgainStaysBounded: learning the same keys over and over keeps
// the learned queue at a small multiple of the learned entries, with or
// without a TTL (without one, every Learn used to queue every key again).
func TestLearnAgainStaysBounded(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		step time.Duration // clock advance per Learn
	}{
		{"no TTL", 0, 0},
		{"TTL, same deadline", 2 * time.Second, 0},
		{"TTL, moving deadline", 2 * time.Second, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c fakeClock
			c.ns.Store(1e18)
			x := newIndex(t, WithClock(c.now), WithLearnedTTL(tt.ttl))
			keys := make([]uint64, 16)
			for i := range keys {
				keys[i] = uint64(100 + i)
			}
			l, err := x.loc("a", false, true)
			require.NoError(t, err)
			maxQueue, maxCap := 0, 0
			for range 20000 {
				require.NoError(t, x.Learn("a", keys))
				c.advance(tt.step)
				l.mu.Lock()
				maxQueue = max(maxQueue, len(l.lq)-l.lqHead)
				maxCap = max(maxCap, cap(l.lq))
				l.mu.Unlock()
			}
			assert.LessOrEqual(t, maxQueue, 2*len(keys)+66, "queued references")
			assert.LessOrEqual(t, maxCap, 4*(2*len(keys)+66), "queue memory")
			st := x.Stats()
			assert.Equal(t, int64(len(keys)), st.Learned)
			assert.Equal(t, int64(len(keys)), st.Entries)
			got, _ := lookup(t, x, keys, "a")
			assert.Equal(t, m(0, 0, 0, 0, int32(len(keys))), got[0])
			if tt.ttl > 0 {
				// Re-learning did not keep stale references alive past the TTL.
				c.advance(tt.ttl + tt.ttl/16)
				x.Expire()
				assert.Zero(t, x.Stats().Learned)
				l.mu.Lock()
				assert.Zero(t, len(l.lq)-l.lqHead)
				l.mu.Unlock()
			}
		})
	}
}

func TestCapacityEviction(t *testing.T) {
	x := newIndex(t, WithCapacity(256))
	// Endpoint a stores a long prefix and keeps learning its first 32 blocks
	// (touching them); b floods the index.
	hot := make([]uint64, 32)
	for i := range hot {
		hot[i] = uint64(1000 + i)
	}
	require.NoError(t, x.Add("a", TierGPU, hot))
	for i := 0; i < 50; i++ {
		require.NoError(t, x.Learn("a", hot))
		batch := make([]uint64, 16)
		for j := range batch {
			batch[j] = uint64(1e6 + i*16 + j)
		}
		require.NoError(t, x.Add("b", TierGPU, batch))
		require.NoError(t, x.Add("a", TierGPU, batch))
	}
	st := x.Stats()
	assert.LessOrEqual(t, st.Entries, int64(256))
	assert.Positive(t, st.Evicted)
	got, _ := lookup(t, x, hot, "a")
	assert.Equal(t, int32(32), got[0].Blocks[TierGPU])
}

func TestZeroAllocLookup(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	x := newIndex(t)
	keys := make([]uint64, 512)
	for i := range keys {
		keys[i] = uint64(i + 1)
	}
	eps := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	require.NoError(t, x.Attach("h", "s"))
	for i, ep := range eps {
		require.NoError(t, x.Add(ep, TierGPU, keys[:64*(i+1)]))
	}
	require.NoError(t, x.Add("h", TierShared, keys))
	out := make([]Match, len(eps))
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = x.Lookup(keys, eps, out)
	})
	assert.Zero(t, allocs)
	assert.Equal(t, 512, out[7].Total())
}

// TestJumpSearchMatchesExact: on prefix-closed holdings (what vLLM's eviction
// guarantees: in each tier an endpoint holds a prefix of a chain), jump search
// gives exactly the block-by-block result.
func TestJumpSearchMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for round := 0; round < 120; round++ {
		exact := newIndex(t, WithJumpSearch(0))
		stride := 2 + rng.IntN(70)
		jump := newIndex(t, WithJumpSearch(stride))
		n := 1 + rng.IntN(600)
		var log []string
		keys := make([]uint64, n)
		for i := range keys {
			keys[i] = rng.Uint64()
		}
		eps := []string{"a", "b", "c", "d", "e"}
		if rng.IntN(2) == 0 {
			// A shared storage for some endpoints, holding a prefix too.
			for _, ep := range eps[:2] {
				for _, x := range []*Index{exact, jump} {
					require.NoError(t, x.Attach(ep, "store"))
				}
			}
			m := rng.IntN(n + 1)
			for _, x := range []*Index{exact, jump} {
				require.NoError(t, x.Add("a", TierShared, keys[:m]))
			}
			log = append(log, fmt.Sprintf("store [0,%d)", m))
		}
		for _, ep := range eps[:1+rng.IntN(len(eps))] {
			// Each tier holds a prefix of the chain (vLLM evicts tail first).
			for _, tier := range []Tier{TierGPU, TierCPU, TierDisk} {
				if rng.IntN(3) == 0 {
					continue
				}
				m := rng.IntN(n + 1)
				for _, x := range []*Index{exact, jump} {
					require.NoError(t, x.Add(ep, tier, keys[:m]))
				}
				log = append(log, fmt.Sprintf("%s %v [0,%d)", ep, tier, m))
			}
			if rng.IntN(3) == 0 {
				m := rng.IntN(n + 1)
				for _, x := range []*Index{exact, jump} {
					require.NoError(t, x.Learn(ep, keys[:m]))
				}
				log = append(log, fmt.Sprintf("%s learn [0,%d)", ep, m))
			}
		}
		want, wn := lookup(t, exact, keys, eps...)
		got, gn := lookup(t, jump, keys, eps...)
		require.Equal(t, want, got, "round %d stride %d n %d ops %v", round, stride, n, log)
		require.Equal(t, wn, gn)
	}
}

func TestJumpSearchHoleOvercountBounded(t *testing.T) {
	x := newIndex(t, WithJumpSearch(8))
	keys := make([]uint64, 40)
	for i := range keys {
		keys[i] = uint64(100 + i)
	}
	require.NoError(t, x.Add("a", TierGPU, keys))
	require.NoError(t, x.Remove("a", TierGPU, keys[10:11])) // a hole between checkpoints
	got, _ := lookup(t, x, keys, "a")
	// Documented: the probes at 8 and 16 pass, so the hole (one block lacking,
	// within stride-1) is counted as held, and so is everything after it.
	assert.Equal(t, m(int32(len(keys))), got[0])
	SetJumpStride(x, 0)
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(10), got[0], "block by block stops at the hole")
	_, err := New(nil, WithJumpSearch(1))
	assert.Error(t, err)
}

// TestChurnStaysBounded: removing and re-adding blocks, or dropping blocks by
// key while their engine mappings linger, must not grow a location's queue or
// mappings without bound.
func TestChurnStaysBounded(t *testing.T) {
	x := newIndex(t)
	keys := make([]uint64, 100)
	for i := range keys {
		keys[i] = uint64(i + 10)
	}
	for round := 0; round < 200; round++ {
		require.NoError(t, x.Add("a", TierGPU, keys))
		require.NoError(t, x.Remove("a", TierGPU, keys[:50]))
	}
	require.NoError(t, x.Add("a", TierGPU, keys))
	l, err := x.loc("a", false, false)
	require.NoError(t, err)
	l.mu.Lock()
	assert.LessOrEqual(t, len(l.fifo)-l.head, 4*l.entries+1024+len(keys))
	assert.Equal(t, 100, l.entries)
	l.mu.Unlock()
	got, _ := lookup(t, x, keys, "a")
	assert.Equal(t, m(100), got[0])

	k := testKeyer{bs: 4}
	for round := 0; round < 2000; round++ {
		tokens := toks(8, uint32(round*8))
		ev := storedEv([]uint64{uint64(2*round + 1), uint64(2*round + 2)}, 0, false, tokens)
		require.NoError(t, x.Stored("b", TierGPU, ev))
		require.NoError(t, x.Stored("b", TierGPU, ev)) // a second copy: counted
		// Removed by key (say, capacity eviction): the mapping lingers.
		require.NoError(t, x.Remove("b", TierGPU, k.AppendKeysFrom(nil, k.Root(), tokens, "", "")))
	}
	l, err = x.loc("b", false, false)
	require.NoError(t, err)
	l.mu.Lock()
	assert.LessOrEqual(t, len(l.engine), 2*l.entries+1024+2)
	assert.LessOrEqual(t, len(l.dups), 4*l.entries+1024+2, "stale copy counts are dropped")
	assert.Zero(t, l.entries)
	l.mu.Unlock()
	assert.Equal(t, int64(100), x.Stats().Entries)
}

// TestEndpointDroppedMidLookup: a lookup that resolved its candidates before
// an endpoint was dropped (and another registered) walks a table without the
// dropped endpoint's blocks, and never sees the newcomer's as the dropped one's.
func TestEndpointDroppedMidLookup(t *testing.T) {
	x := newIndex(t)
	keys := []uint64{1, 2, 3, 4}
	require.NoError(t, x.Add("a", TierGPU, keys))
	require.NoError(t, x.Add("b", TierCPU, keys[:2]))
	before := x.reg.Load() // the snapshot an in-flight Lookup holds

	require.NoError(t, x.DropEndpoint("a"))
	require.NoError(t, x.Add("c", TierGPU, keys)) // must not reuse a's id yet

	out := make([]Match, 3)
	sc := new(lookupScratch)
	n := sc.run(x, before, keys, []string{"a", "b", "c"}, out)
	assert.Equal(t, []Match{{}, m(0, 2), {}}, out) // c unknown to the old snapshot
	assert.Equal(t, 2, n)

	got, _ := lookup(t, x, keys, "a", "b", "c")
	assert.Equal(t, []Match{{}, m(0, 2), m(4)}, got)
	assert.Error(t, x.Stored("a", TierGPU, nil))
}

func TestRunExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newIndex(t, WithLearnedTTL(2*time.Second))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- x.Run(ctx) }()
		require.NoError(t, x.Learn("a", []uint64{1, 2, 3}))
		assert.Equal(t, int64(3), x.Stats().Learned)
		time.Sleep(2*time.Second + 600*time.Millisecond) // > TTL + one Expire period
		synctest.Wait()
		assert.Equal(t, int64(0), x.Stats().Learned)
		assert.Equal(t, int64(0), x.Stats().Entries)
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

// TestStoredEngineBlockSpansSeveral: a server block of 8 tokens over a Keyer
// block of 4 maps each engine hash to two of our keys, added, offloaded,
// removed and chained on together.
func TestStoredEngineBlockSpansSeveral(t *testing.T) {
	k := testKeyer{bs: 4}
	tokens := toks(24, 500)
	keys := k.AppendKeysFrom(nil, k.Root(), tokens, "", "")
	require.Len(t, keys, 6)
	x := newIndex(t, WithJumpSearch(0)) // the evictions below leave holes
	ev := &BlockStored{EngineHashes: []uint64{0xa, 0xb}, Tokens: tokens[:16], BlockSize: 8}
	require.NoError(t, x.Stored("a", TierGPU, ev))
	got, _ := lookup(t, x, keys, "a")
	assert.Equal(t, m(4), got[0])

	// Chained on the second engine block: its last key is the parent.
	ev = &BlockStored{EngineHashes: []uint64{0xc}, Parent: 0xb, HasParent: true, Tokens: tokens[16:], BlockSize: 8}
	require.NoError(t, x.Stored("a", TierGPU, ev))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(6), got[0])

	// Offload 0xa to CPU (location only), evict 0xb and 0xa from GPU.
	require.NoError(t, x.Stored("a", TierCPU, &BlockStored{EngineHashes: []uint64{0xa}}))
	require.NoError(t, x.Removed("a", TierGPU, []uint64{0xb}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(2), got[0])
	require.NoError(t, x.Removed("a", TierGPU, []uint64{0xa}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(0, 2), got[0])
	require.NoError(t, x.Removed("a", TierCPU, []uint64{0xa}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, Match{}, got[0])
	err := x.Stored("a", TierGPU, &BlockStored{EngineHashes: []uint64{0xd}, Parent: 0xa, HasParent: true, Tokens: tokens[8:16], BlockSize: 8})
	assert.ErrorIs(t, err, ErrUnknownParent)

	// Not a multiple, or the wrong token count.
	assert.ErrorIs(t, x.Stored("a", TierGPU, &BlockStored{EngineHashes: []uint64{1}, Tokens: tokens[:6], BlockSize: 6}), ErrBlockSize)
	assert.ErrorIs(t, x.Stored("a", TierGPU, &BlockStored{EngineHashes: []uint64{1, 2}, Tokens: tokens[:8], BlockSize: 8}), ErrBlockSize)
	assert.Equal(t, int64(2), x.Stats().Entries) // 0xc's two blocks remain
}

// TestStoredDuplicateCopies: vLLM can hold one block hash in several physical
// blocks and reports each copy's store and removal; a block stays until its
// last copy is removed, per tier.
func TestStoredDuplicateCopies(t *testing.T) {
	k := testKeyer{bs: 4}
	tokens := toks(12, 7)
	keys := k.AppendKeysFrom(nil, k.Root(), tokens, "", "")
	const a, b, c = 0xa, 0xb, 0xc // engine hashes of blocks 0, 1, 2
	type step struct {
		stored  []uint64 // engine hashes stored (chained on their predecessor) ...
		tier    Tier     // ... or removed, in tier
		removed []uint64
		locOnly bool // a location-only store of `stored`
		op      func(x *Index)
	}
	st := func(tier Tier, hs ...uint64) step { return step{stored: hs, tier: tier} }
	rm := func(tier Tier, hs ...uint64) step { return step{removed: hs, tier: tier} }
	tests := []struct {
		name  string
		steps []step
		want  Match // lookup of blocks 0-2 on "e" afterwards
		child bool  // a store of block 2 chained on b then succeeds
	}{
		{"one copy stored and removed", []step{st(TierGPU, a, b), rm(TierGPU, b)}, m(1), false},
		{"two copies, one removed: kept", []step{st(TierGPU, a, b), st(TierGPU, b), rm(TierGPU, b)}, m(2), true},
		{"two copies, both removed: gone", []step{st(TierGPU, a, b), st(TierGPU, b), rm(TierGPU, b), rm(TierGPU, b)}, m(1), false},
		{"three copies in one event and two", []step{st(TierGPU, a, b), st(TierGPU, a, b), st(TierGPU, a, b), rm(TierGPU, b, b), rm(TierGPU, a, a)}, m(2), true},
		{"N stored, N removed, whole chain", []step{st(TierGPU, a, b), st(TierGPU, a, b), rm(TierGPU, b, a), rm(TierGPU, b, a)}, m(), false},
		{"counts are per tier", []step{st(TierGPU, a, b), st(TierGPU, b), {stored: []uint64{b}, tier: TierCPU, locOnly: true}, rm(TierCPU, b)}, m(2), true},
		{"a CPU copy keeps the block after GPU's last", []step{st(TierGPU, a, b), st(TierGPU, b), {stored: []uint64{b}, tier: TierCPU, locOnly: true},
			{stored: []uint64{b}, tier: TierCPU, locOnly: true}, rm(TierGPU, b, b), rm(TierCPU, b)}, m(1, 1), true},
		{"Remove by key makes the count stale", []step{st(TierGPU, a, b), st(TierGPU, b),
			{op: func(x *Index) { require.NoError(t, x.Remove("e", TierGPU, keys[1:2])) }}, st(TierGPU, b), rm(TierGPU, b)}, m(1), false},
		{"a stale count does not keep a removed block", []step{st(TierGPU, a, b), st(TierGPU, b),
			{op: func(x *Index) { require.NoError(t, x.Remove("e", TierGPU, keys[1:2])) }}, rm(TierGPU, b)}, m(1), false},
		{"Clear forgets the counts", []step{st(TierGPU, a, b), st(TierGPU, b),
			{op: func(x *Index) { require.NoError(t, x.Clear("e")) }}, st(TierGPU, a, b), rm(TierGPU, b)}, m(1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newIndex(t)
			for _, s := range tt.steps {
				switch {
				case s.op != nil:
					s.op(x)
				case s.removed != nil:
					require.NoError(t, x.Removed("e", s.tier, s.removed))
				case s.locOnly:
					require.NoError(t, x.Stored("e", s.tier, storedEv(s.stored, 0, false, nil)))
				default:
					var parent uint64
					if s.stored[0] != a {
						parent = s.stored[0] - 1
					}
					first := int(s.stored[0] - a)
					ev := storedEv(s.stored, parent, parent != 0, tokens[4*first:4*(first+len(s.stored))])
					require.NoError(t, x.Stored("e", s.tier, ev))
				}
			}
			got, _ := lookup(t, x, keys, "e")
			assert.Equal(t, tt.want, got[0])
			assert.Equal(t, int64(tt.want.Total()), x.Stats().Entries)
			err := x.Stored("e", TierGPU, storedEv([]uint64{c}, b, true, tokens[8:12]))
			if tt.child {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrUnknownParent)
			}
		})
	}
}

// TestStoredDuplicateSpans: copies are counted per engine block also when
// one engine block spans several of ours.
func TestStoredDuplicateSpans(t *testing.T) {
	k := testKeyer{bs: 4}
	tokens := toks(16, 900)
	keys := k.AppendKeysFrom(nil, k.Root(), tokens, "", "")
	x := newIndex(t, WithJumpSearch(0))
	ev := func() *BlockStored {
		return &BlockStored{EngineHashes: []uint64{0xa, 0xb}, Tokens: tokens, BlockSize: 8}
	}
	require.NoError(t, x.Stored("a", TierGPU, ev()))
	require.NoError(t, x.Stored("a", TierGPU, ev()))
	require.NoError(t, x.Stored("a", TierCPU, &BlockStored{EngineHashes: []uint64{0xa}}))
	require.NoError(t, x.Stored("a", TierCPU, &BlockStored{EngineHashes: []uint64{0xa}}))
	require.NoError(t, x.Removed("a", TierGPU, []uint64{0xb, 0xa}))
	require.NoError(t, x.Removed("a", TierCPU, []uint64{0xa}))
	got, _ := lookup(t, x, keys, "a")
	assert.Equal(t, m(4), got[0], "one copy of each left in GPU, one of 0xa in CPU")
	require.NoError(t, x.Removed("a", TierGPU, []uint64{0xb, 0xa}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, m(0, 2), got[0])
	require.NoError(t, x.Removed("a", TierCPU, []uint64{0xa}))
	got, _ = lookup(t, x, keys, "a")
	assert.Equal(t, Match{}, got[0])
	assert.Zero(t, x.Stats().Entries)
}

// TestStoredBlockSizeOverflow: an event block size whose product with the
// hash count wraps around to the token count is refused, not indexed past
// the keys (it panicked: 4 hashes × (2^62+4) wraps to 16 tokens).
func TestStoredBlockSizeOverflow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hashes int
		bs     int
	}{
		{"wraps positive", 4, 1<<62 + 4},
		{"wraps negative", 4, 4 - 1<<62},
		{"negative", 1, -16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIndex(t) // block size 4
			hashes := make([]uint64, tc.hashes)
			for i := range hashes {
				hashes[i] = uint64(i + 1)
			}
			ev := &BlockStored{EngineHashes: hashes, Tokens: make([]uint32, 16), BlockSize: tc.bs}
			require.ErrorIs(t, x.Stored("a", TierGPU, ev), ErrBlockSize)
			assert.Zero(t, x.Stats().Entries)
		})
	}
}

// TestRemoveAfterDropAndIDReuse: a Remove that found its location just before
// the location was dropped, and whose id went to another endpoint after the
// quarantine, must not clear the new endpoint's blocks (it did, and counted
// them off the dropped location: Stats.Entries 1 for 3 held).
func TestRemoveAfterDropAndIDReuse(t *testing.T) {
	x := newIndex(t)
	keys := []uint64{1, 2, 3}
	require.NoError(t, x.Add("a", TierGPU, keys))
	stale, err := x.loc("a", false, false) // what an in-flight Remove holds
	require.NoError(t, err)
	require.NoError(t, x.DropEndpoint("a"))
	for i := range idQuarantine {
		name := fmt.Sprint("tmp", i)
		require.NoError(t, x.Add(name, TierGPU, keys[:1]))
		require.NoError(t, x.DropEndpoint(name))
	}
	require.NoError(t, x.Add("b", TierGPU, keys))
	b, err := x.loc("b", false, false)
	require.NoError(t, err)
	require.Equal(t, stale.id, b.id, "b must reuse a's id for this test")

	x.remove(stale, TierGPU, keys)

	got, _ := lookup(t, x, keys, "b")
	assert.Equal(t, m(3), got[0])
	assert.Equal(t, 3, x.Blocks("b"))
	assert.Equal(t, int64(3), x.Stats().Entries)
}

// TestJumpSearchBisectProbes: once a probe fails, the bisection keeps that
// bound (it restarted a whole stride above each passing probe, about
// log²(stride)/2 probes instead of log2(stride)). A 1000-block match in a
// 2048-block chain at stride 64: 15 passing strides, the failing one, then 6
// probes of bisection.
func TestJumpSearchBisectProbes(t *testing.T) {
	for _, tc := range []struct {
		held, maxProbes int
	}{
		{1000, 15 + 1 + 6},
		{1024, 16 + 1 + 6},
		{1, 1 + 6},
		{2048, 32},
	} {
		t.Run(fmt.Sprint(tc.held), func(t *testing.T) {
			x := newIndex(t, WithJumpSearch(64))
			keys := make([]uint64, 2048)
			for i := range keys {
				keys[i] = uint64(1000 + i)
			}
			require.NoError(t, x.Add("a", TierGPU, keys[:tc.held]))
			out := make([]Match, 1)
			sc := new(lookupScratch)
			n := sc.run(x, x.reg.Load(), keys, []string{"a"}, out)
			assert.Equal(t, tc.held, n)
			assert.Equal(t, m(int32(tc.held)), out[0])
			assert.LessOrEqual(t, sc.probes, tc.maxProbes)
		})
	}
}

// TestRelearnAfterUnlearnSameDeadline: a key unlearned, then learned again
// within one deadline granule, is the newest learned entry, not the oldest
// (its first queue reference looked live again, so the capacity dropped it
// first), and repeating that does not grow the learned queue.
func TestRelearnAfterUnlearnSameDeadline(t *testing.T) {
	clk := &fakeClock{}
	x := newIndex(t, WithLearnedTTL(time.Second), WithLearnedCapacity(2), WithClock(clk.now))
	k1, k2, k3 := []uint64{11}, []uint64{12}, []uint64{13}
	require.NoError(t, x.Learn("a", k1))
	require.NoError(t, x.Unlearn("a", k1))
	require.NoError(t, x.Learn("a", k2))
	require.NoError(t, x.Learn("a", k1)) // newest now
	require.NoError(t, x.Learn("a", k3)) // over capacity: k2 is the oldest
	for _, tc := range []struct {
		key  []uint64
		want Match
	}{{k1, m(0, 0, 0, 0, 1)}, {k2, m()}, {k3, m(0, 0, 0, 0, 1)}} {
		got, _ := lookup(t, x, tc.key, "a")
		assert.Equal(t, tc.want, got[0], "key %v", tc.key)
	}

	require.NoError(t, x.SetLearnedCapacity("a", 100))
	for range 1000 {
		require.NoError(t, x.Learn("a", k1))
		require.NoError(t, x.Unlearn("a", k1))
	}
	require.NoError(t, x.Learn("a", k1))
	l, err := x.loc("a", false, false)
	require.NoError(t, err)
	l.mu.Lock()
	queued, learned := len(l.lq)-l.lqHead, len(l.learned)
	l.mu.Unlock()
	assert.LessOrEqual(t, queued, 2*learned+66, "documented bound on the learned queue")
	checkConsistent(t, x, "after relearning")
}
