package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

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

// TestRun starts the program with the embedded fleet, checks its health and
// metrics, and stops it.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-embedded", "2", "-shutdown-grace", "0"}, out)
	}()
	re := regexp.MustCompile(`picker on (127\.0\.0\.1:\d+) \(grpc\), metrics on (http://\S+)`)
	var m []string
	require.Eventually(t, func() bool { m = re.FindStringSubmatch(out.String()); return m != nil }, 30*time.Second, 10*time.Millisecond, out.String())
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, r.GetStatus())
	resp, err := http.Get(m[2])
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, out.String(), "endpoint sim-1 at 127.0.0.1:")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestRunBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), []string{"-nope"}, &out))
	assert.Error(t, run(context.Background(), []string{"-endpoints", "http://127.0.0.1:1"}, &out))
	assert.ErrorContains(t, run(context.Background(), []string{"-embedded", "-2"}, &out), "embedded")
}

// TestShutdownKeepsEmbeddedFleetForTheDrain checks that SIGINT (ctx's end)
// does not kill the embedded model servers under the requests in flight:
// shutdown keeps serving for -shutdown-grace and drains, so a stream that
// started before the signal still ends with [DONE].
func TestShutdownKeepsEmbeddedFleetForTheDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-metrics-addr", "", "-embedded", "1", "-shutdown-grace", "2s"}, out)
	}()
	re := regexp.MustCompile(`endpoint sim-0 at (127\.0\.0\.1:\d+)`)
	var m []string
	require.Eventually(t, func() bool { m = re.FindStringSubmatch(out.String()); return m != nil }, 30*time.Second, 10*time.Millisecond, out.String())

	// About 0.3 s of decoding on the Fast engine (1 ms steps).
	resp, err := http.Post("http://"+m[1]+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"sim-model","prompt":"hello","max_tokens":300,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	first := make([]byte, 1)
	_, err = io.ReadFull(resp.Body, first) // the stream has started
	require.NoError(t, err)
	cancel() // SIGINT
	rest, _ := io.ReadAll(resp.Body)
	assert.True(t, strings.HasSuffix(string(rest), "data: [DONE]\n\n"), "stream cut at shutdown: ...%s", rest[max(len(rest)-200, 0):])

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
}
