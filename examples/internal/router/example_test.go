package router_test

import (
	"context"
	"fmt"
	"time"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

func Example() {
	p := pool.New()
	for i, addr := range []string{"10.0.0.1:8000", "10.0.0.2:8000"} {
		_ = p.Store(pool.Endpoint{ID: fmt.Sprint("vllm-", i), Address: addr, Models: []string{"qwen"}})
	}
	for _, e := range p.Snapshot().Endpoints() {
		e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()}) // as a scrape would
	}
	h, _ := prefix.NewHasher("qwen", prefix.WithBlockSize(16))
	idx, _ := kvcache.New(h)
	s, fc, _ := router.Policy{}.Build(p, idx)
	rt, _ := router.New(p, s, router.WithFlowControl(fc), router.WithPrefix(h, idx),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}))

	body := []byte(`{"model":"qwen","messages":[{"role":"user","content":"Summarise the plot of Hamlet in one line."}]}`)
	f, err := rt.Route(context.Background(), &router.Input{API: router.ChatCompletions, Body: body})
	if err != nil {
		fmt.Println(router.Status(err), router.Reason(err))
		return
	}
	fmt.Println("prompt tokens:", f.Request.PromptLen(), "blocks:", len(f.Request.BlockKeys))
	fmt.Println("in flight on the chosen endpoint:", f.Endpoint.Load().Requests)
	f.FirstToken()
	f.End(router.Outcome{Status: 200})
	fmt.Println("after the end:", f.Endpoint.Load().Requests)

	_, err = rt.Route(context.Background(), &router.Input{API: router.ChatCompletions, Body: []byte(`{"messages":[]}`)})
	fmt.Println(router.Status(err), router.Reason(err))
	// Output:
	// prompt tokens: 91 blocks: 5
	// in flight on the chosen endpoint: 1
	// after the end: 0
	// 400 rejected-bad-request
}
