package pool_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/routekit/routekit/pool"
)

func ep(id string) pool.Endpoint {
	return pool.Endpoint{ID: id, Address: "127.0.0.1:8000", Models: []string{"m"}}
}

func ids(s *pool.Snapshot) []string {
	var out []string
	for _, e := range s.Endpoints() {
		out = append(out, e.ID)
	}
	return out
}

func TestStoreValidation(t *testing.T) {
	tests := []struct {
		name    string
		give    pool.Endpoint
		wantErr string
	}{
		{name: "ok", give: ep("a")},
		{name: "ipv6", give: pool.Endpoint{ID: "a", Address: "[::1]:8000"}},
		{name: "hostname", give: pool.Endpoint{ID: "a", Address: "vllm-0.vllm:8000", MetricsAddress: "vllm-0.vllm:9090"}},
		{name: "empty ID", give: pool.Endpoint{Address: "127.0.0.1:1"}, wantErr: "empty ID"},
		{name: "no port", give: pool.Endpoint{ID: "a", Address: "127.0.0.1"}, wantErr: "address"},
		{name: "bad port", give: pool.Endpoint{ID: "a", Address: "127.0.0.1:http"}, wantErr: "invalid port"},
		{name: "port zero", give: pool.Endpoint{ID: "a", Address: "127.0.0.1:0"}, wantErr: "invalid port"},
		{name: "no host", give: pool.Endpoint{ID: "a", Address: ":80"}, wantErr: "no host"},
		{name: "bad metrics address", give: pool.Endpoint{ID: "a", Address: "h:1", MetricsAddress: "h"}, wantErr: "metrics address"},
		{name: "bad role", give: pool.Endpoint{ID: "a", Address: "h:1", Role: 9}, wantErr: "invalid role"},
		{name: "negative rank", give: pool.Endpoint{ID: "a", Address: "h:1", DPRank: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool.New()
			err := p.Store(tt.give)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, 1, p.Snapshot().Len())
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "pool: ")
			assert.Equal(t, 0, p.Snapshot().Len())
		})
	}
}

func TestRole(t *testing.T) {
	tests := []struct {
		give string
		want pool.Role
	}{{"", pool.RoleBoth}, {"both", pool.RoleBoth}, {"prefill", pool.RolePrefill}, {"decode", pool.RoleDecode}}
	for _, tt := range tests {
		got, err := pool.ParseRole(tt.give)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
		var r pool.Role
		require.NoError(t, r.UnmarshalText([]byte(tt.give)))
		assert.Equal(t, tt.want, r)
	}
	_, err := pool.ParseRole("encode")
	assert.ErrorContains(t, err, `unknown role "encode"`)
	assert.Equal(t, "Role(7)", pool.Role(7).String())
	_, err = pool.Role(7).MarshalText()
	assert.Error(t, err)
	b, err := pool.RoleDecode.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "decode", string(b))
}

func TestStoreUpdateKeepsLiveState(t *testing.T) {
	p := pool.New()
	in := ep("a")
	in.Labels = labels.Set{"zone": "x"}
	require.NoError(t, p.Store(in))
	in.Labels["zone"] = "mutated by caller" // the pool holds a copy
	in.Models[0] = "mutated"

	s1 := p.Snapshot()
	a1, ok := s1.Load("a")
	require.True(t, ok)
	assert.Equal(t, "x", a1.Labels["zone"])
	assert.Equal(t, []string{"m"}, a1.Models)

	f := a1.Dispatch(100)
	a1.StoreMetrics(pool.Metrics{Waiting: 3, ScrapedAt: time.Unix(10, 0)})

	// Storing an identical description publishes nothing.
	require.NoError(t, p.Store(pool.Endpoint{ID: "a", Address: "127.0.0.1:8000", Models: []string{"m"}, Labels: labels.Set{"zone": "x"}}))
	assert.Same(t, s1, p.Snapshot())

	upd := ep("a")
	upd.Address = "127.0.0.1:9000"
	upd.Role = pool.RoleDecode
	require.NoError(t, p.Store(upd))
	s2 := p.Snapshot()
	assert.Greater(t, s2.Version(), s1.Version())
	a2, _ := s2.Load("a")
	assert.Equal(t, "127.0.0.1:9000", a2.Address)
	assert.Equal(t, pool.RoleDecode, a2.Role)
	assert.Equal(t, "127.0.0.1:8000", a1.Address, "old snapshot is immutable")
	assert.Equal(t, pool.Load{Requests: 1, UncachedTokens: 100}, a2.Load(), "update keeps in-flight load")
	assert.Equal(t, 3, a2.Metrics().Waiting, "update keeps metrics")
	f.End()
	assert.Equal(t, pool.Load{}, a2.Load())
}

