package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

// gw is the gateway in front of an embedded fleet of vLLM stand-ins.
type gw struct {
	fleet *fleet.Fleet
	h     *proxy.Handler
	m     *router.Metrics
	url   string
}

func startGateway(t *testing.T, cfg fleet.Config, pol router.Policy) *gw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl, err := fleet.Start(ctx, cfg)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { _ = fl.Run(ctx); close(done) }()
	rt, m, log, err := fl.Router(pol)
	require.NoError(t, err)
	h := proxy.New(rt, proxy.WithMetrics(m), proxy.WithDecisionLog(log))
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		_ = fl.Close()
	})
	return &gw{fleet: fl, h: h, m: m, url: srv.URL}
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func completion(prompt string, maxTokens int, stream bool) string {
	return fmt.Sprintf(`{"model":"sim-model","prompt":%q,"max_tokens":%d,"ignore_eos":true,"stream":%v}`, prompt, maxTokens, stream)
}

func TestRepeatedPrefixLandsOnHolder(t *testing.T) {
	g := startGateway(t, fleet.Config{Embedded: 3}, router.Policy{})
	shared := strings.Repeat("You are routekit's test assistant; answer briefly. ", 12) // ~600 tokens
	resp, _ := post(t, g.url+"/v1/completions", completion(shared+"Question zero?", 4, false))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	holder := resp.Header.Get(proxy.HeaderEndpoint)
	require.NotEmpty(t, holder)
	var cached int
	for i := range 8 {
		resp, body := post(t, g.url+"/v1/completions", completion(shared+fmt.Sprintf("Question %d?", i+1), 4, false))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, holder, resp.Header.Get(proxy.HeaderEndpoint), "request %d", i)
		var out struct {
			Usage struct {
				Details struct {
					Cached int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		cached = out.Usage.Details.Cached
	}
	assert.GreaterOrEqual(t, cached, len(shared)/16*16-16, "the server really had the prefix cached")
	assert.Greater(t, g.m.PrefixHitRatio(), 0.7)
	// The index learned the prefix from the server's own KV events too.
	require.Eventually(t, func() bool { return g.fleet.Subscriber().Stats().EventsApplied > 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestLoadSpreadsWhenHolderSaturates(t *testing.T) {
	g := startGateway(t, fleet.Config{Embedded: 3}, router.Policy{MaxInFlight: 2})
	shared := strings.Repeat("one popular system prompt for every request. ", 10)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for i := range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(g.url+"/v1/completions", "application/json",
				strings.NewReader(completion(shared+fmt.Sprint(i), 150, false)))
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			seen[resp.Header.Get(proxy.HeaderEndpoint)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range seen {
		total += n
		assert.LessOrEqual(t, n, 5, "no endpoint takes everything: %v", seen)
	}
	assert.Equal(t, 9, total)
	assert.Len(t, seen, 3, "all endpoints took a share: %v", seen)
}

func TestStreamingPassesThroughChunkByChunk(t *testing.T) {
	// A hand-driven upstream: it writes one event, then waits for the test's
	// go-ahead before the next. The client must see each event before the
	// upstream writes the next one.
	step := make(chan struct{})
	gotID := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			return
		}
		gotID <- r.Header.Get(router.HeaderRequestID)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"text\":\"t%d\"}],\"usage\":null}\n\n", i)
			w.(http.Flusher).Flush()
			<-step
		}
		fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3,\"total_tokens\":6}}\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	rt, m := directRouter(t, up.Listener.Addr().String())
	gwSrv := httptest.NewServer(proxy.New(rt, proxy.WithMetrics(m)))
	defer gwSrv.Close()

	resp, err := http.Post(gwSrv.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"abc","stream":true}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	rd := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("data: {\"choices\":[{\"text\":\"t%d\"}],\"usage\":null}\n", i), line)
		_, _ = rd.ReadString('\n')
		step <- struct{}{} // only now may the upstream write the next event
	}
	rest, err := io.ReadAll(rd)
	require.NoError(t, err)
	assert.Contains(t, string(rest), "[DONE]")
	assert.Regexp(t, `^rk-[0-9a-f]{12}-\d+$`, <-gotID, "the gateway gave the request an id, upstream too")
	require.Eventually(t, func() bool {
		return strings.Contains(metricsText(t, gwSrv.URL), `routekit_usage_tokens_total{kind="completion"} 3`)
	},
		5*time.Second, 5*time.Millisecond)
}

// directRouter routes over fixed endpoints with fresh metrics and no scraper.
func directRouter(t *testing.T, addrs ...string) (*router.Router, *router.Metrics) {
	t.Helper()
	p := pool.New()
	for i, a := range addrs {
		require.NoError(t, p.Store(pool.Endpoint{ID: fmt.Sprint("ep-", i), Address: a, Models: []string{"m"}}))
	}
	for _, e := range p.Snapshot().Endpoints() {
		e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})
	}
	s, fc, err := router.Policy{}.Build(p, nil)
	require.NoError(t, err)
	m := router.NewMetrics(p, fc)
	rt, err := router.New(p, s, router.WithFlowControl(fc), router.WithMetrics(m),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}))
	require.NoError(t, err)
	return rt, m
}

