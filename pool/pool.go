package pool

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
)

// Pool is a set of endpoints, read through immutable snapshots. Writers (Store,
// Delete, Replace) build a new [Snapshot] and publish it atomically; readers call
// [Pool.Snapshot] and never take a lock. Live state (metrics, in-flight load) is
// kept per endpoint and survives updates of the endpoint's description.
//
// A Pool is safe for concurrent use. The zero Pool is not usable; call [New].
type Pool struct {
	snap atomic.Pointer[Snapshot]

	mu      sync.Mutex // guards writes of snap, subs, nextSub, pending, draining
	subs    []subscriber
	nextSub uint64
	// pending holds removals not yet delivered to subscribers; draining says a
	// goroutine is delivering them (outside mu, in order).
	pending  []*Endpoint
	draining bool
}

type subscriber struct {
	id uint64
	f  func(*Endpoint)
}

// New returns an empty pool.
func New() *Pool {
	p := &Pool{}
	p.snap.Store(&Snapshot{changed: make(chan struct{})})
	return p
}

// ErrNotFound is returned by [Pool.Delete] when no endpoint has the given ID.
// The pool is unchanged; a caller syncing membership can ignore it.
var ErrNotFound = errors.New("pool: endpoint not found")

// Snapshot returns the current membership. It is immutable; it never changes
// after it is returned, so a request can be routed against one consistent view.
func (p *Pool) Snapshot() *Snapshot { return p.snap.Load() }

// Load returns the current endpoint with the given ID.
func (p *Pool) Load(id string) (*Endpoint, bool) { return p.Snapshot().Load(id) }

// Store adds ep, or updates the endpoint with the same ID. An update keeps the
// endpoint's live state (metrics, scrape status, in-flight load) and publishes
// a new snapshot only if a field changed. The pool keeps a deep copy of ep.
func (p *Pool) Store(ep Endpoint) error {
	if err := ep.Validate(); err != nil {
		return err
	}
	c := ep.clone()
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.snap.Load()
	i, found := old.index(c.ID)
	if found {
		cur := old.eps[i]
		if sameDescription(cur, &c) {
			return nil
		}
		c.live = cur.live
		eps := slices.Clone(old.eps)
		eps[i] = &c
		p.publish(old, eps)
		return nil
	}
	c.live = newLive()
	eps := make([]*Endpoint, 0, len(old.eps)+1)
	eps = append(eps, old.eps[:i]...)
	eps = append(eps, &c)
	eps = append(eps, old.eps[i:]...)
	p.publish(old, eps)
	return nil
}

// Delete removes the endpoint with the given ID and notifies removal
// subscribers. It returns ErrNotFound (wrapped) if there is no such endpoint.
func (p *Pool) Delete(id string) error {
	p.mu.Lock()
	old := p.snap.Load()
	i, found := old.index(id)
	if !found {
		p.mu.Unlock()
		return fmt.Errorf("pool: delete %q: %w", id, ErrNotFound)
	}
	removed := old.eps[i]
	p.publish(old, slices.Delete(slices.Clone(old.eps), i, i+1))
	p.pending = append(p.pending, removed)
	p.unlockAndDeliver()
	return nil
}

// Replace makes eps the whole membership, as a discovery resync does:
// endpoints with IDs already present are updated (keeping their live state),
// new ones are added, and the others are removed and their removal notified.
// Nothing changes if any endpoint is invalid or two share an ID.
func (p *Pool) Replace(eps []Endpoint) error {
	next := make([]*Endpoint, 0, len(eps))
	for i := range eps {
		if err := eps[i].Validate(); err != nil {
			return err
		}
		c := eps[i].clone()
		next = append(next, &c)
	}
	slices.SortFunc(next, func(a, b *Endpoint) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(next); i++ {
		if next[i].ID == next[i-1].ID {
			return fmt.Errorf("pool: replace: duplicate endpoint ID %q", next[i].ID)
		}
	}
	p.mu.Lock()
	old := p.snap.Load()
	changed := len(old.eps) != len(next)
	for i, c := range next {
		if j, ok := old.index(c.ID); ok {
			cur := old.eps[j]
			if sameDescription(cur, c) {
				next[i] = cur // keep the published record
			} else {
				c.live = cur.live
				changed = true
			}
		} else {
			c.live = newLive()
			changed = true
		}
	}
	if !changed {
		p.mu.Unlock()
		return nil
	}
	for _, cur := range old.eps {
		if _, ok := slices.BinarySearchFunc(next, cur.ID, cmpID); !ok {
			p.pending = append(p.pending, cur)
		}
	}
	p.publish(old, next)
	p.unlockAndDeliver()
	return nil
}

// OnRemove registers f to be called with each endpoint removed from the pool
// (by Delete or Replace), for example to drop its entries from a KV-block
// index. It returns a function that cancels the subscription.
//
// Calls are made in removal order, one at a time, never while a pool lock is
// held, on the goroutine of some Delete or Replace call; f may itself call the
// pool. A Delete can return before f has seen its removal when another
// goroutine is delivering. After cancel returns, f is not called for removals
// that happen later. To follow additions as well, wait on
// [Snapshot.Changed].
func (p *Pool) OnRemove(f func(ep *Endpoint)) (cancel func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextSub++
	id := p.nextSub
	p.subs = append(slices.Clip(p.subs), subscriber{id: id, f: f})
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.subs = slices.DeleteFunc(slices.Clone(p.subs), func(s subscriber) bool { return s.id == id })
	}
}