func TestDeleteAndOnRemove(t *testing.T) {
	p := pool.New()
	for _, id := range []string{"c", "a", "b"} {
		require.NoError(t, p.Store(ep(id)))
	}
	assert.Equal(t, []string{"a", "b", "c"}, ids(p.Snapshot()))

	var got []string
	cancel := p.OnRemove(func(e *pool.Endpoint) { got = append(got, e.ID) })
	require.NoError(t, p.Delete("b"))
	err := p.Delete("b")
	require.ErrorIs(t, err, pool.ErrNotFound)
	assert.Contains(t, err.Error(), `"b"`)
	assert.Equal(t, []string{"a", "c"}, ids(p.Snapshot()))
	assert.Equal(t, []string{"b"}, got)

	// Re-adding an ID starts fresh live state.
	require.NoError(t, p.Store(ep("b")))
	b, _ := p.Load("b")
	assert.Equal(t, pool.Load{}, b.Load())

	cancel()
	require.NoError(t, p.Delete("a"))
	assert.Equal(t, []string{"b"}, got, "no calls after cancel")
}

func TestReplace(t *testing.T) {
	p := pool.New()
	require.NoError(t, p.Replace([]pool.Endpoint{ep("a"), ep("b"), ep("c")}))
	a, _ := p.Load("a")
	a.Dispatch(5)
	var removed []string
	p.OnRemove(func(e *pool.Endpoint) { removed = append(removed, e.ID) })

	v := p.Snapshot().Version()
	require.NoError(t, p.Replace([]pool.Endpoint{ep("c"), ep("b"), ep("a")}))
	assert.Equal(t, v, p.Snapshot().Version(), "same set in another order is no change")

	a2 := ep("a")
	a2.DPRank = 1
	require.NoError(t, p.Replace([]pool.Endpoint{a2, ep("d")}))
	assert.Equal(t, []string{"a", "d"}, ids(p.Snapshot()))
	assert.ElementsMatch(t, []string{"b", "c"}, removed)
	got, _ := p.Load("a")
	assert.Equal(t, 1, got.DPRank)
	assert.Equal(t, int64(1), got.Load().Requests, "kept live state")

	err := p.Replace([]pool.Endpoint{ep("x"), ep("x")})
	require.ErrorContains(t, err, `duplicate endpoint ID "x"`)
	err = p.Replace([]pool.Endpoint{ep("y"), {ID: "z"}})
	require.Error(t, err)
	assert.Equal(t, []string{"a", "d"}, ids(p.Snapshot()), "failed Replace changes nothing")

	require.NoError(t, p.Replace(nil))
	assert.Equal(t, 0, p.Snapshot().Len())
	assert.ElementsMatch(t, []string{"b", "c", "a", "d"}, removed)
}

