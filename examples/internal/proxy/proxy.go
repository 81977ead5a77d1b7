package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/scheduler"
)

// MaxBody bounds a request body.
const MaxBody = 64 << 20

// HeaderEndpoint is the response header naming the endpoint that served the
// request.
const HeaderEndpoint = "X-Routekit-Endpoint"

// Handler is the gateway's http.Handler: /v1/completions and
// /v1/chat/completions (routed and proxied), /v1/models, /health, and, when
// configured, /metrics and /debug/decisions.
// A Handler is safe for concurrent use.
type Handler struct {
	rt        *router.Router
	metrics   *router.Metrics
	log       *router.DecisionLog
	transport http.RoundTripper
	rp        *httputil.ReverseProxy
	mux       *http.ServeMux
	draining  atomic.Bool
}

// Option configures a [Handler].
// Options are immutable; one may be shared by several New calls, also
// concurrently.
type Option interface{ apply(*Handler) }

type optionFunc func(*Handler)

func (f optionFunc) apply(h *Handler) { f(h) }

// WithMetrics serves m on GET /metrics.
func WithMetrics(m *router.Metrics) Option { return optionFunc(func(h *Handler) { h.metrics = m }) }

// WithDecisionLog serves l on GET /debug/decisions.
func WithDecisionLog(l *router.DecisionLog) Option {
	return optionFunc(func(h *Handler) { h.log = l })
}

// WithTransport sets the transport to the model servers (default: a clone of
// http.DefaultTransport with more idle connections per host).
func WithTransport(t http.RoundTripper) Option {
	return optionFunc(func(h *Handler) { h.transport = t })
}

// New returns a Handler routing with rt.
func New(rt *router.Router, opts ...Option) *Handler {
	h := &Handler{rt: rt}
	for _, o := range opts {
		o.apply(h)
	}
	if h.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		h.transport = t
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      &retryTransport{base: h.transport},
		ModifyResponse: modifyResponse,
		ErrorHandler:   errorHandler,
		BufferPool:     bufferPool{},
		// FlushInterval 0: server-sent events (and bodies of unknown length)
		// are flushed after every write; JSON bodies are buffered normally.
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("POST /v1/completions", h.inference(router.Completions))
	h.mux.HandleFunc("POST /v1/chat/completions", h.inference(router.ChatCompletions))
	h.mux.HandleFunc("GET /v1/models", h.models)
	h.mux.HandleFunc("GET /health", h.health)
	if h.metrics != nil {
		h.mux.Handle("GET /metrics", router.MetricsHandler(h.metrics))
	}
	if h.log != nil {
		h.mux.Handle("GET /debug/decisions", router.DecisionsHandler(h.log))
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Drain prepares a graceful shutdown: /health answers 503 (so load balancers
// stop sending), and requests waiting in flow control are refused with 503.
// Requests already dispatched continue; http.Server.Shutdown waits for them.
func (h *Handler) Drain() {
	h.draining.Store(true)
	if fc := h.rt.Flow(); fc != nil {
		fc.Close()
	}
}

type ctxKey struct{}

// exchange is one proxied request's state, shared by the reverse proxy's
// hooks through the outbound request's context (they all run on the
// handler's goroutine, one after the other).
type exchange struct {
	flight  *router.Flight
	body    []byte
	outcome router.Outcome
	tap     *tap
}

func (h *Handler) inference(api router.API) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, "rejected-body-too-large", fmt.Errorf("request body over %d bytes", MaxBody))
				return
			}
			writeError(w, http.StatusBadRequest, string(scheduler.ReasonBadRequest), fmt.Errorf("reading body: %w", err))
			return
		}
		if r.Header.Get(router.HeaderRequestID) == "" { // forwarded upstream too
			r.Header.Set(router.HeaderRequestID, router.NewRequestID())
		}
		f, err := h.rt.Route(r.Context(), &router.Input{API: api, Body: body, Header: r.Header})
		if err != nil {
			writeError(w, router.Status(err), string(router.Reason(err)), err)
			return
		}
		ex := &exchange{flight: f, body: body}
		r.Body = newBodyReader(body) // the proxy sends the same bytes
		// ReverseProxy panics with http.ErrAbortHandler when the body copy
		// fails (client gone): end the flight on every path.
		defer func() {
			if ex.tap != nil {
				ex.tap.finish(ex)
			}
			f.End(ex.outcome)
		}()
		h.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ex)))
	}
}

// bodyReader is a request body over bytes already read (one allocation).
type bodyReader struct{ bytes.Reader }

func newBodyReader(b []byte) *bodyReader {
	r := new(bodyReader)
	r.Reset(b)
	return r
}

// Close implements io.Closer.
func (*bodyReader) Close() error { return nil }

// bufferPool recycles the reverse proxy's 32 KiB copy buffers (it allocates
// and clears one per request otherwise).
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// maxPrealloc bounds what readBody allocates on the strength of a
// Content-Length header alone; beyond it the buffer grows as bytes arrive.
const maxPrealloc = 1 << 20

// errBodyTooLarge is readBody's error for a Content-Length over MaxBody.
var errBodyTooLarge = &http.MaxBytesError{Limit: MaxBody}

