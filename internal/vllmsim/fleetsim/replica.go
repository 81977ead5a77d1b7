package fleetsim

import (
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
)

// Replica is one simulated vLLM server. Routers and OnTick hooks read it
// through its methods; it is owned by the simulator's goroutine and is not
// safe for concurrent use.
type Replica struct {
	sim    *Sim
	id     int
	eng    *vllmsim.Engine
	labels map[string]string

	added, readyAt, removedAt time.Duration
	ready, draining, removed  bool
	busy                      bool
	wakeAt                    time.Duration

	inflight, routed, completed int
	maxWaiting                  int
	scraped                     Metrics
}

// Metrics is what a router could scrape from a replica's /metrics.
// It is a plain value, safe to copy and to read from several goroutines.
type Metrics struct {
	// At is the virtual time of the scrape.
	At time.Duration
	// Waiting and Running are vllm:num_requests_waiting / _running.
	Waiting, Running int
	// KVUsage is vllm:kv_cache_usage_perc (0..1).
	KVUsage float64
	// PrefixQueries and PrefixHits are the prefix-cache counters (tokens).
	PrefixQueries, PrefixHits int64
}

// ID returns the replica's index, stable for the run (0, 1, ... in order of
// addition).
func (r *Replica) ID() int { return r.id }

// Labels returns the replica's labels (do not modify).
func (r *Replica) Labels() map[string]string { return r.labels }

// Ready reports whether the replica has started.
func (r *Replica) Ready() bool { return r.ready && !r.removed }

// Draining reports whether the replica was asked to stop (it finishes its
// in-flight requests and takes no new ones).
func (r *Replica) Draining() bool { return r.draining }

// Removed reports whether the replica is gone.
func (r *Replica) Removed() bool { return r.removed }

// Waiting returns the live number of queued requests.
func (r *Replica) Waiting() int { return r.eng.Stats().Waiting }

// Running returns the live number of requests in the running batch.
func (r *Replica) Running() int { return r.eng.Stats().Running }

// InFlight returns the requests routed to the replica and not finished:
// what a router's own in-flight accounting would know without scraping.
func (r *Replica) InFlight() int { return r.inflight }

// KVUsage returns the live fraction of KV blocks in use (0..1).
func (r *Replica) KVUsage() float64 { return r.eng.Stats().KVUsage }

// Stats returns the live engine stats and counters.
func (r *Replica) Stats() vllmsim.Stats { return r.eng.Stats() }

// Config returns the replica's engine configuration.
func (r *Replica) Config() vllmsim.Config { return r.eng.Config() }

// Scraped returns the replica's metrics as of the last scrape
// (Config.ScrapeInterval), or live values when scraping is off.
func (r *Replica) Scraped() Metrics {
	if r.sim.cfg.ScrapeInterval <= 0 {
		return r.live(r.sim.now)
	}
	return r.scraped
}

func (r *Replica) live(at time.Duration) Metrics {
	st := r.eng.Stats()
	return Metrics{At: at, Waiting: st.Waiting, Running: st.Running, KVUsage: st.KVUsage,
		PrefixQueries: st.PrefixQueries, PrefixHits: st.PrefixHits}
}

func (r *Replica) scrape() {
	r.scraped = r.live(r.sim.now)
}

// PrefixMatch returns how many of keys, from the first, the replica has in
// its prefix cache right now: the oracle view (what the request would hit
// if admitted now).
func (r *Replica) PrefixMatch(keys []uint64) int { return r.eng.CachedPrefix(keys) }

// Cached reports whether the replica's prefix cache holds the block key.
func (r *Replica) Cached(key uint64) bool { return r.eng.Cached(key) }

// RangeCached calls f with each block key in the replica's prefix cache
// (in no particular order) until f returns false.
func (r *Replica) RangeCached(f func(key uint64) bool) { r.eng.RangeCached(f) }

// NumCachedBlocks returns the number of distinct blocks in the replica's
// prefix cache.
func (r *Replica) NumCachedBlocks() int { return r.eng.NumCachedBlocks() }

// Control lets an OnTick hook observe and resize the fleet. It is valid
// only during the hook call, on the simulator's goroutine.
type Control struct {
	sim *Sim
}

// Now returns the current virtual time.
func (c *Control) Now() time.Duration { return c.sim.now }

// Replicas returns every replica not yet removed: starting, ready and
// draining ones (check Ready and Draining).
func (c *Control) Replicas() []*Replica {
	var out []*Replica
	for _, r := range c.sim.replicas {
		if !r.removed {
			out = append(out, r)
		}
	}
	return out
}

// AddReplica starts a replica that becomes ready after Config.StartupDelay.
func (c *Control) AddReplica(spec ReplicaSpec) (*Replica, error) {
	return c.sim.addReplica(spec, c.sim.cfg.StartupDelay)
}

// RemoveReplica drains r: it takes no new requests and is removed once its
// in-flight requests finish (at once if it has none or has not started).
func (c *Control) RemoveReplica(r *Replica) { c.sim.drain(r) }

// Arrived returns the number of requests that have arrived so far.
func (c *Control) Arrived() int { return len(c.sim.results) + c.sim.inflight }

// Holding returns the number of requests waiting at the gateway for a
// routable replica (Config.HoldWhenEmpty): the demand a scale-from-zero
// autoscaler reacts to.
func (c *Control) Holding() int { return len(c.sim.holding) }

// InFlight returns the number of requests admitted to replicas and not
// finished.
func (c *Control) InFlight() int { return c.sim.inflight }

// Completed returns the results of the requests finished (or rejected) so
// far; do not modify.
func (c *Control) Completed() []Result { return c.sim.results }
