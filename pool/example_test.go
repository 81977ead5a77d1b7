package pool_test

import (
	"fmt"
	"time"

	"github.com/routekit/routekit/pool"
)

// A pool with two endpoints, a removal subscriber, and in-flight accounting
// around one request.
func Example() {
	p := pool.New()
	_ = p.Store(pool.Endpoint{ID: "vllm-0", Address: "10.0.0.7:8000", Models: []string{"Qwen/Qwen3-8B"}})
	_ = p.Store(pool.Endpoint{ID: "vllm-1", Address: "10.0.0.8:8000", Models: []string{"Qwen/Qwen3-8B"}, Role: pool.RoleDecode})
	p.OnRemove(func(ep *pool.Endpoint) { fmt.Println("removed", ep.ID) })

	ep, _ := p.Load("vllm-0")
	ep.StoreMetrics(pool.Metrics{Running: 7, Waiting: 2, KVCacheUsage: 0.42, ScrapedAt: time.Unix(1767225000, 0)})
	f := ep.Dispatch(1200) // 1200 prompt tokens not in the endpoint's prefix cache
	fmt.Printf("%+v\n", ep.Load())
	f.FirstToken()
	fmt.Printf("%+v\n", ep.Load())
	f.End()

	_ = p.Delete("vllm-1")
	for _, e := range p.Snapshot().Endpoints() {
		m := e.Metrics()
		fmt.Println(e.ID, e.Role, m.Running, m.Waiting, m.KVCacheUsage, e.Load().Requests)
	}
	// Output:
	// {Requests:1 UncachedTokens:1200}
	// {Requests:1 UncachedTokens:0}
	// removed vllm-1
	// vllm-0 both 7 2 0.42 0
}
