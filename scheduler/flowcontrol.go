package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Gate tells flow control whether the fleet can take more work now. A
// [Saturation] detector over the pool's current snapshot is the usual one:
//
//	GateFunc(func() bool { return sat.Saturated(p.Snapshot().Endpoints()) })
//
// Implementations must be safe for concurrent use: FlowControl calls Saturated
// from every goroutine that acquires or releases a permit, never under its lock.
type Gate interface {
	Saturated() bool
}

// GateFunc adapts a function to [Gate]. The function must be safe for
// concurrent use.
type GateFunc func() bool

// Saturated calls f.
func (f GateFunc) Saturated() bool { return f() }

// Ordering is how flow control orders the requests of one tenant.
// It is a plain value, safe to copy and to read from several goroutines.
type Ordering uint8

const (
	// FCFS releases a tenant's requests in arrival order. It is the default.
	FCFS Ordering = iota
	// EarliestDeadline releases a tenant's requests by [Request.Deadline] (arrival
	// + TTL when unset), earliest first; ties in arrival order.
	EarliestDeadline
)

// FlowConfig is flow control's policy. The zero value means the defaults
// noted on each field, which are llm-d's flow-control defaults (its per-band
// maxRequests 5,000 and maxBytes 1 GB, defaultRequestTTL 60 s, FCFS ordering).
// One difference: llm-d applies the count and byte bounds to each priority band
// (with no global cap by default), routekit to all waiting requests together,
// so that the memory a queue can hold does not grow with the number of
// priorities in use. With a single band the two are the same. NewFlowControl
// copies it; a FlowConfig is a plain value with no concurrency concerns of its
// own.
type FlowConfig struct {
	// MaxRequests bounds the requests waiting at once, over all bands; 0 means
	// 5,000. A request that would exceed it is rejected with 429
	// ([ReasonQueueFull]).
	MaxRequests int
	// MaxBytes bounds the sum of waiting requests' [Request.Size], over all
	// bands; 0 means 1,000,000,000 (llm-d's decimal 1 GB, not 1 GiB).
	MaxBytes int64
	// DefaultTTL bounds the wait of a request whose TTL is zero; 0 means 60 s. On
	// expiry the request is rejected with 429 ([ReasonTTLExpired]).
	DefaultTTL time.Duration
	// Ordering orders each tenant's requests; the default is [FCFS].
	Ordering Ordering
	// DispatchTimeout bounds how long a released request may take to call
	// [Permit.Done] before the next one is considered anyway; 0 means 1 s.
	DispatchTimeout time.Duration
	// Clock returns the current time; nil means time.Now. Timers (TTL,
	// DispatchTimeout) use package time, so tests run them under testing/synctest.
	Clock func() time.Time
}

// FlowControl makes requests wait in the gateway while the fleet is saturated,
// instead of piling them onto model-server queues, and lets them through as
// capacity frees.
//
// Requests wait in priority bands ([Request.Priority], higher first; strict: a
// band is served only when every higher band is empty). Inside a band, tenants
// ([Request.Tenant]) take turns round robin, so one tenant's burst cannot starve
// another; a tenant's own requests leave in [FCFS] or [EarliestDeadline] order.
// Sheddable requests (Priority < 0) never wait: they are rejected with 429 when
// they cannot pass at once (the fleet is saturated, or others are already
// waiting ahead of them).
//
// Compared with llm-d's flow control: the tenant round robin is llm-d's
// round-robin-fairness-policy, not its default global-strict-fairness-policy
// (which has no fairness between flows: one tenant's burst delays everyone
// behind it in the band). Sheddable requests are refused instead of queued in a
// negative band, because a request that may be dropped anyway should not hold
// a queue slot and then time out. Ordering and deadlines match llm-d's
// fcfs-ordering-policy and edf-ordering-policy (deadline = arrival + TTL). There
// is no in-flight eviction (llm-d's optional enableEviction): a request, once
// dispatched, is the model server's.
//
// Release is driven by events, not by polling: an arrival, a [Permit.Done], or a
// [FlowControl.Notify] (which the gateway calls when capacity may have freed: a
// request ended or produced its first token, or new metrics arrived) lets the
// next request through if the [Gate] says the fleet is not saturated. Released
// requests pass one at a time: the next is considered only after the previous
// one's Permit.Done, that is after its in-flight accounting is recorded in the
// pool, so the gate always sees the load of every request it let through.
//
// Rejections are [*RejectError]s: 429 for back-pressure (queue full, TTL
// expired, sheddable while saturated), 499 when the client went away (its
// context was cancelled), 503 after [FlowControl.Close]. FlowControl starts no
// goroutine and is safe for concurrent use.
type FlowControl struct {
	gate Gate
	cfg  FlowConfig

	mu     sync.Mutex // guards the fields below
	bands  []*band    // by priority, highest first; only bands with live waiters
	queued int        // live waiting requests
	bytes  int64      // their total Size
	holder *waiter    // released, Permit.Done not yet called
	epoch  uint64     // releases so far: a gate answer older than the last release is stale
	seq    uint64
	closed bool
}

