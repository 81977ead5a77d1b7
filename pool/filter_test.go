package pool_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/pool/pooltest"
)

// filterServer answers /metrics like a server of one of the kinds below and
// records the name[] parameters of each request (nil: none).
type filterServer struct {
	mu       sync.Mutex
	requests [][]string
	full     string
	answer   func(w http.ResponseWriter, names []string, filtered bool)
}

func (s *filterServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	names, filtered := r.URL.Query()["name[]"]
	s.mu.Lock()
	s.requests = append(s.requests, names)
	answer := s.answer
	s.mu.Unlock()
	answer(w, names, filtered)
}

func (s *filterServer) take() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

// TestScrapeNameFilter checks that scrapes ask for the routing series only,
// and fall back to whole pages for servers that do not answer that request
// (prometheus_client in multiprocess mode gives an empty page; others may
// reject the parameter), sticking to whole pages while that works.
func TestScrapeNameFilter(t *testing.T) {
	t.Run("own HTTP/1.1 client", func(t *testing.T) { testScrapeNameFilter(t) })
	t.Run("net/http", func(t *testing.T) { testScrapeNameFilter(t, pool.WithHTTPClient(&http.Client{})) })
}

func testScrapeNameFilter(t *testing.T, opts ...pool.Option) {
	full := pooltest.Page(pool.Metrics{Running: 5, Waiting: 2, KVCacheUsage: 0.25, Engines: 2})
	names := pool.SeriesNames()
	write := func(w http.ResponseWriter, page string) { _, _ = w.Write([]byte(page)) }
	restricted := func(w http.ResponseWriter, names []string, filtered bool) {
		if filtered {
			write(w, pooltest.Restrict(full, names))
			return
		}
		write(w, full)
	}
	ignores := func(w http.ResponseWriter, _ []string, _ bool) { write(w, full) }
	multiprocess := func(w http.ResponseWriter, _ []string, filtered bool) {
		if filtered {
			return // an empty 200 page
		}
		write(w, full)
	}
	rejects := func(w http.ResponseWriter, _ []string, filtered bool) {
		if filtered {
			http.Error(w, "unknown query parameter", http.StatusBadRequest)
			return
		}
		write(w, full)
	}
	broken := func(w http.ResponseWriter, _ []string, filtered bool) {
		if filtered {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		http.Error(w, "engine dead", http.StatusInternalServerError)
	}
	limited := func(w http.ResponseWriter, _ []string, _ bool) {
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, []string, bool)
		noFilt  bool
		want    [][]string // name[] of the requests of three scrapes
		wantErr string
	}{
		{name: "honours the filter", answer: restricted, want: [][]string{names, names, names}},
		{name: "ignores the filter", answer: ignores, want: [][]string{names, names, names}},
		{name: "multiprocess mode: empty page", answer: multiprocess, want: [][]string{names, nil, nil, nil}},
		{name: "rejects the parameter", answer: rejects, want: [][]string{names, nil, nil, nil}},
		{name: "fails either way: the whole page is tried again only every 20th scrape", answer: broken, want: [][]string{names, nil, names, names},
			wantErr: "HTTP 500 Internal Server Error"},
		{name: "filter off", answer: restricted, noFilt: true, want: [][]string{nil, nil, nil}},
		{name: "rate limited: no second request", answer: limited, want: [][]string{names, names, names},
			wantErr: "HTTP 429 Too Many Requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &filterServer{answer: tt.answer}
			srv := httptest.NewServer(fs)
			defer srv.Close()
			p := pool.New()
			e := storeEP(t, p, "a", hostPort(srv))
			o := append([]pool.Option{pool.WithNameFilter(!tt.noFilt)}, opts...)
			s, err := pool.NewScraper(p, o...)
			require.NoError(t, err)
			defer s.CloseIdleConnections()
			for range 3 {
				s.Scrape(context.Background())
				if tt.wantErr != "" {
					assert.ErrorContains(t, e.Status().Err, tt.wantErr)
					continue
				}
				require.NoError(t, e.Status().Err)
				m := e.Metrics()
				assert.Equal(t, 5, m.Running)
				assert.Equal(t, 2, m.Waiting)
			}
			assert.Equal(t, tt.want, fs.take())
		})
	}

	t.Run("fails either way, then heals: the whole page every 20th scrape, then at once after a good one", func(t *testing.T) {
		var mu sync.Mutex
		healed := false
		fs := &filterServer{answer: func(w http.ResponseWriter, names []string, filtered bool) {
			mu.Lock()
			ok := healed
			mu.Unlock()
			switch {
			case ok && !filtered:
				_, _ = w.Write([]byte(full))
			case ok:
				_, _ = w.Write([]byte(pooltest.Restrict(full, names)))
			case filtered:
				http.Error(w, "no", http.StatusNotFound)
			default:
				http.Error(w, "engine dead", http.StatusInternalServerError)
			}
		}}
		srv := httptest.NewServer(fs)
		defer srv.Close()
		p := pool.New()
		e := storeEP(t, p, "a", hostPort(srv))
		s, err := pool.NewScraper(p, opts...)
		require.NoError(t, err)
		defer s.CloseIdleConnections()
		for range 21 {
			s.Scrape(context.Background())
			assert.ErrorContains(t, e.Status().Err, "HTTP 500 Internal Server Error")
		}
		got := fs.take()
		require.Len(t, got, 23)
		for i, n := range got {
			if i == 1 || i == 22 {
				assert.Nil(t, n, "request %d is for the whole page", i)
			} else {
				assert.Equal(t, names, n, "request %d is filtered", i)
			}
		}
		mu.Lock()
		healed = true
		mu.Unlock()
		s.Scrape(context.Background())
		require.NoError(t, e.Status().Err)
		assert.Equal(t, [][]string{names}, fs.take())
	})

	t.Run("the whole-page retry shares the scrape's timeout", func(t *testing.T) {
		// Each answer takes 0.6 of the timeout: either alone fits, both do not.
		const timeout = 250 * time.Millisecond
		fs := &filterServer{answer: func(w http.ResponseWriter, _ []string, filtered bool) {
			time.Sleep(timeout * 6 / 10)
			if filtered {
				http.Error(w, "unknown query parameter", http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(full))
		}}
		srv := httptest.NewServer(fs)
		defer srv.Close()
		p := pool.New()
		e := storeEP(t, p, "a", hostPort(srv))
		s, err := pool.NewScraper(p, append([]pool.Option{pool.WithTimeout(timeout)}, opts...)...)
		require.NoError(t, err)
		defer s.CloseIdleConnections()
		s.Scrape(context.Background())
		assert.ErrorIs(t, e.Status().Err, context.DeadlineExceeded)
		got := fs.take() // the retry may not have reached the handler yet
		require.NotEmpty(t, got)
		assert.Equal(t, names, got[0])
	})

	t.Run("a new URL tries the filter again; a URL with a query keeps it", func(t *testing.T) {
		fs := &filterServer{answer: multiprocess}
		srv := httptest.NewServer(fs)
		defer srv.Close()
		var mu sync.Mutex
		query := "?a=b"
		p := pool.New()
		e := storeEP(t, p, "a", hostPort(srv))
		s, err := pool.NewScraper(p, append([]pool.Option{pool.WithURL(func(ep *pool.Endpoint) string {
			mu.Lock()
			defer mu.Unlock()
			return "http://" + ep.ScrapeAddress() + "/metrics" + query
		})}, opts...)...)
		require.NoError(t, err)
		defer s.CloseIdleConnections()
		s.Scrape(context.Background())
		s.Scrape(context.Background())
		require.NoError(t, e.Status().Err)
		assert.Equal(t, [][]string{names, nil, nil}, fs.take())

		mu.Lock()
		query = "?c=d"
		mu.Unlock()
		require.NoError(t, p.Store(pool.Endpoint{ID: "a", Address: hostPort(srv), Labels: map[string]string{"v": "2"}}))
		s.Scrape(context.Background())
		require.NoError(t, e.Status().Err)
		assert.Equal(t, [][]string{names, nil}, fs.take())
	})
}

func TestSeriesNames(t *testing.T) {
	names := pool.SeriesNames()
	assert.IsNonDecreasing(t, names)
	for _, want := range []string{"vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:prefix_cache_hits_total",
		"vllm:cache_config_info", "vllm:lora_requests_info", "vllm:gpu_cache_usage_perc", "sglang:num_queue_reqs", "sglang:token_usage"} {
		assert.Contains(t, names, want)
	}
	names[0] = "changed"
	assert.NotEqual(t, "changed", pool.SeriesNames()[0], "a fresh slice each call")
}
