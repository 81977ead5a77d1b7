package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// fakeClock is a settable clock for WithClock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock(t time.Time) *fakeClock    { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }
func hostPort(s *httptest.Server) string     { return strings.TrimPrefix(s.URL, "http://") }
func storeEP(t *testing.T, p *pool.Pool, id, addr string) *pool.Endpoint {
	t.Helper()
	require.NoError(t, p.Store(pool.Endpoint{ID: id, Address: addr}))
	e, ok := p.Load(id)
	require.True(t, ok)
	return e
}

// switchable serves whatever its current handler says.
type switchable struct {
	mu sync.Mutex
	h  http.HandlerFunc
}

func (s *switchable) set(h http.HandlerFunc) { s.mu.Lock(); s.h = h; s.mu.Unlock() }
func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h(w, r)
}

func servePage(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}

// TestScrapeFailuresKeepLastGoodValues drives one endpoint through a good page
// and every kind of failure; each failure gets a clear error in Status, and
// the last good metrics are never wiped.
func TestScrapeFailuresKeepLastGoodValues(t *testing.T) {
	t.Run("own HTTP/1.1 client", func(t *testing.T) { testScrapeFailures(t) })
	t.Run("net/http", func(t *testing.T) { testScrapeFailures(t, pool.WithHTTPClient(&http.Client{})) })
}

func testScrapeFailures(t *testing.T, opts ...pool.Option) {
	sw := &switchable{h: servePage(string(golden(t)))}
	srv := httptest.NewServer(sw)
	defer srv.Close()
	release := make(chan struct{})
	defer close(release)

	clock := newFakeClock(time.Unix(1767225000, 0))
	p := pool.New()
	e := storeEP(t, p, "vllm-0", hostPort(srv))
	s, err := pool.NewScraper(p, append([]pool.Option{pool.WithClock(clock.now), pool.WithTimeout(300 * time.Millisecond),
		pool.WithStaleAfter(10 * time.Second), pool.WithMaxPageSize(64 << 10)}, opts...)...)
	require.NoError(t, err)

	s.Scrape(context.Background())
	require.NoError(t, e.Status().Err)
	good := e.Metrics()
	assert.Equal(t, 7, good.Running)
	assert.Equal(t, 16, good.BlockSize)
	assert.Equal(t, clock.now(), good.ScrapedAt)
	assert.False(t, e.Stale())

	huge := strings.Repeat("# padding padding padding padding padding padding padding\n", 2000) + string(golden(t))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
		wantIs  error
	}{
		{name: "malformed page", handler: servePage("vllm:num_requests_running{engine=\"0\" 3\n"), wantErr: "line 1: vllm:num_requests_running: expected ',' or '}' after label engine"},
		{name: "truncated page", handler: servePage(string(golden(t)[:500])), wantErr: "no newline at end of page"},
		{name: "page missing metrics", handler: servePage("vllm:num_requests_running{engine=\"0\"} 3\n"), wantIs: pool.ErrMissingMetrics,
			wantErr: "required metrics missing: vllm:num_requests_waiting, vllm:kv_cache_usage_perc"},
		{name: "HTTP 500", handler: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "engine dead", 500) }, wantErr: "HTTP 500 Internal Server Error"},
		{name: "HTTP 404", handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, wantErr: "HTTP 404 Not Found"},
		{name: "timeout", handler: func(http.ResponseWriter, *http.Request) { <-release }, wantErr: "timed out after 300ms", wantIs: context.DeadlineExceeded},
		{name: "slow body", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "vllm:num_requests_running 1\n")
			w.(http.Flusher).Flush()
			<-release
		}, wantErr: "timed out after 300ms"},
		{name: "huge page (chunked)", handler: servePage(huge), wantIs: pool.ErrPageTooLarge, wantErr: "more than 65536 bytes"},
		{name: "huge page (Content-Length)", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(huge)))
			_, _ = io.WriteString(w, huge)
		}, wantIs: pool.ErrPageTooLarge, wantErr: "Content-Length"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw.set(tt.handler)
			clock.advance(time.Second)
			s.Scrape(context.Background())
			st := e.Status()
			require.Error(t, st.Err)
			assert.Contains(t, st.Err.Error(), tt.wantErr)
			assert.Contains(t, st.Err.Error(), `pool: scrape "vllm-0"`)
			if tt.wantIs != nil {
				assert.ErrorIs(t, st.Err, tt.wantIs)
			}
			assert.Equal(t, i+1, st.Failures)
			assert.Equal(t, clock.now(), st.LastAttempt)
			assert.Equal(t, good.ScrapedAt, st.LastSuccess)
			assert.Same(t, good, e.Metrics(), "last good values kept")
			assert.False(t, st.Stale, "not stale before the staleness age")
		})
	}

	t.Run("connection refused, then stale", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := ln.Addr().String()
		require.NoError(t, ln.Close())
		require.NoError(t, p.Store(pool.Endpoint{ID: "vllm-0", Address: dead}))
		clock.advance(2 * time.Second) // 11 s after the last good scrape
		s.Scrape(context.Background())
		st := e.Status()
		require.Error(t, st.Err)
		assert.Contains(t, st.Err.Error(), "connection refused")
		assert.True(t, st.Stale)
		assert.True(t, e.Stale())
		assert.Same(t, good, e.Metrics(), "stale, but the last good values are still there")
	})

	t.Run("recovery", func(t *testing.T) {
		require.NoError(t, p.Store(pool.Endpoint{ID: "vllm-0", Address: hostPort(srv)}))
		sw.set(servePage(page(core0, core1)))
		s.Scrape(context.Background())
		st := e.Status()
		require.NoError(t, st.Err)
		assert.False(t, st.Stale)
		assert.Zero(t, st.Failures)
		assert.Equal(t, 7, e.Metrics().Running)
		assert.Equal(t, clock.now(), e.Metrics().ScrapedAt)
	})
}