// NewFlowControl returns flow control in front of gate with policy cfg.
func NewFlowControl(gate Gate, cfg FlowConfig) (*FlowControl, error) {
	if gate == nil {
		return nil, errors.New("scheduler: flow control needs a gate")
	}
	if cfg.MaxRequests == 0 {
		cfg.MaxRequests = 5000
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1_000_000_000
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = 60 * time.Second
	}
	if cfg.DispatchTimeout == 0 {
		cfg.DispatchTimeout = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	switch {
	case cfg.MaxRequests < 0 || cfg.MaxBytes < 0:
		return nil, fmt.Errorf("scheduler: negative flow-control bound (%d requests, %d bytes)", cfg.MaxRequests, cfg.MaxBytes)
	case cfg.DefaultTTL < 0 || cfg.DispatchTimeout < 0:
		return nil, errors.New("scheduler: negative flow-control duration")
	case cfg.Ordering > EarliestDeadline:
		return nil, fmt.Errorf("scheduler: unknown ordering %d", cfg.Ordering)
	}
	return &FlowControl{gate: gate, cfg: cfg}, nil
}

// Permit is the right to dispatch one admitted request. Call Done exactly once,
// after the request's in-flight accounting is recorded (pool.Endpoint.Dispatch),
// or when the request is abandoned before that (for example scheduling failed).
// The zero Permit is valid and its Done does nothing. A Permit may be passed to
// and released from any goroutine; calling Done more than once is harmless.
type Permit struct {
	f *FlowControl
	w *waiter
}

// Done releases the dispatch slot the permit holds, if any, so the next waiting
// request can be considered.
func (p Permit) Done() {
	if p.w == nil {
		return
	}
	p.f.mu.Lock()
	if p.f.holder == p.w {
		p.f.holder = nil
		if p.w.timer != nil {
			p.w.timer.Stop()
		}
	}
	p.f.mu.Unlock()
	p.f.dispatch()
}

type waiterState uint8

const (
	waiting waiterState = iota
	released
	removed
)

type waiter struct {
	req      *Request
	size     int64
	seq      uint64
	deadline time.Time
	state    waiterState
	err      error         // set with state removed by Close
	ready    chan struct{} // closed on release or Close
	timer    *time.Timer   // DispatchTimeout while holder
	fl       *flow
}

// band is one priority's tenants.
type band struct {
	prio  int
	flows map[string]*flow
	ring  []*flow // tenants with live waiters, in turn order
	next  int     // ring position of the next tenant to serve
	live  int
}

// flow is one tenant's waiting requests.
type flow struct {
	tenant string
	b      *band
	q      waiterHeap
	live   int
}

type waiterHeap struct {
	ws  []*waiter
	edf bool
}

func (h *waiterHeap) Len() int { return len(h.ws) }
func (h *waiterHeap) Less(i, j int) bool {
	a, b := h.ws[i], h.ws[j]
	if h.edf && !a.deadline.Equal(b.deadline) {
		return a.deadline.Before(b.deadline)
	}
	return a.seq < b.seq
}
func (h *waiterHeap) Swap(i, j int) { h.ws[i], h.ws[j] = h.ws[j], h.ws[i] }
func (h *waiterHeap) Push(x any)    { h.ws = append(h.ws, x.(*waiter)) }
func (h *waiterHeap) Pop() any {
	w := h.ws[len(h.ws)-1]
	h.ws[len(h.ws)-1] = nil
	h.ws = h.ws[:len(h.ws)-1]
	return w
}

// Acquire admits req, waiting while the fleet is saturated. It returns a
// [Permit] when the request may be scheduled and dispatched, or a [*RejectError].
// Acquire returns as soon as ctx is done (the client went away); the request then
// leaves the queue.
//
// When nobody waits and the gate is open, Acquire returns at once, without
// serialising: arrivals that come together may all pass before the gate sees
// any of them dispatched, as with any gate that reads live load. Requests that
// waited are released one at a time, each after the previous one's
// [Permit.Done] (or DispatchTimeout), so the gate sees every release.
func (f *FlowControl) Acquire(ctx context.Context, req *Request) (Permit, error) {
	if err := ctx.Err(); err != nil {
		return Permit{}, reject(ReasonCancelled, statusClientClosed, err)
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return Permit{}, reject(ReasonShuttingDown, http.StatusServiceUnavailable, nil)
	}
	idle := f.queued == 0 && f.holder == nil
	f.mu.Unlock()
	if idle && !f.gate.Saturated() {
		return Permit{}, nil // fast path: nobody waits and there is room
	}
	if req.Priority < 0 {
		return Permit{}, reject(ReasonSaturated, http.StatusTooManyRequests, nil)
	}

	now := f.cfg.Clock()
	ttl := req.TTL
	if ttl <= 0 {
		ttl = f.cfg.DefaultTTL
	}
	w := &waiter{req: req, size: max(req.Size, 0), ready: make(chan struct{})}
	w.deadline = req.Deadline
	if w.deadline.IsZero() {
		w.deadline = now.Add(ttl)
	}
	f.mu.Lock()
	switch {
	case f.closed:
		f.mu.Unlock()
		return Permit{}, reject(ReasonShuttingDown, http.StatusServiceUnavailable, nil)
	case f.queued+1 > f.cfg.MaxRequests, w.size > f.cfg.MaxBytes-f.bytes: // not f.bytes+w.size: it can overflow
		f.mu.Unlock()
		return Permit{}, reject(ReasonQueueFull, http.StatusTooManyRequests,
			fmt.Errorf("%d requests and %d bytes waiting", f.queued, f.bytes))
	}
	f.enqueue(w)
	f.mu.Unlock()
	f.dispatch()

	t := time.NewTimer(ttl)
	defer t.Stop()
	select {
	case <-w.ready:
		if w.err != nil {
			return Permit{}, w.err
		}
		return Permit{f: f, w: w}, nil
	case <-ctx.Done():
		return Permit{}, f.abandon(w, reject(ReasonCancelled, statusClientClosed, ctx.Err()))
	case <-t.C:
		return Permit{}, f.abandon(w, reject(ReasonTTLExpired, http.StatusTooManyRequests,
			fmt.Errorf("waited %v", ttl)))
	}
}

// abandon takes w out of the queue, or gives back its dispatch slot if it was
// released meanwhile, and returns err (or Close's error).
func (f *FlowControl) abandon(w *waiter, err error) error {
	f.mu.Lock()
	switch w.state {
	case waiting:
		f.remove(w)
		f.mu.Unlock()
		return err
	case released:
		f.mu.Unlock()
		Permit{f: f, w: w}.Done()
		return err
	}
	f.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return err
}

// Notify tells flow control that capacity may have freed (a request ended or
// produced its first token, metrics were refreshed, endpoints were added). It
// releases the next waiting request if the gate allows. It never blocks.
func (f *FlowControl) Notify() { f.dispatch() }

// Len returns how many requests are waiting and their total size in bytes.
func (f *FlowControl) Len() (requests int, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queued, f.bytes
}

// Close rejects every waiting request and all later ones with 503
// ([ReasonShuttingDown]). Permits already given stay valid.
func (f *FlowControl) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	err := reject(ReasonShuttingDown, http.StatusServiceUnavailable, nil)
	for _, b := range f.bands {
		for _, fl := range b.ring {
			for _, w := range fl.q.ws {
				if w.state == waiting {
					w.state, w.err = removed, err
					close(w.ready)
				}
			}
		}
	}
	f.bands, f.queued, f.bytes = nil, 0, 0
}