func TestOnRemoveReentrantAndOrdered(t *testing.T) {
	p := pool.New()
	for i := range 5 {
		require.NoError(t, p.Store(ep(fmt.Sprint(i))))
	}
	var got []string
	p.OnRemove(func(e *pool.Endpoint) {
		got = append(got, e.ID)
		// A callback may call the pool: this must neither deadlock nor reorder.
		if e.ID == "0" {
			require.NoError(t, p.Delete("1"))
			require.NoError(t, p.Store(ep("late")))
		}
	})
	require.NoError(t, p.Delete("0"))
	require.NoError(t, p.Delete("2"))
	assert.Equal(t, []string{"0", "1", "2"}, got)
	assert.Equal(t, []string{"3", "4", "late"}, ids(p.Snapshot()))
}

func TestFlight(t *testing.T) {
	p := pool.New()
	require.NoError(t, p.Store(ep("a")))
	a, _ := p.Load("a")

	f1 := a.Dispatch(300)
	f2 := a.Dispatch(50)
	assert.Equal(t, pool.Load{Requests: 2, UncachedTokens: 350}, a.Load())
	f1.FirstToken()
	f1.FirstToken() // idempotent
	assert.Equal(t, pool.Load{Requests: 2, UncachedTokens: 50}, a.Load())
	f2.End() // ended before its first token (error, cancel): releases its tokens
	f2.End()
	f2.FirstToken() // after End: nothing
	assert.Equal(t, pool.Load{Requests: 1, UncachedTokens: 0}, a.Load())
	f1.End()
	assert.Equal(t, pool.Load{}, a.Load())

	f3 := a.Dispatch(-5) // negative counts as zero
	assert.Equal(t, pool.Load{Requests: 1}, a.Load())
	f3.End()

	var zero pool.Flight
	zero.FirstToken()
	zero.End()
	detached := ep("x")
	f := detached.Dispatch(10)
	f.End()
	assert.Equal(t, pool.Load{}, detached.Load())
	assert.True(t, detached.Stale())
	assert.True(t, detached.Metrics().ScrapedAt.IsZero())
	detached.StoreMetrics(pool.Metrics{Running: 1})
	assert.Equal(t, 0, detached.Metrics().Running)

	// A flight outliving its endpoint's removal is harmless.
	f4 := a.Dispatch(1)
	require.NoError(t, p.Delete("a"))
	f4.End()
	assert.Equal(t, pool.Load{}, a.Load())
}

func TestStatusBeforeFirstScrape(t *testing.T) {
	p := pool.New()
	require.NoError(t, p.Store(ep("a")))
	a, _ := p.Load("a")
	st := a.Status()
	assert.True(t, st.Stale)
	assert.ErrorIs(t, st.Err, pool.ErrNotScraped)
	a.StoreMetrics(pool.Metrics{Running: 4, ScrapedAt: time.Unix(5, 0)})
	st = a.Status()
	assert.False(t, st.Stale)
	require.NoError(t, st.Err)
	assert.Equal(t, time.Unix(5, 0), st.LastSuccess)
	assert.Equal(t, 4, a.Metrics().Running)
}

func TestSelect(t *testing.T) {
	p := pool.New()
	for i, role := range []string{"prefill", "decode", "decode"} {
		e := ep(fmt.Sprint(i))
		e.Labels = labels.Set{"llm-d.ai/role": role, "zone": fmt.Sprint("z", i%2)}
		require.NoError(t, p.Store(e))
	}
	sel, err := labels.Parse("llm-d.ai/role=decode,zone=z0")
	require.NoError(t, err)
	got := p.Snapshot().Select(sel, nil)
	require.Len(t, got, 1)
	assert.Equal(t, "2", got[0].ID)
	assert.Len(t, p.Snapshot().Select(labels.Everything(), nil), 3)
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	p := pool.New()
	for i := range 100 {
		require.NoError(t, p.Store(ep(fmt.Sprint(i))))
	}
	dst := make([]*pool.Endpoint, 0, 100)
	sel := labels.Everything()
	allocs := testing.AllocsPerRun(100, func() {
		s := p.Snapshot()
		var sum float64
		for _, e := range s.Endpoints() {
			m := e.Metrics()
			sum += float64(m.Waiting+int(e.Load().Requests)) + m.KVCacheUsage
			if e.Stale() {
				sum++
			}
		}
		f := s.Endpoints()[7].Dispatch(10)
		f.FirstToken()
		f.End()
		_ = s.Select(sel, dst[:0])
		_, _ = s.Load("42")
		_ = sum
	})
	assert.Zero(t, allocs)
}