func metricsText(t *testing.T, url string) string {
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestKilledEndpointIsRoutedAround(t *testing.T) {
	g := startGateway(t, fleet.Config{Embedded: 2, StaleAfter: fleet.Duration(time.Minute)}, router.Policy{})
	// A third endpoint whose server is gone: its port refuses connections,
	// but its last metrics still look fresh, so the scheduler picks it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	require.NoError(t, g.fleet.Pool.Store(pool.Endpoint{ID: "dead", Address: dead, Models: []string{"sim-model"}}))
	ep, _ := g.fleet.Pool.Load("dead")
	ep.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})

	for i := 0; i < 60 && g.m.Routed("dead") == 0; i++ {
		resp, body := post(t, g.url+"/v1/completions", completion(fmt.Sprintf("%d is a distinct prompt for the dead endpoint test", i*7919), 2, false))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.NotEqual(t, "dead", resp.Header.Get(proxy.HeaderEndpoint))
	}
	require.Positive(t, g.m.Routed("dead"), "the dead endpoint was chosen at least once")
	assert.Contains(t, metricsText(t, g.url), "routekit_retries_total ")
	assert.NotContains(t, metricsText(t, g.url), "routekit_retries_total 0")
	assert.Equal(t, int64(0), ep.Load().Requests, "accounting moved off the dead endpoint")

	// The dead endpoint alone holds this prompt's prefix: prefix affinity
	// leaves no fallback, and the request is scheduled again elsewhere.
	prompt := strings.Repeat("a prefix only the dead endpoint holds. ", 8)
	toks, _ := router.Bytes{}.Encode(prompt, true)
	require.NoError(t, g.fleet.Index.Learn("dead", g.fleet.Hasher.AppendKeys(nil, toks, prefix.Extra{})))
	before := g.m.Routed("dead")
	resp, body := post(t, g.url+"/v1/completions", completion(prompt, 2, false))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, before+1, g.m.Routed("dead"), "the dead holder was chosen first")
	assert.NotEqual(t, "dead", resp.Header.Get(proxy.HeaderEndpoint))
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	g := startGateway(t, fleet.Config{Embedded: 1}, router.Policy{})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/v1/completions",
		strings.NewReader(completion("a very long generation that the client abandons", 8000, true)))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, err = bufio.NewReader(resp.Body).ReadString('\n') // the first token is out
	require.NoError(t, err)
	sim := g.fleet.Sim.Replicas[0]
	assert.Equal(t, 1, sim.Stats().Running)
	cancel()
	_ = resp.Body.Close()
	require.Eventually(t, func() bool {
		st := sim.Stats()
		return st.Running == 0 && st.Finished[vllmsim.FinishAbort] == 1
	}, 5*time.Second, 5*time.Millisecond, "the server aborted the request")
	ep := g.fleet.Pool.Snapshot().Endpoints()[0]
	require.Eventually(t, func() bool { return ep.Load().Requests == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, metricsText(t, g.url), `routekit_completed_requests_total{status="error"} 1`)
}

