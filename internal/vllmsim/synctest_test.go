package vllmsim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
)

// In a synctest bubble the server's real-time driver runs on fake time, so
// its latencies can be checked exactly against the timing model.
func TestServerTimingInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := vllmsim.Qwen3_32B_H100x2()
		srv, err := vllmsim.NewServer(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- srv.Run(ctx) }()

		prompt := strings.Repeat("x", 16000) // 16,000 tokens: 2 chunks of 8192
		do := func() (time.Duration, map[string]any) {
			start := time.Now()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/v1/completions",
				strings.NewReader(`{"prompt":"`+prompt+`","max_tokens":1}`))
			srv.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var m map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m))
			return time.Since(start), m
		}
		cold, _ := do()
		want := 2*cfg.StepOverhead + time.Duration(16000/cfg.PrefillTokensPerSec*float64(time.Second))
		assert.Equal(t, want, cold)

		warm, m := do()
		cached := num(m["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)["cached_tokens"])
		assert.Equal(t, 15984, cached)
		assert.Equal(t, cfg.StepOverhead+time.Duration(16/cfg.PrefillTokensPerSec*float64(time.Second)), warm)

		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}
