package tokenizer

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
	"golang.org/x/sync/singleflight"
)

// Remote asks a vLLM server for token IDs: POST /tokenize (prompt, or chat messages rendered with
// the model's chat template) and the render endpoints /v1/completions/render and
// /v1/chat/completions/render, which return exactly the prompt token IDs the server will use.
// Chat requests go through it until chat templates render in-process. Results are kept in a
// bounded LRU cache keyed by a 128-bit hash of the request, and identical concurrent requests
// share one round trip (each caller still returns when its own context is done; if the caller
// that started it is cancelled, the others get its error and may retry). Remote is safe for
// concurrent use.
type Remote struct {
	base    string
	client  *http.Client
	model   string
	timeout time.Duration
	maxBody int64

	group singleflight.Group
	mu    sync.Mutex // guards lru and items
	lru   *list.List // of *cacheItem, most recent first
	items map[xxh3.Uint128]*list.Element
	size  int
}

type cacheItem struct {
	key xxh3.Uint128
	ids [][]uint32
}

// RemoteOption configures a Remote.
// Options are immutable values, safe to reuse.
type RemoteOption interface{ applyRemote(*Remote) }

type remoteOptionFunc func(*Remote)

func (f remoteOptionFunc) applyRemote(r *Remote) { f(r) }

// WithHTTPClient sets the HTTP client (default: a client without its own timeout; each request
// is bounded by WithTimeout).
func WithHTTPClient(c *http.Client) RemoteOption {
	return remoteOptionFunc(func(r *Remote) { r.client = c })
}

// WithModel sets the "model" field sent with /tokenize requests (default: none; vLLM then uses
// its served model).
func WithModel(name string) RemoteOption {
	return remoteOptionFunc(func(r *Remote) { r.model = name })
}

// WithTimeout bounds each request (default 5s; 0 means no bound beyond the caller's context).
func WithTimeout(d time.Duration) RemoteOption {
	return remoteOptionFunc(func(r *Remote) { r.timeout = d })
}

// WithRemoteCache sets how many results the cache keeps (default 1024; 0 disables it).
func WithRemoteCache(entries int) RemoteOption {
	return remoteOptionFunc(func(r *Remote) { r.size = max(entries, 0) })
}

// ErrRemote wraps every failure of a remote tokenization (transport error, timeout, non-2xx
// status, malformed response). Callers can branch on it to fall back to a local estimate.
var ErrRemote = errors.New("tokenizer: remote tokenization failed")

// NewRemote returns a client of the vLLM server at baseURL (for example "http://10.0.0.7:8000").
func NewRemote(baseURL string, opts ...RemoteOption) (*Remote, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("tokenizer: remote base URL %q: want http:// or https://", baseURL)
	}
	r := &Remote{
		base:    strings.TrimRight(baseURL, "/"),
		client:  &http.Client{},
		timeout: 5 * time.Second,
		maxBody: 64 << 20,
		size:    1024,
		lru:     list.New(),
		items:   make(map[xxh3.Uint128]*list.Element),
	}
	for _, o := range opts {
		o.applyRemote(r)
	}
	if r.client == nil {
		return nil, errors.New("tokenizer: nil HTTP client")
	}
	return r, nil
}

// ChatRequest is the chat form of vLLM's /tokenize. Messages and Tools are passed through
// verbatim (key order matters to chat templates).
// Remote only reads it, so one ChatRequest may be shared between goroutines.
type ChatRequest struct {
	// Messages is the request's "messages" JSON array.
	Messages json.RawMessage
	// Tools is the optional "tools" JSON array.
	Tools json.RawMessage
	// AddGenerationPrompt appends the assistant header; nil means vLLM's default (true).
	AddGenerationPrompt *bool
	// ContinueFinalMessage leaves the last message open (exclusive with AddGenerationPrompt).
	ContinueFinalMessage bool
	// AddSpecialTokens adds the tokenizer's special tokens on top of the template (vLLM's chat
	// default is false: the template already emits BOS).
	AddSpecialTokens bool
	// ChatTemplateKwargs is the optional "chat_template_kwargs" JSON object.
	ChatTemplateKwargs json.RawMessage
}

// Tokenize returns the IDs of prompt through /tokenize, with the tokenizer's special tokens
// (BOS…) when addSpecial is set, as vLLM's /v1/completions does by default.
func (r *Remote) Tokenize(ctx context.Context, prompt string, addSpecial bool) ([]uint32, error) {
	body := map[string]any{"prompt": prompt, "add_special_tokens": addSpecial}
	if r.model != "" {
		body["model"] = r.model
	}
	return r.tokenize(ctx, body)
}

// TokenizeChat returns the IDs of a chat conversation rendered by the server's chat template,
// through /tokenize.
func (r *Remote) TokenizeChat(ctx context.Context, req ChatRequest) ([]uint32, error) {
	if len(req.Messages) == 0 {
		return nil, errors.New("tokenizer: TokenizeChat without messages")
	}
	body := map[string]any{
		"messages":               req.Messages,
		"add_special_tokens":     req.AddSpecialTokens,
		"continue_final_message": req.ContinueFinalMessage,
	}
	switch {
	case req.AddGenerationPrompt != nil:
		body["add_generation_prompt"] = *req.AddGenerationPrompt
	case req.ContinueFinalMessage:
		body["add_generation_prompt"] = false
	}
	if len(req.Tools) > 0 {
		body["tools"] = req.Tools
	}
	if len(req.ChatTemplateKwargs) > 0 {
		body["chat_template_kwargs"] = req.ChatTemplateKwargs
	}
	if r.model != "" {
		body["model"] = r.model
	}
	return r.tokenize(ctx, body)
}

