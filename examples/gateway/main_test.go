package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/proxy"
)

// syncBuffer is a bytes.Buffer safe for the program and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// curlRE finds the first printed curl command: its URL and JSON body.
var curlRE = regexp.MustCompile(`curl -s (http://127\.0\.0\.1:\d+)(/v1/completions) -H 'Content-Type: application/json' -d '([^']*)'`)

// TestRunEmbeddedDefault runs the program as `go run ./gateway` does (on an
// ephemeral port), pastes the curl it prints, and checks the answer, the
// routing, the metrics, the live view and the drain on shutdown.
func TestRunEmbeddedDefault(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-embedded", "3"}, out) }()

	var m []string
	require.Eventually(t, func() bool { m = curlRE.FindStringSubmatch(out.String()); return m != nil },
		30*time.Second, 10*time.Millisecond, "no curl printed: %s", out.String())
	base, path, body := m[1], m[2], m[3]
	require.True(t, json.Valid([]byte(body)), body)

	resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(got))
	assert.Regexp(t, `^sim-[0-2]$`, resp.Header.Get(proxy.HeaderEndpoint))
	var c struct {
		Choices []struct{ Text string } `json:"choices"`
		Usage   struct {
			Completion int `json:"completion_tokens"`
		} `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(got, &c))
	assert.Positive(t, c.Usage.Completion)
	assert.LessOrEqual(t, c.Usage.Completion, 32)
	require.Len(t, c.Choices, 1)

	// A streamed request in flight when the shutdown signal comes finishes.
	sresp, err := http.Post(base+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"sim-model","prompt":"drain test","max_tokens":200,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	rd := bufio.NewReader(sresp.Body)
	_, err = rd.ReadString('\n')
	require.NoError(t, err)

	mt := get(t, base+"/metrics")
	assert.Contains(t, mt, "routekit_decisions_total 2")
	var v View
	require.NoError(t, json.Unmarshal([]byte(get(t, base+"/pool")), &v))
	require.Len(t, v.Endpoints, 3)
	var inflight int64
	for _, e := range v.Endpoints {
		assert.False(t, e.Scrape.Stale, e.ID)
		assert.Equal(t, 16, e.Metrics.BlockSize)
		inflight += e.InFlight.Requests
	}
	assert.Equal(t, int64(1), inflight, "the streamed request is in flight")

	cancel() // SIGINT
	rest, err := io.ReadAll(rd)
	require.NoError(t, err)
	sresp.Body.Close()
	assert.Contains(t, string(rest), "data: [DONE]", "the request in flight was drained, not cut")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	assert.Contains(t, out.String(), "draining")
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined"},
		{"negative fleet", []string{"-embedded", "-1"}, "-embedded"},
		{"endpoints without model", []string{"-endpoints", "http://127.0.0.1:1"}, "model name is required"},
		{"kv mismatch", []string{"-endpoints", "http://a:1,http://b:1", "-kv-events", "tcp://a:5557", "-model", "m"}, "KV-event addresses"},
		{"missing config", []string{"-config", "/nonexistent/fleet.json"}, "no such file"},
		{"bad address", []string{"-addr", "256.0.0.1:99999", "-embedded", "1"}, "gateway:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out)
			require.Error(t, err)
			assert.Contains(t, err.Error()+out.String(), tt.want)
		})
	}
}

// TestExampleConfig keeps fleet.example.json (referenced by the README) valid.
func TestExampleConfig(t *testing.T) {
	c, err := fleet.Load("fleet.example.json")
	require.NoError(t, err)
	assert.Equal(t, "Qwen/Qwen3-8B", c.Model)
	require.Len(t, c.Endpoints, 3)
	assert.Equal(t, "tcp://10.0.0.7:5557", c.Endpoints[0].KVEvents)
	assert.Empty(t, c.Endpoints[2].KVEvents)
}
