package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testGate is a gate the test opens and closes.
type testGate struct{ saturated atomic.Bool }

func (g *testGate) Saturated() bool { return g.saturated.Load() }

type outcome struct {
	id  string
	err error
}

// enqueueAll starts one Acquire per request, in order, each after the
// previous one is waiting, and returns the channel where admitted IDs (in
// admission order) and rejections arrive. Admitted requests call Permit.Done
// at once.
func enqueueAll(t *testing.T, f *FlowControl, ctx context.Context, reqs []*Request) <-chan outcome {
	out := make(chan outcome, len(reqs))
	for _, r := range reqs {
		go func() {
			p, err := f.Acquire(ctx, r)
			out <- outcome{r.ID, err}
			p.Done()
		}()
		synctest.Wait()
	}
	return out
}

func drain(t *testing.T, f *FlowControl, g *testGate, out <-chan outcome, n int) []string {
	g.saturated.Store(false)
	f.Notify()
	var got []string
	for range n {
		o := <-out
		require.NoError(t, o.err)
		got = append(got, o.id)
	}
	return got
}

func TestFlowControlOrdering(t *testing.T) {
	tests := []struct {
		name     string
		ordering Ordering
		reqs     []*Request
		want     []string
	}{
		{
			"strict priority bands", FCFS,
			[]*Request{{ID: "lo1", Priority: 0}, {ID: "hi1", Priority: 5}, {ID: "lo2", Priority: 0}, {ID: "mid", Priority: 2}, {ID: "hi2", Priority: 5}},
			[]string{"hi1", "hi2", "mid", "lo1", "lo2"},
		},
		{
			"round robin across tenants", FCFS,
			[]*Request{{ID: "a1", Tenant: "a"}, {ID: "a2", Tenant: "a"}, {ID: "a3", Tenant: "a"}, {ID: "b1", Tenant: "b"}, {ID: "c1", Tenant: "c"}, {ID: "b2", Tenant: "b"}},
			[]string{"a1", "b1", "c1", "a2", "b2", "a3"},
		},
		{
			"earliest deadline within a tenant", EarliestDeadline,
			[]*Request{{ID: "late", Deadline: t0.Add(3 * time.Second)}, {ID: "ttl", TTL: 1500 * time.Millisecond}, {ID: "soon", Deadline: t0.Add(time.Second)}, {ID: "default"}},
			[]string{"soon", "ttl", "late", "default"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := &testGate{}
				g.saturated.Store(true)
				f, err := NewFlowControl(g, FlowConfig{Ordering: tt.ordering, Clock: func() time.Time { return t0 }})
				require.NoError(t, err)
				out := enqueueAll(t, f, context.Background(), tt.reqs)
				n, _ := f.Len()
				assert.Equal(t, len(tt.reqs), n)
				assert.Equal(t, tt.want, drain(t, f, g, out, len(tt.reqs)))
				n, b := f.Len()
				assert.Zero(t, n)
				assert.Zero(t, b)
			})
		})
	}
}

func TestFlowControlFastPathAndSheddable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &testGate{}
		f, err := NewFlowControl(g, FlowConfig{})
		require.NoError(t, err)
		p, err := f.Acquire(context.Background(), &Request{Priority: -1})
		require.NoError(t, err, "room: even sheddable passes")
		p.Done()
		g.saturated.Store(true)
		_, err = f.Acquire(context.Background(), &Request{Priority: -1})
		re, ok := errors.AsType[*RejectError](err)
		require.True(t, ok)
		assert.Equal(t, ReasonSaturated, re.Reason)
		assert.Equal(t, 429, HTTPStatus(err))
	})
}

func TestFlowControlRejections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &testGate{}
		g.saturated.Store(true)
		f, err := NewFlowControl(g, FlowConfig{MaxRequests: 2, MaxBytes: 100, DefaultTTL: 10 * time.Second})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		out := enqueueAll(t, f, ctx, []*Request{{ID: "a", Size: 60}, {ID: "b", Size: 30, TTL: 2 * time.Second}})
		// Count and byte bounds.
		_, err = f.Acquire(context.Background(), &Request{ID: "c", Size: 20})
		assert.Equal(t, ReasonQueueFull, DropReason(err), "bytes")
		n, b := f.Len()
		assert.Equal(t, 2, n)
		assert.Equal(t, int64(90), b)
		// TTL.
		time.Sleep(2 * time.Second)
		o := <-out
		assert.Equal(t, "b", o.id)
		assert.Equal(t, ReasonTTLExpired, DropReason(o.err))
		assert.Equal(t, 429, HTTPStatus(o.err))
		// Client goes away.
		cancel()
		o = <-out
		assert.Equal(t, "a", o.id)
		assert.Equal(t, ReasonCancelled, DropReason(o.err))
		assert.Equal(t, 499, HTTPStatus(o.err))
		n, b = f.Len()
		assert.Zero(t, n)
		assert.Zero(t, b)
		// Close rejects waiters and later arrivals with 503.
		out = enqueueAll(t, f, context.Background(), []*Request{{ID: "d"}})
		f.Close()
		o = <-out
		assert.Equal(t, ReasonShuttingDown, DropReason(o.err))
		assert.Equal(t, 503, HTTPStatus(o.err))
		_, err = f.Acquire(context.Background(), &Request{})
		assert.Equal(t, ReasonShuttingDown, DropReason(err))
		// A count bound.
		f2, err := NewFlowControl(g, FlowConfig{MaxRequests: 1})
		require.NoError(t, err)
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		enqueueAll(t, f2, ctx2, []*Request{{ID: "x"}})
		_, err = f2.Acquire(context.Background(), &Request{ID: "y"})
		assert.Equal(t, ReasonQueueFull, DropReason(err), "count")
		cancel2()
		synctest.Wait()
	})
}