// TestChurnConcurrentReaders runs membership churn (Store, Delete, Replace),
// in-flight accounting and metric updates against readers that iterate
// snapshots, under -race. Readers check each snapshot is sorted and
// self-consistent; the in-flight totals must return to zero.
func TestChurnConcurrentReaders(t *testing.T) {
	p := pool.New()
	var removed atomic.Int64
	p.OnRemove(func(*pool.Endpoint) { removed.Add(1) })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readerErr atomic.Value
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := p.Snapshot()
				eps := s.Endpoints()
				for i, e := range eps {
					if i > 0 && eps[i-1].ID >= e.ID {
						readerErr.Store(fmt.Errorf("reader %d: unsorted snapshot %q >= %q", r, eps[i-1].ID, e.ID))
					}
					if got, ok := s.Load(e.ID); !ok || got != e {
						readerErr.Store(fmt.Errorf("reader %d: Load(%q) inconsistent", r, e.ID))
					}
					_ = e.Metrics().Waiting
					_ = e.Status().Stale
					f := e.Dispatch(i)
					f.FirstToken()
					f.End()
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var stored []*pool.Endpoint
	for i := range 3000 {
		id := fmt.Sprint("ep-", rng.IntN(40))
		switch rng.IntN(10) {
		case 0, 1, 2, 3:
			e := ep(id)
			e.DPRank = rng.IntN(3)
			require.NoError(t, p.Store(e))
		case 4, 5:
			err := p.Delete(id)
			if err != nil {
				require.ErrorIs(t, err, pool.ErrNotFound)
			}
		case 6:
			var all []pool.Endpoint
			for j := range rng.IntN(40) {
				all = append(all, ep(fmt.Sprint("ep-", j)))
			}
			require.NoError(t, p.Replace(all))
		default:
			if e, ok := p.Load(id); ok {
				e.StoreMetrics(pool.Metrics{Waiting: i, ScrapedAt: time.Unix(int64(i), 0)})
				stored = append(stored, e)
			}
		}
	}
	close(stop)
	wg.Wait()
	if err, _ := readerErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Snapshot().Endpoints() {
		assert.Equal(t, pool.Load{}, e.Load(), e.ID)
	}
	assert.Positive(t, removed.Load())
	assert.NotEmpty(t, stored)
}

func TestEngineText(t *testing.T) {
	for _, e := range []pool.Engine{pool.EngineUnknown, pool.EngineVLLM, pool.EngineSGLang} {
		b, err := e.MarshalText()
		require.NoError(t, err)
		var got pool.Engine
		require.NoError(t, got.UnmarshalText(b))
		assert.Equal(t, e, got)
	}
	var e pool.Engine
	assert.ErrorContains(t, e.UnmarshalText([]byte("trtllm")), `unknown engine "trtllm"`)
}

// changed reports whether s's Changed channel is closed.
func changed(s *pool.Snapshot) bool {
	select {
	case <-s.Changed():
		return true
	default:
		return false
	}
}

// TestSnapshotChanged: every published change of membership or description
// closes the previous snapshot's Changed channel, after the new snapshot is
// visible; no-op writes, failed writes and live-state updates do not.
func TestSnapshotChanged(t *testing.T) {
	relabeled := ep("a")
	relabeled.Labels = map[string]string{"zone": "b"}
	tests := []struct {
		name    string
		op      func(p *pool.Pool) error
		wantErr bool
		changed bool
	}{
		{"store new", func(p *pool.Pool) error { return p.Store(ep("c")) }, false, true},
		{"store same", func(p *pool.Pool) error { return p.Store(ep("a")) }, false, false},
		{"store new description", func(p *pool.Pool) error { return p.Store(relabeled) }, false, true},
		{"store invalid", func(p *pool.Pool) error { return p.Store(pool.Endpoint{}) }, true, false},
		{"delete", func(p *pool.Pool) error { return p.Delete("a") }, false, true},
		{"delete missing", func(p *pool.Pool) error { return p.Delete("zz") }, true, false},
		{"replace same", func(p *pool.Pool) error { return p.Replace([]pool.Endpoint{ep("b"), ep("a")}) }, false, false},
		{"replace add", func(p *pool.Pool) error { return p.Replace([]pool.Endpoint{ep("a"), ep("b"), ep("c")}) }, false, true},
		{"replace remove", func(p *pool.Pool) error { return p.Replace([]pool.Endpoint{ep("b")}) }, false, true},
		{"replace duplicate", func(p *pool.Pool) error { return p.Replace([]pool.Endpoint{ep("b"), ep("b")}) }, true, false},
		{"live state", func(p *pool.Pool) error {
			e, _ := p.Load("a")
			e.StoreMetrics(pool.Metrics{Waiting: 3})
			f := e.Dispatch(10)
			f.End()
			return nil
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool.New()
			require.NoError(t, p.Replace([]pool.Endpoint{ep("a"), ep("b")}))
			before := p.Snapshot()
			require.False(t, changed(before))

			err := tt.op(p)
			if tt.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.changed, changed(before))
			after := p.Snapshot()
			if tt.changed {
				assert.NotSame(t, before, after)
				assert.Greater(t, after.Version(), before.Version())
			} else {
				assert.Same(t, before, after)
			}
			assert.False(t, changed(after), "the newest snapshot has not changed")
		})
	}
}

