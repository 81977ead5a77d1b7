package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

// memTransport answers every request in memory, like a backend that
// replies at once, so a benchmark measures the handler and not the network.
type memTransport struct{}

const benchReply = `{"id":"cmpl-1","object":"text_completion","model":"m","choices":[{"index":0,"text":" ok","finish_reason":"length"}],"usage":{"prompt_tokens":256,"completion_tokens":1,"total_tokens":257}}`

func (memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	h := make(http.Header, 1)
	h.Set("Content-Type", "application/json")
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(benchReply)),
		ContentLength: int64(len(benchReply)), Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// testBuffers pools 32 KiB copy buffers, as the gateway does, so that the
// "reverseproxy+bufferpool" baseline differs from the gateway by routing only.
type testBuffers struct{}

var testPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (testBuffers) Get() []byte  { return *testPool.Get().(*[]byte) }
func (testBuffers) Put(b []byte) { testPool.Put(&b) }

// BenchmarkHandler compares the gateway's handler (routing on: parse,
// tokenize, hash, index, flow control, schedule, accounting, speculative
// entries, usage tap, metrics, decision log) with a bare
// httputil.ReverseProxy, both over an in-memory transport: the difference is
// what routing adds per request, network excluded.
func BenchmarkHandler(b *testing.B) {
	p := pool.New()
	for i := range 4 {
		_ = p.Store(pool.Endpoint{ID: fmt.Sprint("ep-", i), Address: fmt.Sprintf("10.0.0.%d:8000", i+1), Models: []string{"m"}})
	}
	for _, e := range p.Snapshot().Endpoints() {
		e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now().Add(time.Hour)})
	}
	h, _ := prefix.NewHasher("m", prefix.WithBlockSize(16))
	idx, _ := kvcache.New(h, kvcache.WithLearnedTTL(0))
	s, fc, err := router.Policy{}.Build(p, idx)
	if err != nil {
		b.Fatal(err)
	}
	m := router.NewMetrics(p, fc)
	rt, _ := router.New(p, s, router.WithFlowControl(fc), router.WithPrefix(h, idx), router.WithMetrics(m),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}),
		router.WithDecisionLog(router.NewDecisionLog(64)))
	gw := proxy.New(rt, proxy.WithTransport(memTransport{}), proxy.WithMetrics(m))
	bare := &httputil.ReverseProxy{Transport: memTransport{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "10.0.0.1:8000"
		pr.SetXForwarded()
	}}
	pooled := &httputil.ReverseProxy{Transport: memTransport{}, Rewrite: bare.Rewrite, BufferPool: testBuffers{}}
	bodies := make([][]byte, 64)
	for i := range bodies {
		prompt := (fmt.Sprintf("%08d ", i*7919) + strings.Repeat("lorem ipsum dolor sit amet ", 10))[:256]
		bodies[i] = fmt.Appendf(nil, `{"model":"m","prompt":%q,"max_tokens":1}`, prompt)
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare-reverseproxy", bare}, {"reverseproxy+bufferpool", pooled}, {"gateway", gw}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/completions", bytes.NewReader(bodies[i%len(bodies)]))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				i++
			}
		})
	}
}
