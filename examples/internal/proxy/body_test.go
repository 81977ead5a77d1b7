package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/pool"
)

// TestRequestBodyBounds checks the request body against its Content-Length
// and MaxBody, and that a Content-Length alone (a header costs the client a
// few bytes) does not make the gateway allocate what it announces before the
// bytes arrive.
func TestRequestBodyBounds(t *testing.T) {
	p := pool.New() // no endpoints: a body that reads fine ends in 503
	s, _, err := router.Policy{NoFlowControl: true}.Build(p, nil)
	require.NoError(t, err)
	rt, err := router.New(p, s)
	require.NoError(t, err)
	h := proxy.New(rt)
	const body = `{"model":"m","prompt":"hi"}`
	tests := []struct {
		name      string
		announced int64
		sent      string
		want      int
		maxAlloc  uint64 // bytes allocated by the request, 0: unchecked
	}{
		{name: "exact", announced: int64(len(body)), sent: body, want: http.StatusServiceUnavailable},
		{name: "unknown length", announced: -1, sent: body, want: http.StatusServiceUnavailable},
		{name: "shorter than announced", announced: 100, sent: body, want: http.StatusBadRequest},
		{name: "longer than announced", announced: 5, sent: body, want: http.StatusBadRequest},
		{name: "over MaxBody", announced: proxy.MaxBody + 1, sent: body, want: http.StatusRequestEntityTooLarge},
		{name: "huge announced, little sent", announced: proxy.MaxBody, sent: body, want: http.StatusBadRequest, maxAlloc: 4 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(tt.sent))
			req.ContentLength = tt.announced
			rec := httptest.NewRecorder()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			h.ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			assert.Equal(t, tt.want, rec.Code, rec.Body.String())
			if tt.maxAlloc > 0 {
				assert.Less(t, after.TotalAlloc-before.TotalAlloc, tt.maxAlloc, "allocated for an announced body")
			}
		})
	}
}
