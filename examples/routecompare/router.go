package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/scheduler"
)

// epoch anchors virtual time to wall-clock values for components that take a
// time.Time clock (the KV index's learned-entry TTLs, scrape timestamps).
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// learnMode says what the router records in its prefix index after a decision.
type learnMode uint8

const (
	learnNone        learnMode = iota
	learnSpeculative           // precise index: short-lived entries until the KV events arrive
	learnApproximate           // approximate index: decisions are the only source of truth
)

// router drives a routekit scheduler from the fleet simulator, doing what a
// gateway does around it: a pool with one endpoint per replica whose metrics
// come from the replica's scraped values, the request's block keys hashed once
// with prefix.Hasher from its tokens, in-flight accounting on dispatch, first
// token and completion, and index upkeep (KV events for the precise index,
// learned entries for the approximate one).
//
// The simulator has no first-token callback, so the router estimates each
// request's first token from its uncached prompt and the endpoint's prefill
// throughput, serially per endpoint (what the gateway would observe on the
// stream); completion is exact (fleetsim.Config.OnComplete).
type router struct {
	s      *scheduler.Scheduler
	pool   *pool.Pool
	hasher *prefix.Hasher
	index  *kvcache.Index // nil for policies without one
	learn  learnMode
	now    *time.Duration // shared virtual clock
	engine vllmsim.Config

	eps     map[int]*pool.Endpoint // by replica ID
	reps    map[string]*fleetsim.Replica
	cands   []*pool.Endpoint
	req     scheduler.Request
	d       scheduler.Decision
	simKeys []uint64 // the simulator's block keys of the current request (oracle)

	flights   map[int64]*flight
	pending   flightHeap               // by estimated first token
	busyUntil map[string]time.Duration // per endpoint, estimated end of queued prefill

	kvEvents, kvErrors, decisions, rejected int
	firstKVErr                              error
}

type flight struct {
	id      int64
	f       pool.Flight
	firstAt time.Duration
	done    bool
}

type flightHeap []*flight

