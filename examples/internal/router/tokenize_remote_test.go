package router_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

// TestRouteRemoteTokenizeFailures checks how a failing /tokenize server
// affects routing: a server that is down, broken or answers 5xx is not the
// client's fault, so the request is routed on the byte estimate; a 4xx is the
// server refusing this prompt (400 to the client); a client that left gets
// its cancellation, not a 400.
func TestRouteRemoteTokenizeFailures(t *testing.T) {
	answer := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	tests := []struct {
		name       string
		base       string
		cancelled  bool
		wantErr    bool
		wantStatus int
	}{
		{name: "server down", base: deadURL},
		{name: "5xx", base: answer(http.StatusInternalServerError, `{"error":"boom"}`)},
		{name: "not JSON", base: answer(http.StatusOK, `<html>`)},
		{name: "4xx", base: answer(http.StatusBadRequest, `{"error":{"message":"bad messages"}}`), wantErr: true, wantStatus: http.StatusBadRequest},
		{name: "client gone", base: answer(http.StatusOK, `{"tokens":[1,2,3]}`), cancelled: true, wantErr: true, wantStatus: 499},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool.New()
			require.NoError(t, p.Store(pool.Endpoint{ID: "a", Address: "10.0.0.1:8000", Models: []string{"m"}}))
			for _, e := range p.Snapshot().Endpoints() {
				e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})
			}
			h, err := prefix.NewHasher("m", prefix.WithBlockSize(4))
			require.NoError(t, err)
			s, _, err := router.Policy{NoFlowControl: true}.Build(p, nil)
			require.NoError(t, err)
			rt, err := router.New(p, s, router.WithPrefix(h, nil), router.WithTokenizer(&router.Remote{
				Base: func(string) (string, bool) { return tt.base, true },
			}))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			f, err := rt.Route(ctx, &router.Input{API: router.ChatCompletions,
				Body: []byte(`{"model":"m","messages":[{"role":"user","content":"a prompt of some length"}]}`)})
			if tt.wantErr {
				require.Error(t, err)
				assert.Equal(t, tt.wantStatus, router.Status(err), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Positive(t, f.Request.PromptLen(), "routed on the byte estimate")
			assert.NotEmpty(t, f.Request.BlockKeys)
			f.End(router.Outcome{Status: 200})
		})
	}
}
