package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

func benchRouter(b *testing.B, endpoints int) (*router.Router, *pool.Pool) {
	p := pool.New()
	for i := range endpoints {
		_ = p.Store(pool.Endpoint{ID: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1), Models: []string{"m"}})
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
	rt, err := router.New(p, s, router.WithFlowControl(fc), router.WithPrefix(h, idx),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}),
		router.WithMetrics(router.NewMetrics(p, fc)), router.WithDecisionLog(router.NewDecisionLog(64)))
	if err != nil {
		b.Fatal(err)
	}
	return rt, p
}

func benchBodies(promptBytes int) [][]byte {
	out := make([][]byte, 64)
	for i := range out {
		prompt := (strings.Repeat("shared system prompt ", promptBytes/42+1))[:promptBytes/2] +
			strings.Repeat(fmt.Sprintf("user %d question ", i), promptBytes/30+1)
		out[i] = fmt.Appendf(nil, `{"model":"m","prompt":%q,"max_tokens":16,"temperature":0.7,"stream":false}`, prompt[:promptBytes])
	}
	return out
}

// BenchmarkRoute measures the whole per-request pipeline: parse, tokenize
// (one token per byte), hash, flow control, index lookup, filters, scorers,
// picker, dispatch accounting, speculative entry, metrics, decision log, and
// the end of the request.
func BenchmarkRoute(b *testing.B) {
	for _, eps := range []int{4, 32} {
		for _, size := range []int{256, 4096, 32768} {
			b.Run(fmt.Sprintf("endpoints=%d/prompt=%dB", eps, size), func(b *testing.B) {
				rt, _ := benchRouter(b, eps)
				bodies := benchBodies(size)
				ctx := context.Background()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					f, err := rt.Route(ctx, &router.Input{API: router.Completions, Body: bodies[i%len(bodies)]})
					if err != nil {
						b.Fatal(err)
					}
					f.FirstToken()
					f.End(router.Outcome{Status: 200})
					i++
				}
			})
		}
	}
}

// BenchmarkParseBaseline is the naive baseline for the parse step: decoding
// the body twice (a generic map kept as payload, then a typed struct), as
// llm-d's parser does, against ParseBody's single typed decode.
func BenchmarkParseBaseline(b *testing.B) {
	body := benchBodies(4096)[0]
	b.Run("ParseBody", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := router.ParseBody(router.Completions, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("naive-map-then-struct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				b.Fatal(err)
			}
			var s struct {
				Model  string `json:"model"`
				Prompt string `json:"prompt"`
			}
			if err := json.Unmarshal(body, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRouteParallel runs Route from every P at once (the gateway's
// real shape: one goroutine per request).
func BenchmarkRouteParallel(b *testing.B) {
	rt, _ := benchRouter(b, 8)
	bodies := benchBodies(1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			f, err := rt.Route(context.Background(), &router.Input{API: router.Completions, Body: bodies[i%len(bodies)]})
			if err != nil {
				b.Error(err)
				return
			}
			f.FirstToken()
			f.End(router.Outcome{Status: 200})
			i++
		}
	})
}