func TestScrapeEscapedLabelsOverHTTP(t *testing.T) {
	body := page(core0,
		`vllm:cache_config_info{block_size="16",cache_dtype="fp8 \"e4m3\"",engine="0",kv_cache_dtype_skip_layers="[\"a\\\\b\"]",num_gpu_blocks="100"} 1.0`,
		`vllm:lora_requests_info{max_lora="3",running_lora_adapters="team\\a,team\"b\"",waiting_lora_adapters="x\ny"} 17`)
	srv := httptest.NewServer(servePage(body))
	defer srv.Close()
	p := pool.New()
	e := storeEP(t, p, "a", hostPort(srv))
	s, err := pool.NewScraper(p)
	require.NoError(t, err)
	s.Scrape(context.Background())
	require.NoError(t, e.Status().Err)
	m := e.Metrics()
	assert.Equal(t, []string{`team\a`, `team"b"`}, m.RunningLoRAs)
	assert.Equal(t, []string{"x\ny"}, m.WaitingLoRAs)
	assert.Equal(t, 1600, m.KVCacheTokens)
}

// TestSlowEndpointDoesNotDelayOthers runs Run against one endpoint that never
// answers and one that does: the good one keeps being scraped.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	var hits atomic.Int64
	var n atomic.Int64
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, page(fmt.Sprintf(`vllm:num_requests_running %d`, n.Add(1)), `vllm:num_requests_waiting 0`, `vllm:kv_cache_usage_perc 0.1`))
	}))
	defer good.Close()
	stuck := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stuck }))
	defer slow.Close()
	defer close(stuck)

	p := pool.New()
	g := storeEP(t, p, "good", hostPort(good))
	sl := storeEP(t, p, "slow", hostPort(slow))
	s, err := pool.NewScraper(p, pool.WithInterval(5*time.Millisecond), pool.WithTimeout(time.Hour))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	require.Eventually(t, func() bool { return hits.Load() >= 10 }, 20*time.Second, time.Millisecond)
	assert.Greater(t, g.Metrics().Running, 1)
	require.NoError(t, g.Status().Err)
	assert.ErrorIs(t, sl.Status().Err, pool.ErrNotScraped, "the slow endpoint's first scrape is still under way")
	assert.ErrorIs(t, s.Run(ctx), pool.ErrAlreadyRunning)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.ErrorIs(t, sl.Status().Err, pool.ErrNotScraped, "a scrape cancelled by shutdown is not the endpoint's failure")
}