func (h flightHeap) Len() int           { return len(h) }
func (h flightHeap) Less(i, j int) bool { return h[i].firstAt < h[j].firstAt }
func (h flightHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *flightHeap) Push(x any)        { *h = append(*h, x.(*flight)) }
func (h *flightHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

func newRouter(s *scheduler.Scheduler, h *prefix.Hasher, idx *kvcache.Index, learn learnMode, now *time.Duration, engine vllmsim.Config) *router {
	return &router{
		s: s, pool: pool.New(), hasher: h, index: idx, learn: learn, now: now, engine: engine,
		eps: map[int]*pool.Endpoint{}, reps: map[string]*fleetsim.Replica{},
		flights: map[int64]*flight{}, busyUntil: map[string]time.Duration{},
	}
}

func endpointID(r *fleetsim.Replica) string { return fmt.Sprintf("r%d", r.ID()) }

// endpoint returns the pool endpoint of replica r, adding it on first sight.
func (rt *router) endpoint(r *fleetsim.Replica) (*pool.Endpoint, error) {
	if e, ok := rt.eps[r.ID()]; ok {
		return e, nil
	}
	id := endpointID(r)
	if err := rt.pool.Store(pool.Endpoint{ID: id, Address: fmt.Sprintf("10.0.%d.%d:8000", r.ID()/250, r.ID()%250+1), Models: []string{rt.engine.Model}}); err != nil {
		return nil, err
	}
	e, _ := rt.pool.Load(id)
	rt.eps[r.ID()] = e
	rt.reps[id] = r
	if rt.index != nil && rt.learn == learnApproximate {
		// Learned entries bounded by what the server can hold (num_gpu_blocks).
		if err := rt.index.SetLearnedCapacity(id, r.Config().NumBlocks); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Route implements fleetsim.Router.
func (rt *router) Route(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
	*rt.now = st.Now
	// First tokens that have (by estimate) arrived.
	for len(rt.pending) > 0 && rt.pending[0].firstAt <= st.Now {
		f := heap.Pop(&rt.pending).(*flight)
		f.f.FirstToken()
	}
	rt.cands = rt.cands[:0]
	for _, r := range st.Replicas {
		e, err := rt.endpoint(r)
		if err != nil {
			panic(err) // IDs and addresses are generated: cannot fail
		}
		m := r.Scraped()
		cfg := r.Config()
		e.StoreMetrics(pool.Metrics{
			Engine: pool.EngineVLLM, Waiting: m.Waiting, Running: m.Running,
			KVCacheUsage: m.KVUsage, KVCacheUsageMax: m.KVUsage, Engines: 1,
			BlockSize: cfg.BlockSize, NumGPUBlocks: cfg.NumBlocks, KVCacheTokens: cfg.KVCapacityTokens(),
			Present: pool.FieldCacheConfig, ScrapedAt: epoch.Add(m.At),
		})
		rt.cands = append(rt.cands, e)
	}
	rt.req = scheduler.Request{
		ID:              fmt.Sprint(req.ID),
		Model:           rt.engine.Model,
		Tokens:          req.Prompt,
		BlockKeys:       rt.hasher.AppendKeys(rt.req.BlockKeys[:0], req.Prompt, prefix.Extra{}),
		BlockSize:       rt.hasher.BlockSize(),
		MaxOutputTokens: req.OutputLen,
		Tenant:          fmt.Sprint(req.Group),
	}
	rt.simKeys = req.Keys
	rt.decisions++
	if err := rt.s.ScheduleInto(context.Background(), &rt.req, rt.cands, &rt.d); err != nil {
		rt.rejected++
		return nil
	}
	e := rt.d.Endpoint
	f := &flight{id: req.ID, f: e.Dispatch(rt.d.UncachedTokens)}
	start := max(st.Now, rt.busyUntil[e.ID])
	f.firstAt = start + time.Duration(float64(rt.d.UncachedTokens)/rt.engine.PrefillTokensPerSec*float64(time.Second))
	rt.busyUntil[e.ID] = f.firstAt
	rt.flights[req.ID] = f
	heap.Push(&rt.pending, f)
	if rt.index != nil && rt.learn != learnNone {
		_ = rt.index.Learn(e.ID, rt.req.BlockKeys) // IDs are valid: cannot fail
	}
	return rt.reps[e.ID]
}

// complete ends a request's in-flight accounting (fleetsim.Config.OnComplete).
func (rt *router) complete(res fleetsim.Result) {
	f, ok := rt.flights[res.ID]
	if !ok {
		return
	}
	delete(rt.flights, res.ID)
	f.f.End() // also releases uncached tokens if the estimate had not yet
}

// kvEvent applies a replica's KV event to the precise index
// (fleetsim.Config.OnKVEvent).
func (rt *router) kvEvent(r *fleetsim.Replica, at time.Duration, ev vllmsim.KVEvent) {
	*rt.now = at
	rt.kvEvents++
	id := endpointID(r)
	var err error
	switch ev.Kind {
	case vllmsim.BlockStored:
		err = rt.index.Stored(id, kvcache.TierGPU, &kvcache.BlockStored{
			EngineHashes: ev.Keys, Parent: ev.Parent, HasParent: ev.HasParent,
			Tokens: ev.Tokens, BlockSize: ev.BlockSize,
		})
	case vllmsim.BlockRemoved:
		err = rt.index.Removed(id, kvcache.TierGPU, ev.Keys)
	case vllmsim.AllBlocksCleared:
		err = rt.index.Clear(id)
	default:
		err = errors.New("unknown KV event")
	}
	if err != nil {
		if rt.kvErrors == 0 {
			rt.firstKVErr = err
		}
		rt.kvErrors++
	}
}

// oracle is a PrefixIndex that asks every replica's engine directly how much
// of the prompt it holds right now: perfect knowledge, no event lag.
func (rt *router) oracle(req *scheduler.Request, cands []scheduler.Candidate) {
	for i := range cands {
		r := rt.reps[cands[i].ID]
		n := r.PrefixMatch(rt.simKeys)
		cands[i].Prefix = scheduler.PrefixMatch{Blocks: n, GPU: n}
	}
}