// readBody reads the request body, at most MaxBody bytes. With a known
// length it reads into one buffer of that size, preallocated up to
// maxPrealloc (so a header cannot make the gateway allocate 64 MiB before the
// bytes arrive) and grown to the announced size as they do.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n > MaxBody {
		return nil, errBodyTooLarge
	}
	rd := http.MaxBytesReader(w, r.Body, MaxBody)
	if n <= 0 {
		return io.ReadAll(rd)
	}
	buf := make([]byte, 0, min(n, maxPrealloc)+1) // +1 to see a body longer than announced
	for {
		if len(buf) == cap(buf) { // then len(buf) <= n: grow towards n+1
			buf = slices.Grow(buf, int(min(int64(cap(buf)), n+1-int64(len(buf)))))
		}
		k, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if int64(len(buf)) > n {
			return nil, errors.New("body longer than its Content-Length")
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(buf)) < n {
		return nil, fmt.Errorf("body shorter than its Content-Length (%d of %d bytes)", len(buf), n)
	}
	return buf, nil
}

func rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(ctxKey{}).(*exchange)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = ex.flight.Endpoint.Address
	pr.Out.Host = ""
	pr.SetXForwarded()
}

// retryTransport sends the request to the flight's endpoint and, when the
// connection cannot be made, to its fallbacks in order.
type retryTransport struct{ base http.RoundTripper }

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := req.Context().Value(ctxKey{}).(*exchange)
	out := req // the reverse proxy's own outbound request, body unread
	for {
		resp, err := t.base.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		if !notSent(err) || req.Context().Err() != nil {
			return nil, err
		}
		next, ok := ex.flight.Retry(req.Context())
		if !ok {
			return nil, err
		}
		out = req.Clone(req.Context())
		out.URL.Host = next.Address
		out.Body = newBodyReader(ex.body)
		out.ContentLength = int64(len(ex.body))
	}
}

// notSent reports whether err means the request never left: the connection
// could not be established.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func modifyResponse(resp *http.Response) error {
	ex := resp.Request.Context().Value(ctxKey{}).(*exchange)
	ex.outcome.Status = resp.StatusCode
	resp.Header.Set(HeaderEndpoint, ex.flight.Endpoint.ID)
	t := &tap{rc: resp.Body, flight: ex.flight,
		sse: strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")}
	ex.tap = t
	resp.Body = t
	return nil
}

func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := r.Context().Value(ctxKey{}).(*exchange)
	ex.outcome.Err = err
	if r.Context().Err() != nil {
		return // the client is gone; nobody reads an answer
	}
	writeError(w, http.StatusBadGateway, "upstream-unreachable", fmt.Errorf("endpoint %s: %w", ex.flight.Endpoint.ID, err))
}

// maxUsageBody bounds how much of a JSON response is kept to read its usage.
const maxUsageBody = 4 << 20

// tap watches a response body as the reverse proxy copies it: the first
// bytes mark the first token, and usage is read on the way.
type tap struct {
	rc     io.ReadCloser
	flight *router.Flight
	sse    bool
	first  bool
	eof    bool
	scan   router.SSEScanner
	buf    []byte
	over   bool
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		if !t.first {
			t.first = true
			t.flight.FirstToken()
		}
		if t.sse {
			_, _ = t.scan.Write(p[:n])
		} else if !t.over {
			if len(t.buf)+n > maxUsageBody {
				t.over, t.buf = true, nil
			} else {
				t.buf = append(t.buf, p[:n]...)
			}
		}
	}
	if errors.Is(err, io.EOF) {
		t.eof = true
	}
	return n, err
}

func (t *tap) Close() error { return t.rc.Close() }

// finish fills the outcome once the copy is over.
func (t *tap) finish(ex *exchange) {
	if t.sse {
		ex.outcome.Usage, ex.outcome.HasUsage = t.scan.Usage()
	} else if t.eof {
		ex.outcome.Usage, ex.outcome.HasUsage = router.ParseUsage(t.buf)
	}
	if !t.eof && ex.outcome.Err == nil {
		ex.outcome.Err = errors.New("proxy: response not read to the end (client gone or upstream failed)")
	}
}

// writeError answers with an OpenAI-style JSON error and the drop reason.
func writeError(w http.ResponseWriter, status int, reason string, err error) {
	if reason != "" {
		w.Header().Set(router.HeaderDropReason, reason)
	}
	w.Header().Set("Content-Type", "application/json")
	if status == 499 { // client gone: nobody listens, keep the status standard
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": err.Error(), "type": http.StatusText(status), "code": status}})
}

func (h *Handler) models(w http.ResponseWriter, _ *http.Request) {
	var names []string
	for _, e := range h.rt.Pool().Snapshot().Endpoints() {
		for _, m := range append(slices.Clone(e.Models), e.LoRAAdapters...) {
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	data := make([]map[string]any, len(names))
	for i, n := range names {
		data[i] = map[string]any{"id": n, "object": "model", "owned_by": "routekit"}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

// health is 200 when the gateway is not draining and at least one endpoint
// has fresh metrics.
func (h *Handler) health(w http.ResponseWriter, _ *http.Request) {
	if h.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	for _, e := range h.rt.Pool().Snapshot().Endpoints() {
		if !e.Stale() {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
	}
	http.Error(w, "no endpoint with fresh metrics", http.StatusServiceUnavailable)
}
