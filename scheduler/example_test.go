package scheduler_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"

	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/scheduler"
)

// A prefix-heavy and a load scorer, weighted 3:1, over a two-endpoint pool
// where one endpoint holds most of the prompt. The explain output shows why.
func Example() {
	p := pool.New()
	for id, waiting := range map[string]int{"a": 0, "b": 2} {
		_ = p.Store(pool.Endpoint{ID: id, Address: "10.0.0.1:8000"})
		e, _ := p.Load(id)
		e.StoreMetrics(pool.Metrics{Engine: pool.EngineVLLM, Waiting: waiting})
	}
	// A stand-in for kvcache: "b" holds the first 6 of the prompt's 8 blocks.
	index := scheduler.PrefixIndexFunc(func(req *scheduler.Request, cands []scheduler.Candidate) {
		for i := range cands {
			if cands[i].ID == "b" {
				cands[i].Prefix = scheduler.PrefixMatch{Blocks: 6, GPU: 6}
			}
		}
	})
	prefix, _ := scheduler.Prefix(scheduler.TierWeights{})
	s, err := scheduler.New(scheduler.Profile{
		Scorers: []scheduler.WeightedScorer{
			scheduler.Weighted(3, prefix),
			scheduler.Weighted(1, scheduler.QueueDepth()),
		},
		Picker: scheduler.MaxScore(rand.NewPCG(1, 2)),
	}, scheduler.WithPrefixIndex(index))
	if err != nil {
		panic(err)
	}
	req := &scheduler.Request{Model: "m", BlockKeys: make([]uint64, 8), BlockSize: 16}
	d, err := s.Schedule(context.Background(), req, p.Snapshot().Endpoints())
	if err != nil {
		fmt.Println(err, scheduler.HTTPStatus(err))
		return
	}
	fmt.Println("to", d.Endpoint.ID, "then", d.Fallbacks[0].ID, "uncached", d.UncachedTokens)
	_ = d.Explain(os.Stdout)
	// Output:
	// to b then a uncached 32
	// profile default
	//    endpoint  prefix       prefix×0.75  queue-depth×0.25  total
	// 1  a         0(g0/c0/s0)  0.000        1.000             0.250
	// *  b         6(g6/c0/s0)  0.750        0.000             0.562
}

// Typed errors map to HTTP statuses and drop reasons.
func ExampleHTTPStatus() {
	s, _ := scheduler.New(scheduler.Profile{})
	_, err := s.Schedule(context.Background(), &scheduler.Request{PromptTokens: 10}, nil)
	fmt.Println(err, scheduler.HTTPStatus(err), scheduler.DropReason(err))
	// Output: scheduler: no endpoints 503 rejected-no-endpoints
}

// Flow control in front of a saturated fleet: requests wait in the gateway,
// higher priority first, and leave as capacity frees (Notify after a request
// ends). Sheddable requests are refused at once.
func ExampleFlowControl() {
	inflight, capacity := 1, 1 // one request already running
	var mu sync.Mutex
	gate := scheduler.GateFunc(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inflight >= capacity
	})
	fc, _ := scheduler.NewFlowControl(gate, scheduler.FlowConfig{})

	_, err := fc.Acquire(context.Background(), &scheduler.Request{Priority: -1})
	fmt.Println("sheddable:", scheduler.HTTPStatus(err), scheduler.DropReason(err))

	admitted := make(chan string, 2)
	var wg sync.WaitGroup
	for _, r := range []*scheduler.Request{{ID: "batch", Priority: 0}, {ID: "interactive", Priority: 10}} {
		wg.Go(func() {
			p, err := fc.Acquire(context.Background(), r)
			if err != nil {
				return
			}
			mu.Lock()
			inflight++ // the gateway dispatches: pool.Endpoint.Dispatch
			mu.Unlock()
			p.Done()
			admitted <- r.ID
		})
		for { // wait until it is queued
			if n, _ := fc.Len(); n > 0 && (r.ID == "batch" || n > 1) {
				break
			}
			runtime.Gosched()
		}
	}
	// Capacity frees twice: the running request ends, then the next one.
	for range 2 {
		mu.Lock()
		inflight--
		mu.Unlock()
		fc.Notify()
		fmt.Println("admitted:", <-admitted)
	}
	wg.Wait()
	// Output:
	// sheddable: 429 rejected-saturated
	// admitted: interactive
	// admitted: batch
}