// TestFlowControlByteBoundDoesNotOverflow: a Size near math.MaxInt64 must
// hit the byte bound, not wrap the queued total negative and get in (after
// which the bound no longer held for anyone).
func TestFlowControlByteBoundDoesNotOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &testGate{}
		g.saturated.Store(true)
		f, err := NewFlowControl(g, FlowConfig{MaxBytes: 100})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		out := enqueueAll(t, f, ctx, []*Request{{ID: "a", Size: 60}})
		_, err = f.Acquire(context.Background(), &Request{ID: "huge", Size: math.MaxInt64})
		assert.Equal(t, ReasonQueueFull, DropReason(err))
		n, b := f.Len()
		assert.Equal(t, 1, n)
		assert.Equal(t, int64(60), b)
		cancel()
		assert.Equal(t, ReasonCancelled, DropReason((<-out).err))
	})
}

// TestFlowControlReleasesOnCapacity models the gateway: a fleet with room for
// `capacity` requests, in-flight accounting on dispatch, and Notify when a
// request ends. Every queued request must get through, never more than
// capacity at once, with no polling.
func TestFlowControlReleasesOnCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const capacity, total = 3, 40
		var inflight atomic.Int64
		gate := GateFunc(func() bool { return inflight.Load() >= capacity })
		f, err := NewFlowControl(gate, FlowConfig{})
		require.NoError(t, err)
		// The burst arrives at a full fleet, so every request waits and is
		// released one at a time, each after the previous one's Done.
		// (Arrivals at an open gate with nobody waiting pass at once, and
		// concurrent ones may all pass before any is dispatched: see Acquire.)
		inflight.Store(capacity)
		var peak atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(50 * time.Millisecond) // the requests already running end
			inflight.Add(-capacity)
			f.Notify()
		})
		for i := range total {
			wg.Go(func() {
				p, err := f.Acquire(context.Background(), &Request{ID: fmt.Sprint(i), Tenant: fmt.Sprint(i % 4)})
				if !assert.NoError(t, err) {
					return
				}
				n := inflight.Add(1) // pool.Endpoint.Dispatch
				p.Done()
				for {
					cur := peak.Load()
					if n <= cur || peak.CompareAndSwap(cur, n) {
						break
					}
				}
				time.Sleep(time.Duration(1+i%5) * 100 * time.Millisecond) // serving
				inflight.Add(-1)                                          // Flight.End
				f.Notify()
			})
		}
		wg.Wait()
		assert.Equal(t, int64(capacity), peak.Load())
		n, _ := f.Len()
		assert.Zero(t, n)
	})
}

func TestFlowControlDispatchTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &testGate{}
		g.saturated.Store(true)
		f, err := NewFlowControl(g, FlowConfig{DispatchTimeout: 50 * time.Millisecond})
		require.NoError(t, err)
		got := make(chan string, 2)
		for _, id := range []string{"forgetful", "next"} {
			go func() {
				_, err := f.Acquire(context.Background(), &Request{ID: id})
				assert.NoError(t, err)
				got <- id // never calls Done
			}()
			synctest.Wait()
		}
		g.saturated.Store(false)
		f.Notify()
		assert.Equal(t, "forgetful", <-got)
		synctest.Wait()
		assert.Empty(t, got, "next waits for the slot")
		time.Sleep(50 * time.Millisecond)
		assert.Equal(t, "next", <-got)
	})
}

func TestNewFlowControlValidates(t *testing.T) {
	g := &testGate{}
	for _, c := range []FlowConfig{{MaxRequests: -1}, {MaxBytes: -1}, {DefaultTTL: -1}, {Ordering: 7}} {
		_, err := NewFlowControl(g, c)
		assert.Error(t, err, "%+v", c)
	}
	_, err := NewFlowControl(nil, FlowConfig{})
	assert.Error(t, err)
}

// TestFlowControlDefaultsAreLLMDs: FlowConfig documents its zero value as
// llm-d's flow-control defaults (llm-d-router flowcontrol/controller: per band
// maxRequests 5000, maxBytes 1,000,000,000 — decimal 1 GB, not 1 GiB —
// defaultRequestTTL 60 s). A request of 1 GB + 1 byte must hit the byte bound
// at once instead of waiting.
func TestFlowControlDefaultsAreLLMDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &testGate{}
		g.saturated.Store(true)
		f, err := NewFlowControl(g, FlowConfig{})
		require.NoError(t, err)
		assert.Equal(t, 5000, f.cfg.MaxRequests)
		assert.Equal(t, int64(1_000_000_000), f.cfg.MaxBytes)
		assert.Equal(t, 60*time.Second, f.cfg.DefaultTTL)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = f.Acquire(ctx, &Request{ID: "big", Size: 1_000_000_001})
		assert.Equal(t, ReasonQueueFull, DropReason(err))
		out := enqueueAll(t, f, ctx, []*Request{{ID: "fits", Size: 1_000_000_000}})
		n, b := f.Len()
		assert.Equal(t, 1, n)
		assert.Equal(t, int64(1_000_000_000), b)
		cancel()
		assert.Equal(t, ReasonCancelled, DropReason((<-out).err))
	})
}
