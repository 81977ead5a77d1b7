package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
)

// smallSetup is a seeded, shrunken run: 4 replicas with a tenth of the KV
// capacity, a quarter of the prompt lengths and a fifth of the groups (the
// shared-prefix working set stays near 73% of fleet capacity), short outputs.
func smallSetup(workload string) setup {
	eng := vllmsim.Qwen3_32B_H100x2()
	eng.NumBlocks /= 10
	return setup{
		workload: workload, engine: eng, replicas: 4, seed: 7, scale: 0.25, groups: 0.2, outScale: 0.1,
		rates: []float64{5, 60}, stage: 10 * time.Second,
		scrape: 50 * time.Millisecond, kvDelay: 5 * time.Millisecond,
	}
}

func TestRouteCompareSmall(t *testing.T) {
	s := smallSetup("shared")
	outs, err := runAll(s, policyNames, 2)
	require.NoError(t, err)
	by := map[string]*outcome{}
	for _, o := range outs {
		by[o.policy] = o
		assert.Equal(t, o.report.Requests, o.report.Finished, "%s: every request finishes", o.policy)
		assert.Len(t, o.perStage, len(s.rates))
	}
	p90 := func(p string) time.Duration { return by[p].report.TTFT.P90 }
	hit := func(p string) float64 { return by[p].report.PrefixHitRate }
	// Prefix-aware routing must beat load-only routing by a wide margin on a
	// shared-prefix workload, and precise/default must be near the oracle.
	for _, good := range []string{"precise", "default", "oracle", "approximate"} {
		for _, blind := range []string{"random", "round-robin", "least-loaded"} {
			assert.Less(t, 2*p90(good), p90(blind), "%s vs %s", good, blind)
			assert.Greater(t, hit(good), hit(blind), "%s vs %s hit rate", good, blind)
		}
	}
	for _, p := range []string{"precise", "default"} {
		assert.LessOrEqual(t, float64(p90(p)), 1.25*float64(p90("oracle")), p)
		assert.GreaterOrEqual(t, by[p].report.OutputTokensPerSec, 0.9*by["oracle"].report.OutputTokensPerSec, p)
	}
	pr := by["precise"]
	assert.Positive(t, pr.kvEvents)
	// The engine holds a hash in several physical blocks at times and
	// publishes a store and a removal per copy; kvcache counts the copies, so
	// a duplicate's removal never orphans the children of its live twin, and
	// every event applies (an ErrUnknownParent here is a regression).
	assert.Zero(t, pr.kvErrors, "KV events the index rejects, of %d: %v", pr.kvEvents, pr.firstKVErr)
	var tb bytes.Buffer
	printTables(&tb, s, outs)
	t.Log(tb.String())

	var tab, svg bytes.Buffer
	printTables(&tab, s, outs)
	for _, p := range policyNames {
		assert.Contains(t, tab.String(), "| "+p+" |")
	}
	require.NoError(t, plot(&svg, "shared", "requests/s", s.rates, outs))
	assert.True(t, strings.HasPrefix(svg.String(), "<svg"))
	assert.Equal(t, len(policyNames), strings.Count(svg.String(), "<polyline"))
}

func TestRouteCompareOtherWorkloads(t *testing.T) {
	for _, wl := range []string{"chat", "lowshare"} {
		t.Run(wl, func(t *testing.T) {
			s := smallSetup(wl)
			s.rates = []float64{2}
			outs, err := runAll(s, []string{"random", "default"}, 2)
			require.NoError(t, err)
			for _, o := range outs {
				assert.Positive(t, o.report.Finished, o.policy)
			}
		})
	}
	_, err := run(smallSetup("nope"), "random")
	assert.ErrorContains(t, err, "unknown workload")
	_, err = run(smallSetup("shared"), "nope")
	assert.ErrorContains(t, err, "unknown policy")
}

// TestRunRejectsBadSetup checks that a setup the simulation cannot finish
// (-stage 0 makes the first rate last forever) or run (no replicas, no
// rates) is an error, not a run that never ends.
func TestRunRejectsBadSetup(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*setup)
		want   string
	}{
		{name: "zero stage", modify: func(s *setup) { s.stage = 0 }, want: "stage"},
		{name: "negative stage", modify: func(s *setup) { s.stage = -time.Second }, want: "stage"},
		{name: "no rates", modify: func(s *setup) { s.rates = nil }, want: "rate"},
		{name: "zero rate", modify: func(s *setup) { s.rates = []float64{5, 0} }, want: "rate"},
		{name: "no replicas", modify: func(s *setup) { s.replicas = 0 }, want: "replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := smallSetup("shared")
			tt.modify(&s)
			done := make(chan error, 1)
			go func() { _, err := runAll(s, []string{"random"}, 1); done <- err }()
			select {
			case err := <-done:
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.want)
			case <-time.After(3 * time.Second):
				t.Fatal("the simulation did not stop") // it leaks; the test binary ends soon after
			}
		})
	}
}
