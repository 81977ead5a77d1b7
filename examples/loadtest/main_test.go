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

// TestRunBadFlags checks that unusable flag values are errors, not panics
// (index out of range, division by zero, slice bounds) or a report of NaNs.
func TestRunBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"-nope"}, want: "not defined"},
		{name: "no rounds", args: []string{"-rounds", "0"}, want: "-rounds"},
		{name: "no backends", args: []string{"-backends", "0"}, want: "-backends"},
		{name: "no workers", args: []string{"-concurrency", "0"}, want: "-concurrency"},
		{name: "no requests", args: []string{"-requests", "0"}, want: "-requests"},
		{name: "negative prompt", args: []string{"-prompt-bytes", "-1"}, want: "-prompt-bytes"},
		{name: "negative rate", args: []string{"-rate", "-5"}, want: "-rate"},
		{name: "no closed loop", args: []string{"-duration", "0s"}, want: "-duration"},
		{name: "no open loop", args: []string{"-latency-duration", "0s"}, want: "-latency-duration"},
		{name: "open loop too long", args: []string{"-rate", "1000000000", "-latency-duration", "1h"}, want: "-latency-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tt.args, &out)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