// publish stores a new snapshot and then tells waiters on the old one's
// Changed channel; p.mu must be held.
func (p *Pool) publish(old *Snapshot, eps []*Endpoint) {
	s := &Snapshot{eps: eps, version: old.version + 1, changed: make(chan struct{})}
	if len(eps) > 0 {
		s.byID = make(map[string]int, len(eps))
		for i, e := range eps {
			s.byID[e.ID] = i
		}
	}
	p.snap.Store(s)
	close(old.changed)
}

// unlockAndDeliver releases p.mu and, unless another goroutine is already
// doing it, delivers pending removals to subscribers without holding the lock.
func (p *Pool) unlockAndDeliver() {
	if p.draining || len(p.pending) == 0 {
		p.mu.Unlock()
		return
	}
	p.draining = true
	for len(p.pending) > 0 {
		ep := p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
		subs := p.subs // replaced, never mutated in place
		p.mu.Unlock()
		for _, s := range subs {
			s.f(ep)
		}
		p.mu.Lock()
	}
	p.pending = nil
	p.draining = false
	p.mu.Unlock()
}

func cmpID(e *Endpoint, id string) int { return strings.Compare(e.ID, id) }

// Snapshot is an immutable view of a pool's membership, sorted by endpoint ID.
// It is safe for concurrent use. The endpoints' live state keeps changing; the
// set of endpoints and their descriptions do not.
type Snapshot struct {
	eps     []*Endpoint
	byID    map[string]int
	version uint64
	changed chan struct{} // closed when the next snapshot is published
}

// Endpoints returns the endpoints sorted by ID. The slice is shared: do not
// modify it (use slices.Clone to filter in place).
func (s *Snapshot) Endpoints() []*Endpoint { return s.eps }

// Len returns the number of endpoints.
func (s *Snapshot) Len() int { return len(s.eps) }

// Version increases with every published change of membership or description.
func (s *Snapshot) Version() uint64 { return s.version }

// Changed returns a channel that is closed once the pool has published a
// newer snapshot (an endpoint was added, removed or its description
// updated; live state such as metrics and load does not count). By the time
// a receive from it succeeds, [Pool.Snapshot] returns a newer snapshot.
//
// It is how a background loop follows membership without polling and
// without a callback: read a snapshot, act on it, then wait on its Changed
// channel and read the pool again. Changes that happen while the loop is
// busy are never missed; several of them coalesce into one wake-up, and the
// loop sees the newest membership. To learn which endpoints were added or
// removed, compare the two snapshots (for example with Load). Waiting costs
// the pool one channel per published snapshot: there is no subscription
// to cancel, no callback and no goroutine.
//
// A Snapshot not obtained from a Pool returns nil, which blocks forever.
func (s *Snapshot) Changed() <-chan struct{} { return s.changed }

// Load returns the endpoint with the given ID.
func (s *Snapshot) Load(id string) (*Endpoint, bool) {
	i, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return s.eps[i], true
}

// index returns the position of id, or where it would be inserted.
func (s *Snapshot) index(id string) (int, bool) {
	if i, ok := s.byID[id]; ok {
		return i, true
	}
	return slices.BinarySearchFunc(s.eps, id, cmpID)
}

// Select appends to dst the endpoints whose labels match sel, and returns it.
// It does not allocate when dst has room.
func (s *Snapshot) Select(sel labels.Selector, dst []*Endpoint) []*Endpoint {
	for _, e := range s.eps {
		if sel.Matches(e.Labels) {
			dst = append(dst, e)
		}
	}
	return dst
}