func TestSnapshotChangedOutsidePool(t *testing.T) {
	assert.Nil(t, (&pool.Snapshot{}).Changed(), "a snapshot not from a pool never reports a change")
}

// TestFollowMembership: a loop that waits on Changed and re-reads the pool
// sees every endpoint that was added (and no longer sees removed ones)
// while writers churn concurrently, under -race. Changes made while the
// follower is busy coalesce, but the newest membership is never missed.
func TestFollowMembership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := pool.New()
		ctx, cancel := context.WithCancel(t.Context())
		var (
			mu       sync.Mutex
			seen     = map[string]bool{} // every ID the follower ever saw
			last     *pool.Snapshot
			wakeups  int
			follower = make(chan struct{})
		)
		go func() {
			defer close(follower)
			snap := p.Snapshot()
			for {
				mu.Lock()
				for _, e := range snap.Endpoints() {
					seen[e.ID] = true
				}
				last = snap
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-snap.Changed():
					wakeups++
					snap = p.Snapshot()
				}
			}
		}()

		// One change, waited for: the follower sees it without any time passing.
		start := time.Now()
		require.NoError(t, p.Store(ep("first")))
		synctest.Wait()
		mu.Lock()
		assert.True(t, seen["first"])
		assert.Same(t, p.Snapshot(), last)
		mu.Unlock()
		assert.Zero(t, time.Since(start), "reacting took no (fake) time: nothing polls")

		// Concurrent writers.
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 200 {
					id := fmt.Sprintf("w%d-%d", w, i)
					assert.NoError(t, p.Store(ep(id)))
					if i%3 == 0 {
						assert.NoError(t, p.Delete(id))
					}
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		mu.Lock()
		assert.Same(t, p.Snapshot(), last, "the follower ends on the newest snapshot")
		for _, e := range p.Snapshot().Endpoints() {
			assert.True(t, seen[e.ID], e.ID)
		}
		assert.Equal(t, 4*133+1, p.Snapshot().Len()) // each writer keeps 133 of 200, plus "first"
		mu.Unlock()
		cancel()
		<-follower
		assert.Positive(t, wakeups)
	})
}
