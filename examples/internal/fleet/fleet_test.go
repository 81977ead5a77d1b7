package fleet_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/router"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"model":"Qwen/Qwen3-8B","block_size":16,"scrape_interval":"100ms",
		"endpoints":[{"url":"http://10.0.0.7:8000","kv_events":"tcp://10.0.0.7:5557"},{"id":"b","url":"http://10.0.0.8:8000"}]}`), 0o600))
	c, err := fleet.Load(good)
	require.NoError(t, err)
	assert.Equal(t, "Qwen/Qwen3-8B", c.Model)
	assert.Equal(t, fleet.Duration(100*time.Millisecond), c.ScrapeInterval)
	require.Len(t, c.Endpoints, 2)
	assert.Equal(t, "tcp://10.0.0.7:5557", c.Endpoints[0].KVEvents)
	assert.Equal(t, "b", c.Endpoints[1].ID)

	for name, body := range map[string]string{
		"typo":     `{"modle":"x"}`,
		"duration": `{"scrape_interval":50}`,
		"bad dur":  `{"scrape_interval":"fast"}`,
		"trunc":    `{"model":`,
		"trailing": `{"model":"m"} {"embedded":2}`,
		"garbage":  `{"model":"m"}, oops`,
	} {
		p := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := fleet.Load(p)
		assert.Error(t, err, name)
	}
	_, err = fleet.Load(filepath.Join(dir, "missing.json"))
	assert.Error(t, err)
}

func TestParseEndpoints(t *testing.T) {
	eps, err := fleet.ParseEndpoints("http://a:1, http://b:2", "tcp://a:5557,")
	require.NoError(t, err)
	assert.Equal(t, []fleet.Endpoint{{URL: "http://a:1", KVEvents: "tcp://a:5557"}, {URL: "http://b:2"}}, eps)
	_, err = fleet.ParseEndpoints("http://a:1,http://b:2", "tcp://a:5557")
	assert.Error(t, err)
	eps, err = fleet.ParseEndpoints("", "")
	require.NoError(t, err)
	assert.Empty(t, eps)
}

func TestStartRejectsBadConfig(t *testing.T) {
	_, err := fleet.Start(t.Context(), fleet.Config{Endpoints: []fleet.Endpoint{{URL: "http://a:1"}}})
	assert.ErrorContains(t, err, "model name is required")
	_, err = fleet.Start(t.Context(), fleet.Config{Model: "m", Endpoints: []fleet.Endpoint{{URL: "ftp://a:1"}}})
	assert.ErrorContains(t, err, "not an http://host:port URL")
	// A negative count (from -embedded or a file's "embedded") is an error,
	// not a makeslice panic.
	_, err = fleet.Start(t.Context(), fleet.Config{Embedded: -1})
	assert.ErrorContains(t, err, "embedded")
}

// TestRealEndpointsRemoteTokenizer fronts "real" servers (plain HTTP
// handlers) without a local tokenizer: prompts are tokenized by the servers'
// /tokenize, round robin, and the KV index runs in approximate mode.
func TestRealEndpointsRemoteTokenizer(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	newServer := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/metrics":
				fmt.Fprint(w, "vllm:num_requests_running{model_name=\"m\"} 0\nvllm:num_requests_waiting{model_name=\"m\"} 0\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0\n")
			case "/tokenize":
				mu.Lock()
				hits[name]++
				mu.Unlock()
				var req struct {
					Prompt   string                     `json:"prompt"`
					Messages []struct{ Content string } `json:"messages"`
				}
				_ = json.NewDecoder(r.Body).Decode(&req)
				n := len(req.Prompt)
				for _, m := range req.Messages {
					n += len(m.Content)
				}
				toks := make([]int, n)
				_ = json.NewEncoder(w).Encode(map[string]any{"tokens": toks, "count": n})
			}
		}))
	}
	a, b := newServer("a"), newServer("b")
	defer a.Close()
	defer b.Close()
	f, err := fleet.Start(t.Context(), fleet.Config{Model: "m", Endpoints: []fleet.Endpoint{{ID: "a", URL: a.URL}, {ID: "b", URL: b.URL}}})
	require.NoError(t, err)
	defer f.Close()
	assert.Nil(t, f.Sim)
	assert.Nil(t, f.Subscriber(), "no KV events configured")
	for _, e := range f.Pool.Snapshot().Endpoints() {
		assert.False(t, e.Stale(), "scraped once by Start: %v", e.Status().Err)
	}
	rt, _, _, err := f.Router(router.Policy{})
	require.NoError(t, err)
	for i := range 4 {
		fl, err := rt.Route(t.Context(), &router.Input{API: router.ChatCompletions,
			Body: fmt.Appendf(nil, `{"model":"m","messages":[{"role":"user","content":"%064d"}]}`, i)})
		require.NoError(t, err)
		assert.Equal(t, 64, fl.Request.PromptLen(), "tokens came from /tokenize")
		assert.Len(t, fl.Request.BlockKeys, 4)
		fl.End(router.Outcome{Status: 200})
	}
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, hits, "tokenize requests are spread")
}