// roundTripFunc is an in-memory transport, so scrapes can run inside a
// synctest bubble with fake time.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRunIntervalTimeoutAndStalenessSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fast, slow atomic.Int64
		var failSlow atomic.Bool
		body := page(core0)
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch r.URL.Host {
			case "fast:1":
				fast.Add(1)
			case "slow:1":
				slow.Add(1)
				if failSlow.Load() {
					<-r.Context().Done() // hangs until the scrape times out
					return nil, r.Context().Err()
				}
			}
			return &http.Response{StatusCode: 200, Status: "200 OK", Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}, nil
		})}
		p := pool.New()
		f := storeEP(t, p, "fast", "fast:1")
		sl := storeEP(t, p, "slow", "slow:1")
		s, err := pool.NewScraper(p, pool.WithHTTPClient(client), pool.WithInterval(50*time.Millisecond),
			pool.WithTimeout(320*time.Millisecond), pool.WithStaleAfter(time.Second))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()

		time.Sleep(975 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, int64(20), fast.Load(), "a scrape at t=0 and every 50 ms")
		assert.Equal(t, int64(20), slow.Load())
		assert.False(t, sl.Stale())

		failSlow.Store(true)
		start := time.Now()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// Each hung scrape takes 320 ms and ticks during it are skipped for that
		// endpoint only: the slow one starts at 1000, 1350, ..., 2750 ms.
		assert.Equal(t, int64(60), fast.Load())
		assert.Equal(t, int64(6), slow.Load()-20)
		st := sl.Status()
		require.ErrorIs(t, st.Err, context.DeadlineExceeded)
		assert.True(t, st.Stale, "no good scrape for more than 1 s")
		assert.Equal(t, start.Add(-25*time.Millisecond), st.LastSuccess)
		assert.Equal(t, 3, sl.Metrics().Running, "last good values kept")
		assert.False(t, f.Stale())

		failSlow.Store(false)
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		assert.False(t, sl.Stale(), "fresh again after a good scrape")
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestScraperMembershipChanges(t *testing.T) {
	var mu sync.Mutex
	hostsSeen := map[string]int{}
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		hostsSeen[r.URL.Host+r.URL.Path]++
		mu.Unlock()
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(page(core0))), ContentLength: -1}, nil
	})}
	p := pool.New()
	s, err := pool.NewScraper(p, pool.WithHTTPClient(client),
		pool.WithURL(func(ep *pool.Endpoint) string { return "http://" + ep.ScrapeAddress() + "/custom" }))
	require.NoError(t, err)
	s.Scrape(context.Background()) // empty pool: nothing to do
	storeEP(t, p, "a", "a:1")
	storeEP(t, p, "b", "b:1")
	s.Scrape(context.Background())
	require.NoError(t, p.Store(pool.Endpoint{ID: "a", Address: "a:1", MetricsAddress: "a:9090"}))
	require.NoError(t, p.Delete("b"))
	s.Scrape(context.Background())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"a:1/custom": 1, "b:1/custom": 1, "a:9090/custom": 1}, hostsSeen)
}

