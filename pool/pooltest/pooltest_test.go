package pooltest_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/pool/pooltest"
)

func TestPageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give pool.Metrics
	}{
		{"core only", pool.Metrics{Engine: pool.EngineVLLM, Running: 7, Waiting: 2, KVCacheUsage: 0.4183, Engines: 1}},
		{"everything, 1 engine", pool.Metrics{Engine: pool.EngineVLLM, Running: 7, Waiting: 2, KVCacheUsage: 0.25, Engines: 1,
			BlockSize: 16, NumGPUBlocks: 28672, KVCacheTokens: 458752, PrefixCacheQueries: 1843200, PrefixCacheHits: 1105920,
			MaxLoRA: 4, RunningLoRAs: []string{"sql-lora", `odd"name\x`}, WaitingLoRAs: []string{"tweet-lora"},
			Present: pool.FieldCacheConfig | pool.FieldLoRA | pool.FieldPrefixCache}},
		{"4 engines", pool.Metrics{Engine: pool.EngineVLLM, Running: 13, Waiting: 5, KVCacheUsage: 0.5, Engines: 4,
			BlockSize: 16, NumGPUBlocks: 4001, KVCacheTokens: 4001 * 16, PrefixCacheQueries: 1001, PrefixCacheHits: 3,
			Present: pool.FieldCacheConfig | pool.FieldPrefixCache}},
		{"sglang", pool.Metrics{Engine: pool.EngineSGLang, Running: 3, Waiting: 9, KVCacheUsage: 0.75, Engines: 2,
			BlockSize: 1, NumGPUBlocks: 9000, KVCacheTokens: 9000, Present: pool.FieldCacheConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pool.ParseMetrics([]byte(pooltest.Page(tt.give)))
			require.NoError(t, err)
			want := tt.give
			want.KVCacheUsageMax = want.KVCacheUsage
			assert.Equal(t, want, got)
		})
	}
}

func TestServer(t *testing.T) {
	srv := pooltest.NewServer(pool.Metrics{Running: 3, Waiting: 1, KVCacheUsage: 0.5})
	defer srv.Close()
	p := pool.New()
	require.NoError(t, p.Store(pool.Endpoint{ID: "a", Address: srv.Addr()}))
	e, _ := p.Load("a")
	s, err := pool.NewScraper(p)
	require.NoError(t, err)
	ctx := context.Background()

	s.Scrape(ctx)
	require.NoError(t, e.Status().Err)
	assert.Equal(t, 3, e.Metrics().Running)

	srv.Fail(http.StatusServiceUnavailable)
	s.Scrape(ctx)
	assert.ErrorContains(t, e.Status().Err, "HTTP 503")
	assert.Equal(t, 3, e.Metrics().Running)

	srv.Set(pool.Metrics{Running: 9, KVCacheUsage: 0.9})
	s.Scrape(ctx)
	require.NoError(t, e.Status().Err)
	assert.Equal(t, 9, e.Metrics().Running)

	srv.SetPage("garbage\n")
	s.Scrape(ctx)
	assert.ErrorIs(t, e.Status().Err, pool.ErrMissingMetrics)
	assert.Equal(t, 5, srv.Hits(), "a filtered page without the series is fetched again whole")
	s.CloseIdleConnections()
}

func Example() {
	srv := pooltest.NewServer(pool.Metrics{Running: 3, Waiting: 1, KVCacheUsage: 0.5, Engines: 2})
	defer srv.Close()
	p := pool.New()
	_ = p.Store(pool.Endpoint{ID: "a", Address: srv.Addr()})
	s, _ := pool.NewScraper(p, pool.WithClock(func() time.Time { return time.Unix(0, 0) }))
	s.Scrape(context.Background())
	defer s.CloseIdleConnections()
	e, _ := p.Load("a")
	m := e.Metrics()
	fmt.Println(m.Engine, m.Running, m.Waiting, m.KVCacheUsage, m.Engines, e.Status().Err)
	// Output: vllm 3 1 0.5 2 <nil>
}

// TestRestrict checks the name[] answer of prometheus_client: only the named
// samples, with their family's HELP and TYPE lines, and nothing of families
// without one (a counter's _created family included).
func TestRestrict(t *testing.T) {
	full := pooltest.Page(pool.Metrics{Running: 4, Waiting: 3, KVCacheUsage: 0.5, Engines: 2,
		PrefixCacheQueries: 100, PrefixCacheHits: 40, BlockSize: 16, NumGPUBlocks: 1000, KVCacheTokens: 16000,
		Present: pool.FieldCacheConfig | pool.FieldPrefixCache})
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{name: "one gauge", names: []string{"vllm:num_requests_running"}, want: "# HELP vllm:num_requests_running Number of requests in model execution batches.\n" +
			"# TYPE vllm:num_requests_running gauge\n" +
			"vllm:num_requests_running{engine=\"0\",model_name=\"sim-model\"} 2.0\n" +
			"vllm:num_requests_running{engine=\"1\",model_name=\"sim-model\"} 2.0\n"},
		{name: "unknown name", names: []string{"vllm:nope"}, want: ""},
		{name: "none", names: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, pooltest.Restrict(full, tt.names))
		})
	}

	t.Run("the routing series parse like the whole page", func(t *testing.T) {
		require.Contains(t, full, "vllm:prefix_cache_hits_created")
		small := pooltest.Restrict(full, pool.SeriesNames())
		assert.Less(t, len(small), len(full))
		assert.NotContains(t, small, "_created")
		assert.Contains(t, small, "vllm:prefix_cache_hits_total{")
		want, err := pool.ParseMetrics([]byte(full))
		require.NoError(t, err)
		got, err := pool.ParseMetrics([]byte(small))
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
}