// dispatch releases the next waiting request if nothing is being dispatched and
// the gate says there is room. The gate is called without holding mu.
func (f *FlowControl) dispatch() {
	f.mu.Lock()
	if f.closed || f.holder != nil || f.queued == 0 {
		f.mu.Unlock()
		return
	}
	epoch := f.epoch
	f.mu.Unlock()
	if f.gate.Saturated() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Another release since the gate was asked (and perhaps its Done too)
	// makes the answer stale: that release's Done asks again.
	if f.closed || f.holder != nil || f.queued == 0 || f.epoch != epoch {
		return
	}
	w := f.popNext()
	w.state = released
	f.holder = w
	f.epoch++
	w.timer = time.AfterFunc(f.cfg.DispatchTimeout, func() { Permit{f: f, w: w}.Done() })
	close(w.ready)
}

// enqueue adds w to its band and tenant. Caller holds mu.
func (f *FlowControl) enqueue(w *waiter) {
	prio := w.req.Priority
	i, found := slices.BinarySearchFunc(f.bands, prio, func(b *band, p int) int { return p - b.prio })
	if !found {
		f.bands = slices.Insert(f.bands, i, &band{prio: prio, flows: make(map[string]*flow)})
	}
	b := f.bands[i]
	fl, ok := b.flows[w.req.Tenant]
	if !ok {
		fl = &flow{tenant: w.req.Tenant, b: b, q: waiterHeap{edf: f.cfg.Ordering == EarliestDeadline}}
		b.flows[w.req.Tenant] = fl
		b.ring = append(b.ring, fl)
	}
	f.seq++
	w.seq, w.fl = f.seq, fl
	heap.Push(&fl.q, w)
	fl.live++
	b.live++
	f.queued++
	f.bytes += w.size
}

