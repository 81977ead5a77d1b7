package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/pool"
)

func Example() {
	// A stand-in model server.
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"choices":[{"text":" world"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	}))
	defer vllm.Close()

	p := pool.New()
	_ = p.Store(pool.Endpoint{ID: "vllm-0", Address: strings.TrimPrefix(vllm.URL, "http://"), Models: []string{"m"}})
	ep, _ := p.Load("vllm-0")
	ep.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()}) // a scraper does this in a real gateway
	s, fc, _ := router.Policy{}.Build(p, nil)
	rt, _ := router.New(p, s, router.WithFlowControl(fc),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}))

	gw := httptest.NewServer(proxy.New(rt))
	defer gw.Close()
	resp, err := http.Post(gw.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"hello"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get(proxy.HeaderEndpoint))
	fmt.Println(string(body))
	fmt.Println("in flight after the response:", ep.Load().Requests)
	// Output:
	// 200 vllm-0
	// {"choices":[{"text":" world"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}
	// in flight after the response: 0
}