func TestGracefulShutdownDrains(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fl, err := fleet.Start(ctx, fleet.Config{Embedded: 1})
	require.NoError(t, err)
	defer fl.Close()
	go func() { _ = fl.Run(ctx) }()
	rt, _, _, err := fl.Router(router.Policy{})
	require.NoError(t, err)
	h := proxy.New(rt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()

	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(completion("drain me gently", 300, true)))
	require.NoError(t, err)
	rd := bufio.NewReader(resp.Body)
	_, err = rd.ReadString('\n')
	require.NoError(t, err)

	h.Drain()
	hr, err := http.Get(url + "/health")
	require.NoError(t, err)
	hr.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, hr.StatusCode)
	shut := make(chan error, 1)
	go func() {
		sctx, c := context.WithTimeout(context.Background(), 20*time.Second)
		defer c()
		shut <- srv.Shutdown(sctx)
	}()
	rest, err := io.ReadAll(rd)
	require.NoError(t, err, "the request in flight finishes")
	resp.Body.Close()
	assert.Contains(t, string(rest), "data: [DONE]")
	require.NoError(t, <-shut)
	_, err = http.Post(url+"/v1/completions", "application/json", strings.NewReader(completion("too late", 1, false)))
	assert.Error(t, err, "no new connections after shutdown")
}

func TestHTTPErrorsAndInfo(t *testing.T) {
	g := startGateway(t, fleet.Config{Embedded: 1}, router.Policy{})
	tests := []struct {
		name, path, body string
		status           int
		reason           string
	}{
		{"malformed JSON", "/v1/completions", `{"model":`, 400, "rejected-bad-request"},
		{"no prompt", "/v1/completions", `{"model":"sim-model"}`, 400, "rejected-bad-request"},
		{"no messages", "/v1/chat/completions", `{"model":"sim-model","messages":[]}`, 400, "rejected-bad-request"},
		{"unknown model", "/v1/completions", `{"model":"nope","prompt":"x"}`, 503, "rejected-no-endpoints"},
		{"bad priority", "/v1/completions", "", 400, "rejected-bad-request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, g.url+tt.path, strings.NewReader(tt.body))
			if tt.name == "bad priority" {
				req.Body = io.NopCloser(strings.NewReader(completion("x", 1, false)))
				req.Header.Set(router.HeaderPriority, "urgent")
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, tt.reason, resp.Header.Get(router.HeaderDropReason))
			var e struct {
				Error struct{ Message string } `json:"error"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.NotEmpty(t, e.Error.Message)
		})
	}
	// Chat, streamed, through the gateway.
	resp, body := post(t, g.url+"/v1/chat/completions", `{"model":"sim-model","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "[DONE]")

	resp, body = getURL(t, g.url+"/v1/models")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"object":"list","data":[{"id":"sim-model","object":"model","owned_by":"routekit"}]}`, body)
	resp, _ = getURL(t, g.url+"/health")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	_, body = getURL(t, g.url+"/debug/decisions?n=1")
	var dec struct {
		Decisions []router.DecisionRecord `json:"decisions"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &dec))
	require.Len(t, dec.Decisions, 1)
	assert.Equal(t, "sim-0", dec.Decisions[0].Endpoint)
	mt := metricsText(t, g.url)
	for _, want := range []string{"routekit_decisions_total 1", `routekit_routed_requests_total{endpoint="sim-0"} 1`,
		"routekit_decision_duration_seconds_count 1", "routekit_prefix_hit_ratio", "routekit_flow_queue_requests 0",
		`routekit_endpoint_queue_length{endpoint="sim-0"}`} {
		assert.Contains(t, mt, want)
	}
}

func getURL(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}