func TestNewScraperValidation(t *testing.T) {
	p := pool.New()
	tests := []struct {
		name string
		give pool.Option
		want string
	}{
		{"interval", pool.WithInterval(0), "interval"},
		{"timeout", pool.WithTimeout(-1), "timeout"},
		{"stale", pool.WithStaleAfter(0), "staleness"},
		{"page", pool.WithMaxPageSize(0), "page size"},
		{"clock", pool.WithClock(nil), "nil clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.NewScraper(p, tt.give)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := pool.NewScraper(nil)
	assert.Error(t, err)
	assert.False(t, errors.Is(err, pool.ErrAlreadyRunning))
}

// TestRunRestartAndChurn restarts Run several times while endpoints come and
// go; every endpoint present at the end must be scraped by the last Run.
func TestRunRestartAndChurn(t *testing.T) {
	var hits sync.Map // host -> *atomic.Int64
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		v, _ := hits.LoadOrStore(r.URL.Host, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(page(core0))), ContentLength: -1}, nil
	})}
	p := pool.New()
	s, err := pool.NewScraper(p, pool.WithHTTPClient(client), pool.WithInterval(time.Millisecond))
	require.NoError(t, err)
	for round := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for i := range 10 {
			id := fmt.Sprint("e", (round*3+i)%12)
			if i%3 == 0 {
				_ = p.Delete(id)
			} else {
				_ = p.Store(pool.Endpoint{ID: id, Address: id + ":1"})
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}
	hits.Clear()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Eventually(t, func() bool {
		for _, e := range p.Snapshot().Endpoints() {
			v, ok := hits.Load(e.Address)
			if !ok || v.(*atomic.Int64).Load() < 3 {
				return false
			}
		}
		return true
	}, 20*time.Second, time.Millisecond, "an endpoint is no longer scraped after restarts")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestCancelMidScrapeHTTP1 cancels Run and Scrape while scrapes through the
// own HTTP/1.1 client are mid-exchange (dialing, waiting for headers, reading
// the body, or closing a Connection: close response), many times over. It is
// the regression test of a crash where the cancellation hook used a
// connection that had just been closed and replaced.
func TestCancelMidScrapeHTTP1(t *testing.T) {
	body := string(golden(t))
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if i%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		time.Sleep(time.Duration(i%4) * time.Millisecond)
		_, _ = io.WriteString(w, body[:len(body)/2])
		w.(http.Flusher).Flush()
		time.Sleep(time.Duration(i%3) * time.Millisecond)
		_, _ = io.WriteString(w, body[len(body)/2:])
	}))
	defer srv.Close()
	p := pool.New()
	for i := range 8 {
		storeEP(t, p, fmt.Sprint("e", i), hostPort(srv))
	}
	s, err := pool.NewScraper(p, pool.WithInterval(time.Millisecond))
	require.NoError(t, err)
	for i := range 30 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%7)*time.Millisecond)
		if i%2 == 0 {
			_ = s.Run(ctx)
		} else {
			s.Scrape(ctx)
		}
		cancel()
	}
	s.Scrape(context.Background())
	for _, e := range p.Snapshot().Endpoints() {
		require.NoError(t, e.Status().Err)
		assert.Equal(t, 7, e.Metrics().Running)
	}
	s.CloseIdleConnections()
}

// TestRunEndDoesNotFailConcurrentScrape: when Run ends it cuts every exchange
// under way, including one of a Scrape call running beside it; that is not the
// endpoint's failure, so the endpoint's status is left as it was (it used to
// say "timed out").
func TestRunEndDoesNotFailConcurrentScrape(t *testing.T) {
	body := string(golden(t))
	entered, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	defer close(release)
	p := pool.New()
	e := storeEP(t, p, "a", hostPort(srv))
	s, err := pool.NewScraper(p, pool.WithInterval(time.Hour))
	require.NoError(t, err)
	defer s.CloseIdleConnections()
	scraped := make(chan struct{})
	go func() { s.Scrape(context.Background()); close(scraped) }()
	<-entered // the Scrape's exchange is under way
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, s.Run(ctx), context.Canceled) // its tick skips the busy endpoint; its end aborts
	select {
	case <-scraped:
	case <-time.After(10 * time.Second):
		t.Fatal("the Scrape was not cut by Run's end")
	}
	assert.ErrorIs(t, e.Status().Err, pool.ErrNotScraped)
	assert.Equal(t, 0, e.Status().Failures)
}
