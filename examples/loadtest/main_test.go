package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSmoke runs a tiny load test: every target answers, nothing fails, and
// the report has its rows. (The numbers themselves are for BENCHMARKS.md.)
func TestSmoke(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-backends", "2", "-concurrency", "4", "-requests", "200",
		"-duration", "5s", "-rounds", "1", "-rate", "200", "-latency-duration", "250ms"}, &out))
	s := out.String()
	for _, want := range []string{"| direct to backends |", "| bare httputil.ReverseProxy |", "| routekit gateway |", "added by the gateway"} {
		assert.Contains(t, s, want)
	}
	res, err := measure(t.Context(), options{backends: 2, concurrency: 2, duration: 5e9, requests: 50, rounds: 1, latencyDur: 1e8, promptBytes: 64})
	require.NoError(t, err)
	require.Len(t, res, 3)
	for _, r := range res {
		assert.Zero(t, r.errors, r.name)
		assert.Positive(t, r.rps, r.name)
		assert.Positive(t, r.p50, r.name)
	}
	assert.Positive(t, res[2].overheadP50, "the gateway's routing overhead was recorded")
}
