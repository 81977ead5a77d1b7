package tokenizer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeVLLM mimics vLLM's /tokenize and render endpoints closely enough to check what the client
// sends and how it reads the answers.
type fakeVLLM struct {
	calls  atomic.Int64
	mu     sync.Mutex // guards bodies
	bodies []map[string]any
	delay  time.Duration
}

func (f *fakeVLLM) handler(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	record := func(r *http.Request) map[string]any {
		f.calls.Add(1)
		data, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Errorf("request body is not JSON: %q", data)
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, m)
		f.mu.Unlock()
		if f.delay > 0 {
			time.Sleep(f.delay)
		}
		return m
	}
	mux.HandleFunc("POST /tokenize", func(w http.ResponseWriter, r *http.Request) {
		m := record(r)
		var toks []int
		switch {
		case m["prompt"] != nil:
			if m["add_special_tokens"] == true {
				toks = append(toks, 128000)
			}
			for range strings.Fields(m["prompt"].(string)) {
				toks = append(toks, 42)
			}
		case m["messages"] != nil:
			toks = []int{128000, 128006, 882, 128007}
			if m["add_generation_prompt"] != false {
				toks = append(toks, 128006, 78191, 128007, 271)
			}
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"object":"error","message":"need prompt or messages","type":"BadRequestError","code":400}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"count": len(toks), "max_model_len": 8192, "tokens": toks, "token_strs": nil})
	})
	mux.HandleFunc("POST /v1/completions/render", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		_, _ = w.Write([]byte(`[{"request_id":"cmpl-1","token_ids":[1,2,3],"features":null,"sampling_params":{}}]`))
	})
	mux.HandleFunc("POST /v1/chat/completions/render", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		_, _ = w.Write([]byte(`{"request_id":"chatcmpl-1","token_ids":[128000,128006,9906],"features":null}`))
	})
	mux.HandleFunc("POST /broken/tokenize", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"tokens": [1, 2`))
	})
	// Bad answers a server (or a proxy in front of it) can give with status 200.
	answers := map[string]string{
		"negative":  `{"tokens": [1, -2]}`,
		"too-large": `{"tokens": [4294967296]}`,
		"float":     `{"tokens": [1.5]}`,
		"null":      `{"tokens": null}`,
		"html":      `<html>502 Bad Gateway</html>`,
		"empty":     ``,
		"trailing":  `{"tokens": [1]} {"tokens": [2]}`,
		"no-ids":    `[{"request_id": "cmpl-1"}]`,
		"no-prompt": `[]`,
		"big":       `{"tokens": [` + strings.Repeat("1,", 200) + `1]}`,
	}
	mux.HandleFunc("POST /bad/{kind}/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(answers[r.PathValue("kind")]))
	})
	return mux
}

func TestRemote(t *testing.T) {
	f := &fakeVLLM{}
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()
	r, err := NewRemote(srv.URL, WithModel("meta-llama/Llama-3.1-8B-Instruct"))
	require.NoError(t, err)
	ctx := context.Background()

	ids, err := r.Tokenize(ctx, "hello big world", true)
	require.NoError(t, err)
	assert.Equal(t, []uint32{128000, 42, 42, 42}, ids)
	assert.Equal(t, "meta-llama/Llama-3.1-8B-Instruct", f.bodies[0]["model"])
	assert.Equal(t, true, f.bodies[0]["add_special_tokens"])

	ids, err = r.TokenizeChat(ctx, ChatRequest{Messages: json.RawMessage(`[{"role":"user","content":"hi"}]`)})
	require.NoError(t, err)
	assert.Equal(t, []uint32{128000, 128006, 882, 128007, 128006, 78191, 128007, 271}, ids)
	assert.Equal(t, false, f.bodies[1]["add_special_tokens"])
	assert.NotContains(t, f.bodies[1], "add_generation_prompt", "nil leaves vLLM's default")

	no := false
	ids, err = r.TokenizeChat(ctx, ChatRequest{Messages: json.RawMessage(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: &no,
		ChatTemplateKwargs: json.RawMessage(`{"enable_thinking":false}`)})
	require.NoError(t, err)
	assert.Equal(t, []uint32{128000, 128006, 882, 128007}, ids)
	assert.Equal(t, map[string]any{"enable_thinking": false}, f.bodies[2]["chat_template_kwargs"])

	got, err := r.RenderCompletion(ctx, []byte(`{"model":"m","prompt":"x"}`))
	require.NoError(t, err)
	assert.Equal(t, [][]uint32{{1, 2, 3}}, got)
	chat, err := r.RenderChat(ctx, []byte(`{"model":"m","messages":[{"role":"user","content":"Hello"}]}`))
	require.NoError(t, err)
	assert.Equal(t, []uint32{128000, 128006, 9906}, chat)
	assert.Equal(t, "Hello", f.bodies[4]["messages"].([]any)[0].(map[string]any)["content"], "body passed through verbatim")

	// Cached: same requests make no new calls, and callers cannot corrupt the cache.
	before := f.calls.Load()
	ids, err = r.Tokenize(ctx, "hello big world", true)
	require.NoError(t, err)
	ids[0] = 7
	ids, err = r.Tokenize(ctx, "hello big world", true)
	require.NoError(t, err)
	assert.Equal(t, []uint32{128000, 42, 42, 42}, ids)
	assert.Equal(t, before, f.calls.Load())
	assert.Equal(t, 5, r.CacheLen())
}

func TestRemoteErrors(t *testing.T) {
	f := &fakeVLLM{}
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()
	ctx := context.Background()

	type errCase struct {
		name string
		path string // appended to the server URL
		call func(*Remote) error
		want string
	}
	tokenize := func(r *Remote) error { _, err := r.Tokenize(ctx, "x", false); return err }
	render := func(r *Remote) error { _, err := r.RenderCompletion(ctx, []byte(`{}`)); return err }
	tests := []errCase{
		{"server error message", "", func(r *Remote) error {
			_, err := r.tokenize(ctx, map[string]any{"nothing": true})
			return err
		}, "HTTP 400: need prompt or messages"},
		{"truncated JSON", "/broken", tokenize, "bad response"},
		{"not found", "/nope", func(r *Remote) error { _, err := r.RenderChat(ctx, []byte(`{}`)); return err }, "HTTP 404"},
		{"tokenize answer negative", "/bad/negative", tokenize, "cannot unmarshal number -2"},
		{"tokenize answer too large", "/bad/too-large", tokenize, "cannot unmarshal number 4294967296"},
		{"tokenize answer float", "/bad/float", tokenize, "cannot unmarshal number 1.5"},
		{"tokenize answer null", "/bad/null", tokenize, `no "tokens"`},
		{"tokenize answer html", "/bad/html", tokenize, "invalid character '<'"},
		{"tokenize answer empty", "/bad/empty", tokenize, "unexpected end of JSON input"},
		{"tokenize answer trailing", "/bad/trailing", tokenize, "invalid character '{' after top-level value"},
		{"tokenize answer too big", "/bad/big", tokenize, "response larger than 256 bytes"},
		{"render without token_ids", "/bad/no-ids", render, `no "token_ids"`},
		{"render with no prompts", "/bad/no-prompt", render, "render returned no prompts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRemote(srv.URL + tt.path)
			require.NoError(t, err)
			r.maxBody = 256
			err = tt.call(r)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrRemote)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, 0, r.CacheLen(), "errors are not cached")
		})
	}
	r, err := NewRemote(srv.URL)
	require.NoError(t, err)
	_, err = r.TokenizeChat(ctx, ChatRequest{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "without messages")

	_, err = NewRemote("localhost:8000")
	require.Error(t, err)

	// A dead endpoint and a slow one fail with ErrRemote within the timeout.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	r, err = NewRemote(deadURL)
	require.NoError(t, err)
	_, err = r.Tokenize(ctx, "x", false)
	require.ErrorIs(t, err, ErrRemote)

	slow := &fakeVLLM{delay: 300 * time.Millisecond}
	srv2 := httptest.NewServer(slow.handler(t))
	defer srv2.Close()
	r, err = NewRemote(srv2.URL, WithTimeout(20*time.Millisecond))
	require.NoError(t, err)
	_, err = r.Tokenize(ctx, "x", false)
	require.ErrorIs(t, err, ErrRemote)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestRemoteCacheBoundAndCoalescing(t *testing.T) {
	f := &fakeVLLM{delay: 20 * time.Millisecond}
	srv := httptest.NewServer(f.handler(t))
	defer srv.Close()
	r, err := NewRemote(srv.URL, WithRemoteCache(2))
	require.NoError(t, err)
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.Tokenize(ctx, "same prompt", false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Less(t, f.calls.Load(), int64(8), "concurrent identical requests share round trips")

	for _, p := range []string{"a", "b", "c"} {
		_, err := r.Tokenize(ctx, p, false)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, r.CacheLen())
	before := f.calls.Load()
	_, err = r.Tokenize(ctx, "a", false) // evicted: least recently used
	require.NoError(t, err)
	assert.Equal(t, before+1, f.calls.Load())

	off, err := NewRemote(srv.URL, WithRemoteCache(0))
	require.NoError(t, err)
	_, err = off.Tokenize(ctx, "a", false)
	require.NoError(t, err)
	assert.Equal(t, 0, off.CacheLen())
}

// TestRemoteJoinerContext checks that a caller who joins a round trip started by another still
// returns when its own context is done. Before DoChan it waited for the first caller's answer
// (here a second; with WithTimeout(0), possibly forever).
func TestRemoteJoinerContext(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		select {
		case <-release:
		case <-time.After(time.Second):
		}
		_, _ = w.Write([]byte(`{"tokens": [1, 2, 3]}`))
	}))
	defer srv.Close()
	r, err := NewRemote(srv.URL, WithTimeout(0))
	require.NoError(t, err)

	type result struct {
		ids []uint32
		err error
	}
	first := make(chan result, 1)
	go func() {
		ids, err := r.Tokenize(context.Background(), "same prompt", false)
		first <- result{ids, err}
	}()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = r.Tokenize(ctx, "same prompt", false)
	close(release)
	require.Error(t, err, "the joiner returns at its own deadline")
	assert.ErrorIs(t, err, ErrRemote)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	res := <-first
	require.NoError(t, res.err)
	assert.Equal(t, []uint32{1, 2, 3}, res.ids)
	assert.Equal(t, 1, r.CacheLen())
}
