package pool_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

// A scraper reading a vLLM /metrics page served by a test server. Run(ctx)
// does the same at an interval; Scrape does one round.
func ExampleScraper() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 7.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-8B"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 2.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-8B"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-8B"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3-8B"} 0.25
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="28672"} 1.0
vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="28672"} 1.0
`)
	}))
	defer srv.Close()

	p := pool.New()
	_ = p.Store(pool.Endpoint{ID: "vllm-0", Address: strings.TrimPrefix(srv.URL, "http://")})
	s, err := pool.NewScraper(p, pool.WithClock(func() time.Time { return time.Unix(1767225600, 0).UTC() }))
	if err != nil {
		panic(err)
	}
	s.Scrape(context.Background())

	ep, _ := p.Load("vllm-0")
	m, st := ep.Metrics(), ep.Status()
	fmt.Println("running", m.Running, "waiting", m.Waiting, "kv", m.KVCacheUsage, "engines", m.Engines)
	fmt.Println("capacity", m.NumGPUBlocks, "blocks of", m.BlockSize, "tokens =", m.KVCacheTokens)
	fmt.Println("scraped", m.ScrapedAt.Format(time.RFC3339), "err", st.Err, "stale", st.Stale)
	// Output:
	// running 12 waiting 2 kv 0.375 engines 2
	// capacity 57344 blocks of 16 tokens = 917504
	// scraped 2026-01-01T00:00:00Z err <nil> stale false
}

// A background loop that follows membership without polling: act on a
// snapshot, wait until it is superseded, read the pool again.
func ExampleSnapshot_Changed() {
	p := pool.New()
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		snap := p.Snapshot()
		close(ready)
		for snap.Len() < 2 {
			<-snap.Changed()
			next := p.Snapshot()
			for _, e := range next.Endpoints() {
				if _, ok := snap.Load(e.ID); !ok {
					fmt.Println("added", e.ID)
				}
			}
			snap = next
		}
	}()
	<-ready
	_ = p.Store(pool.Endpoint{ID: "vllm-0", Address: "10.0.0.7:8000"})
	_ = p.Store(pool.Endpoint{ID: "vllm-1", Address: "10.0.0.8:8000"})
	<-done
	// Output:
	// added vllm-0
	// added vllm-1
}