// remove takes a waiting w out (lazily: its heap entry is skipped later).
// Caller holds mu.
func (f *FlowControl) remove(w *waiter) {
	w.state = removed
	f.queued--
	f.bytes -= w.size
	fl := w.fl
	fl.live--
	fl.b.live--
	if fl.live == 0 {
		f.dropFlow(fl)
	} else if len(fl.q.ws) > 2*fl.live+16 { // compact dead entries
		ws := fl.q.ws[:0]
		for _, x := range fl.q.ws {
			if x.state == waiting {
				ws = append(ws, x)
			}
		}
		clear(fl.q.ws[len(ws):])
		fl.q.ws = ws
		heap.Init(&fl.q)
	}
}

// dropFlow removes an empty tenant from its band, and an empty band. Caller
// holds mu.
func (f *FlowControl) dropFlow(fl *flow) {
	b := fl.b
	delete(b.flows, fl.tenant)
	i := slices.Index(b.ring, fl)
	b.ring = slices.Delete(b.ring, i, i+1)
	if i < b.next {
		b.next--
	}
	if len(b.ring) > 0 {
		b.next %= len(b.ring)
	} else {
		b.next = 0
	}
	if b.live == 0 {
		j := slices.Index(f.bands, b)
		f.bands = slices.Delete(f.bands, j, j+1)
	}
}

// popNext removes and returns the next request: highest band, next tenant in
// turn, that tenant's first request. Caller holds mu; f.queued > 0.
func (f *FlowControl) popNext() *waiter {
	b := f.bands[0]
	fl := b.ring[b.next]
	var w *waiter
	for {
		w = heap.Pop(&fl.q).(*waiter)
		if w.state == waiting {
			break
		}
	}
	f.queued--
	f.bytes -= w.size
	fl.live--
	b.live--
	if fl.live == 0 {
		f.dropFlow(fl) // the ring shifts: next already points at the following tenant
	} else {
		b.next = (b.next + 1) % len(b.ring)
	}
	return w
}
