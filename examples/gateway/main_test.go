package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestRunServesLiveView runs the program as `go run ./gateway` does (but on an
// ephemeral port) and checks that the live view shows every simulated server
// scraped, fresh, and busy with the demo traffic.
func TestRunServesLiveView(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-replicas", "3", "-demo-rps", "50"}, out) }()

	urlRE := regexp.MustCompile(`curl -s (http://127\.0\.0\.1:\d+/pool)`)
	var url string
	require.Eventually(t, func() bool {
		m := urlRE.FindStringSubmatch(out.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, 30*time.Second, 10*time.Millisecond, "no URL printed: %s", out.String())

	get := func() View {
		resp, err := http.Get(url)
		if err != nil {
			return View{}
		}
		defer resp.Body.Close()
		var v View
		if json.NewDecoder(resp.Body).Decode(&v) != nil {
			return View{}
		}
		return v
	}
	var v View
	require.Eventually(t, func() bool {
		v = get()
		if len(v.Endpoints) != 3 {
			return false
		}
		for _, e := range v.Endpoints {
			if e.Scrape.Stale || e.Metrics.ScrapedAt == nil || e.Metrics.PrefixCacheQueries == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "live view never showed 3 fresh, busy endpoints: %+v", &v)
	for _, e := range v.Endpoints {
		assert.Equal(t, "vllm", string(mustText(t, e.Metrics.Engine)))
		assert.Equal(t, 16, e.Metrics.BlockSize)
		assert.Positive(t, e.Metrics.NumGPUBlocks)
		assert.Empty(t, e.Scrape.Error)
		assert.Equal(t, []string{"sim-model"}, e.Models)
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func mustText(t *testing.T, m interface{ MarshalText() ([]byte, error) }) []byte {
	b, err := m.MarshalText()
	require.NoError(t, err)
	return b
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), []string{"-replicas", "0"}, &out))
	assert.Error(t, run(context.Background(), []string{"-nope"}, &out))
}
