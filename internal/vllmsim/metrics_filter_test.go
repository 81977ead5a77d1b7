package vllmsim_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// TestMetricsNameFilter checks the answer to /metrics?name[]=..., which vLLM
// serves through prometheus_client's restricted registry: only the named
// samples, each with its family's HELP and TYPE lines.
func TestMetricsNameFilter(t *testing.T) {
	f := startFleet(t)
	base := f.Replicas[0].URL
	code, _ := post(t, base+"/v1/completions", `{"prompt":"`+strings.Repeat("abcd", 20)+`","max_tokens":4,"ignore_eos":true}`)
	require.Equal(t, 200, code)
	get := func(names ...string) string {
		t.Helper()
		u := base + "/metrics"
		if names != nil {
			u += "?" + url.Values{"name[]": names}.Encode()
		}
		resp, err := http.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}

	full := get()
	model := full[strings.Index(full, `model_name="`)+len(`model_name="`):]
	model = model[:strings.IndexByte(model, '"')]
	got := get("vllm:num_requests_running", "vllm:prefix_cache_hits_total", "vllm:nope")
	assert.Equal(t, []string{
		"# HELP vllm:num_requests_running Number of requests in model execution batches.",
		"# TYPE vllm:num_requests_running gauge",
		`vllm:num_requests_running{engine="0",model_name="` + model + `"} 0.0`,
		"# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.",
		"# TYPE vllm:prefix_cache_hits_total counter",
	}, strings.Split(got, "\n")[:5])
	assert.Equal(t, 6, strings.Count(got, "\n"), got)
	assert.NotContains(t, got, "_created")
	assert.Empty(t, get("vllm:nope"))

	// A family's _created gauge is part of its metric: asking for it alone
	// still brings the family's own HELP and TYPE lines, as
	// prometheus_client's text exposition writes them.
	got = get("vllm:prompt_tokens_created", "vllm:e2e_request_latency_seconds_created")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	require.Len(t, lines, 10, got)
	assert.Equal(t, []string{
		"# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
		"# TYPE vllm:prompt_tokens_total counter",
		"# HELP vllm:prompt_tokens_created Number of prefill tokens processed.",
		"# TYPE vllm:prompt_tokens_created gauge",
	}, lines[:4])
	assert.True(t, strings.HasPrefix(lines[4], `vllm:prompt_tokens_created{engine="0",model_name="`+model+`"} `), lines[4])
	assert.Equal(t, []string{
		"# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
		"# TYPE vllm:e2e_request_latency_seconds histogram",
		"# HELP vllm:e2e_request_latency_seconds_created Histogram of e2e request latency in seconds.",
		"# TYPE vllm:e2e_request_latency_seconds_created gauge",
	}, lines[5:9])
	assert.True(t, strings.HasPrefix(lines[9], "vllm:e2e_request_latency_seconds_created{"), lines[9])

	filtered := get(pool.SeriesNames()...)
	assert.Less(t, 10*len(filtered), len(full), "the routing series are a small part of the page")
	want, err := pool.ParseMetrics([]byte(full))
	require.NoError(t, err)
	m, err := pool.ParseMetrics([]byte(filtered))
	require.NoError(t, err)
	assert.Equal(t, want, m)
}