func (r *Remote) tokenize(ctx context.Context, body map[string]any) ([]uint32, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: encode request: %v", ErrRemote, err)
	}
	out, err := r.do(ctx, "/tokenize", data, func(resp []byte) ([][]uint32, error) {
		var v struct {
			Tokens *[]uint32 `json:"tokens"`
		}
		if err := json.Unmarshal(resp, &v); err != nil {
			return nil, err
		}
		if v.Tokens == nil {
			return nil, errors.New(`response has no "tokens"`)
		}
		return [][]uint32{*v.Tokens}, nil
	})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// RenderCompletion posts a /v1/completions request body, as the client sent it, to
// /v1/completions/render and returns the token IDs of each prompt.
func (r *Remote) RenderCompletion(ctx context.Context, requestBody []byte) ([][]uint32, error) {
	return r.do(ctx, "/v1/completions/render", requestBody, parseRender)
}

// RenderChat posts a /v1/chat/completions request body, as the client sent it, to
// /v1/chat/completions/render and returns the prompt token IDs the server will use.
func (r *Remote) RenderChat(ctx context.Context, requestBody []byte) ([]uint32, error) {
	out, err := r.do(ctx, "/v1/chat/completions/render", requestBody, parseRender)
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("%w: chat render returned %d prompts, want 1", ErrRemote, len(out))
	}
	return out[0], nil
}

// parseRender reads a GenerateRequest object, or a list of them.
func parseRender(resp []byte) ([][]uint32, error) {
	type generate struct {
		TokenIDs *[]uint32 `json:"token_ids"`
	}
	var list []generate
	if t := bytes.TrimLeft(resp, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(resp, &list); err != nil {
			return nil, err
		}
	} else {
		var one generate
		if err := json.Unmarshal(resp, &one); err != nil {
			return nil, err
		}
		list = []generate{one}
	}
	if len(list) == 0 {
		return nil, errors.New("render returned no prompts")
	}
	out := make([][]uint32, len(list))
	for i, g := range list {
		if g.TokenIDs == nil {
			return nil, fmt.Errorf(`render result %d has no "token_ids"`, i)
		}
		out[i] = *g.TokenIDs
	}
	return out, nil
}

// do posts body to path, with caching and request coalescing, and parses the response.
func (r *Remote) do(ctx context.Context, path string, body []byte, parse func([]byte) ([][]uint32, error)) ([][]uint32, error) {
	h := xxh3.New128()
	_, _ = h.WriteString(path)
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(body)
	key := h.Sum128()
	if ids, ok := r.lookup(key); ok {
		return ids, nil
	}
	kb := key.Bytes()
	// DoChan, not Do: a caller that joins a round trip started by another must still return
	// when its own context is done, not wait for the first caller's deadline.
	ch := r.group.DoChan(string(kb[:]), func() (any, error) {
		ids, err := r.post(ctx, path, body, parse)
		if err == nil {
			r.store(key, ids)
		}
		return ids, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return clone2(res.Val.([][]uint32)), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrRemote, path, ctx.Err())
	}
}

func (r *Remote) post(ctx context.Context, path string, body []byte, parse func([]byte) ([][]uint32, error)) ([][]uint32, error) {
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRemote, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRemote, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, r.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: read response: %w", ErrRemote, path, err)
	}
	if int64(len(data)) > r.maxBody {
		return nil, fmt.Errorf("%w: %s: response larger than %d bytes", ErrRemote, path, r.maxBody)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%w: %s: HTTP %d: %s", ErrRemote, path, resp.StatusCode, errorMessage(data))
	}
	ids, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: bad response: %v", ErrRemote, path, err)
	}
	return ids, nil
}

// errorMessage extracts vLLM's error message ({"error": {"message"}} or {"message"}) or returns
// the start of the body.
func errorMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error.Message != "" {
			return e.Error.Message
		}
		if e.Message != "" {
			return e.Message
		}
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return strings.TrimSpace(string(body))
}

func (r *Remote) lookup(key xxh3.Uint128) ([][]uint32, bool) {
	if r.size == 0 {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.items[key]
	if !ok {
		return nil, false
	}
	r.lru.MoveToFront(el)
	return clone2(el.Value.(*cacheItem).ids), true
}

func (r *Remote) store(key xxh3.Uint128, ids [][]uint32) {
	if r.size == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.items[key]; ok {
		r.lru.MoveToFront(el)
		return
	}
	r.items[key] = r.lru.PushFront(&cacheItem{key: key, ids: clone2(ids)})
	for r.lru.Len() > r.size {
		last := r.lru.Back()
		r.lru.Remove(last)
		delete(r.items, last.Value.(*cacheItem).key)
	}
}

// CacheLen returns the number of cached results.
func (r *Remote) CacheLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

func clone2(v [][]uint32) [][]uint32 {
	out := make([][]uint32, len(v))
	for i, ids := range v {
		out[i] = append([]uint32{}, ids...)
	}
	return out
}
