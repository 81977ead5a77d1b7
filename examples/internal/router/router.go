package router

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/scheduler"
)

// Router is the routing pipeline every routekit example program shares. Per
// request it parses the body once, tokenizes, computes KV-block keys, waits in
// flow control, schedules, and records the dispatch (in-flight accounting in
// the pool, a speculative entry in the KV index); the returned [Flight] then
// follows the request to its first token and its end.
//
// A Router is safe for concurrent use. It starts no goroutine.
type Router struct {
	pool    *pool.Pool
	sched   *scheduler.Scheduler
	flow    *scheduler.FlowControl
	hasher  *prefix.Hasher
	index   *kvcache.Index
	tok     Tokenizer
	metrics *Metrics
	log     *DecisionLog
	clock   func() time.Time

	decisions sync.Pool // *scheduler.Decision
}

// Option configures a [Router].
// Options are immutable; one may be shared by several New calls, also
// concurrently.
type Option interface{ apply(*Router) }

type optionFunc func(*Router)

func (f optionFunc) apply(r *Router) { f(r) }

// WithFlowControl makes requests wait in fc while the fleet is saturated.
// Without it every request is scheduled at once.
func WithFlowControl(fc *scheduler.FlowControl) Option {
	return optionFunc(func(r *Router) { r.flow = fc })
}

// WithPrefix sets the block hasher for requests of its model and the KV index
// that receives speculative entries on dispatch (index may be nil). Without a
// hasher requests carry no block keys and are routed on load alone.
func WithPrefix(h *prefix.Hasher, index *kvcache.Index) Option {
	return optionFunc(func(r *Router) { r.hasher, r.index = h, index })
}

// WithTokenizer sets how prompts become tokens. Without one (or when it fails
// with [ErrNoChatTemplate], [ErrNoTokenizeServer] or [ErrTokenizeUnavailable])
// block keys are estimated from the prompt's bytes
// (prefix.Hasher.AppendTextKeys): they then match only speculative entries,
// never the model server's KV events. Any other tokenizer error rejects the
// request as a bad body (400).
func WithTokenizer(t Tokenizer) Option { return optionFunc(func(r *Router) { r.tok = t }) }

// WithMetrics records every decision and request outcome in m.
func WithMetrics(m *Metrics) Option { return optionFunc(func(r *Router) { r.metrics = m }) }

// WithDecisionLog keeps the most recent decisions, with per-endpoint scores, in l.
func WithDecisionLog(l *DecisionLog) Option { return optionFunc(func(r *Router) { r.log = l }) }

// WithClock sets the clock for latency measurements (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(r *Router) { r.clock = now }) }

// New returns a Router over the endpoints of p, deciding with s.
func New(p *pool.Pool, s *scheduler.Scheduler, opts ...Option) (*Router, error) {
	if p == nil || s == nil {
		return nil, errors.New("router: a pool and a scheduler are required")
	}
	r := &Router{pool: p, sched: s, clock: time.Now}
	for _, o := range opts {
		o.apply(r)
	}
	if r.clock == nil {
		return nil, errors.New("router: nil clock")
	}
	r.decisions.New = func() any { return new(scheduler.Decision) }
	return r, nil
}

// Pool returns the router's pool.
func (r *Router) Pool() *pool.Pool { return r.pool }

// Flow returns the router's flow control, or nil.
func (r *Router) Flow() *scheduler.FlowControl { return r.flow }

// Input is one request as a program received it.
// It is plain data with no internal synchronisation: share it only read-only.
type Input struct {
	// API is the endpoint the body was sent to.
	API API
	// Body is the raw request body; it is read, never modified.
	Body []byte
	// Header holds the request headers (canonical keys), or nil.
	Header http.Header
	// Subset, when HasSubset is set, restricts the candidates to the
	// endpoints with these addresses (the ext_proc subset hint). An empty
	// subset fails with 503.
	Subset    []string
	HasSubset bool
}

// Request headers the router reads.
const (
	HeaderRequestID = "X-Request-Id"
	// HeaderFairness names the tenant for flow-control fairness (llm-d's
	// name); the body's "user" is the fallback.
	HeaderFairness = "X-Llm-D-Inference-Fairness-Id"
	// HeaderPriority is an integer flow-control priority; negative is sheddable.
	HeaderPriority = "X-Routekit-Priority"
	// HeaderSession is the session-affinity key.
	HeaderSession = "X-Session-Id"
)

// NewRequestID returns a fresh x-request-id: a random per-process prefix and
// a counter (unique, cheap, and sortable in logs of one process).
func NewRequestID() string {
	return reqPrefix + strconv.FormatUint(reqSeq.Add(1), 10)
}

var (
	reqPrefix = func() string {
		var b [6]byte
		_, _ = cryptorand.Read(b[:])
		return "rk-" + hex.EncodeToString(b[:]) + "-"
	}()
	reqSeq atomic.Uint64
)

// ErrSubsetEmpty is returned when the subset hint names no known endpoint.
var ErrSubsetEmpty = fmt.Errorf("router: subset hint matches no endpoint: %w", scheduler.ErrNoEndpoints)

// Route runs the pipeline for in and returns the dispatched [Flight]. The
// caller must call [Flight.End] exactly once. Errors map to HTTP statuses with
// [Status] and to drop reasons with [Reason]; ctx ends waits in flow control.
func (r *Router) Route(ctx context.Context, in *Input) (*Flight, error) {
	start := r.clock()
	body, err := ParseBody(in.API, in.Body)
	if err != nil {
		r.metrics.rejected(err)
		return nil, err
	}
	f := &Flight{r: r, Body: body, start: start, subset: in.Subset, hasSubset: in.HasSubset}
	req := &f.Request
	req.Model = body.Model
	req.Size = int64(len(in.Body))
	req.MaxOutputTokens = body.MaxOutputTokens()
	if h := in.Header; h != nil {
		req.ID = h.Get(HeaderRequestID)
		req.Tenant = h.Get(HeaderFairness)
		req.Session = h.Get(HeaderSession)
		if p := h.Get(HeaderPriority); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				err = &BodyError{fmt.Errorf("header %s: %w", HeaderPriority, err)}
				r.metrics.rejected(err)
				return nil, err
			}
			req.Priority = n
		}
		req.Headers = h
	}
	if req.Tenant == "" {
		req.Tenant = body.User
	}
	if err := r.prepare(ctx, f); err != nil {
		r.metrics.rejected(err)
		return nil, err
	}

	eps := r.pool.Snapshot().Endpoints()
	if in.HasSubset {
		eps = subset(eps, in.Subset)
		if len(eps) == 0 {
			r.metrics.rejected(ErrSubsetEmpty)
			return nil, ErrSubsetEmpty
		}
	}
	var permit scheduler.Permit
	acquire := r.clock()
	if r.flow != nil {
		permit, err = r.flow.Acquire(ctx, req)
		if err != nil {
			r.metrics.rejected(err)
			return nil, err
		}
	}
	f.waited = r.clock().Sub(acquire)
	d := r.decisions.Get().(*scheduler.Decision)
	if err := r.sched.ScheduleInto(ctx, req, eps, d); err != nil {
		permit.Done()
		r.decisions.Put(d)
		r.metrics.rejected(err)
		return nil, err
	}
	f.Decision = d
	f.Fallbacks = d.Fallbacks
	f.dispatch(d.Endpoint, d.Results[0].Prefix.Blocks)
	permit.Done()
	f.routed = r.clock()
	r.metrics.decided(f)
	r.log.record(f)
	return f, nil
}

// prepare tokenizes the prompt and computes its block keys.
func (r *Router) prepare(ctx context.Context, f *Flight) error {
	req, body := &f.Request, f.Body
	if r.tok != nil {
		toks, err := r.tok.Tokenize(ctx, body, nil)
		switch {
		case err == nil:
			req.Tokens = toks
		case ctx.Err() != nil:
			// The client left (or its deadline passed) during the round trip:
			// that, not the body, is why tokenizing stopped.
			return ctx.Err()
		case errors.Is(err, ErrNoChatTemplate), errors.Is(err, ErrNoTokenizeServer), errors.Is(err, ErrTokenizeUnavailable):
			// fall through to the byte estimate
		default:
			var be *BodyError
			if errors.As(err, &be) {
				return err
			}
			return &BodyError{err}
		}
	}
	if r.hasher == nil || body.Model != r.hasher.Model() {
		if len(req.Tokens) == 0 {
			req.PromptTokens = max(estimateText(body)/4, 1)
		}
		return nil
	}
	req.BlockSize = r.hasher.BlockSize()
	extra := prefix.Extra{CacheSalt: body.CacheSalt}
	if len(req.Tokens) > 0 {
		req.BlockKeys = r.hasher.AppendKeys(make([]uint64, 0, len(req.Tokens)/req.BlockSize), req.Tokens, extra)
		return nil
	}
	text := promptText(body)
	req.BlockKeys = r.hasher.AppendTextKeys(nil, text, extra)
	req.PromptTokens = max(len(text)/4, 1)
	return nil
}

func promptText(b *Body) string {
	if b.API == Completions {
		return b.Prompt.Text
	}
	s, _ := ChatML(b.Messages, true, false)
	return s
}

func estimateText(b *Body) int {
	if b.API == Completions {
		if b.Prompt.IsTokens {
			return 4 * len(b.Prompt.Tokens)
		}
		return len(b.Prompt.Text)
	}
	n := 0
	for _, m := range b.Messages {
		n += len(m.Content) + len(m.Role) + 8
	}
	return n
}

// subset returns the endpoints whose Address is in addrs.
func subset(eps []*pool.Endpoint, addrs []string) []*pool.Endpoint {
	out := make([]*pool.Endpoint, 0, len(addrs))
	for _, e := range eps {
		for _, a := range addrs {
			if e.Address == a {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// Status maps an error from [Router.Route] to the HTTP status to answer with.
func Status(err error) int {
	var be *BodyError
	if errors.As(err, &be) {
		return http.StatusBadRequest
	}
	return scheduler.HTTPStatus(err)
}

// Reason maps an error from [Router.Route] to its drop reason.
func Reason(err error) scheduler.Reason {
	var be *BodyError
	if errors.As(err, &be) {
		return scheduler.ReasonBadRequest
	}
	return scheduler.DropReason(err)
}

// HeaderDropReason is the response header carrying a rejection's reason
// (llm-d's name, understood by its dashboards).
const HeaderDropReason = "X-Llm-D-Request-Dropped-Reason"

// Flight is one routed request, from dispatch to its end. It is not safe
// for concurrent use: it belongs to the goroutine handling the request.
type Flight struct {
	// Body is the parsed request body.
	Body *Body
	// Request is what the scheduler saw.
	Request scheduler.Request
	// Decision is the scheduler's decision (valid until End).
	Decision *scheduler.Decision
	// Endpoint is where the request is (now) sent; Fallbacks the endpoints
	// left to try, in order.
	Endpoint  *pool.Endpoint
	Fallbacks []*pool.Endpoint

	r         *Router
	flight    pool.Flight
	start     time.Time
	waited    time.Duration
	routed    time.Time
	first     bool
	retries   int
	ended     bool
	learned   int              // BlockKeys[learned:] were learned for Endpoint
	tried     []*pool.Endpoint // endpoints that could not be reached
	subset    []string         // the subset hint, for rescheduling
	hasSubset bool
}

// dispatch records the request as sent to ep, which holds the first matched
// blocks of its prompt: in-flight accounting for the uncached rest, and
// speculative index entries for the blocks ep does not hold yet. (Learning
// only the new blocks keeps speculation cheap for a hot prefix; the blocks
// ep already holds are in the index.)
// When the request moves on (Retry, Served), the entries learned for the
// endpoint it leaves are withdrawn: the request never reached it.
func (f *Flight) dispatch(ep *pool.Endpoint, matched int) {
	keys := f.Request.BlockKeys
	if f.r.index != nil && f.Endpoint != nil && f.learned < len(keys) {
		_ = f.r.index.Unlearn(f.Endpoint.ID, keys[f.learned:]) // IDs are never empty
	}
	f.Endpoint = ep
	f.flight = ep.Dispatch(f.Request.UncachedTokens(matched))
	f.learned = len(keys)
	if f.r.index != nil && matched < len(keys) {
		_ = f.r.index.Learn(ep.ID, keys[matched:]) // an unknown-endpoint error only means no speculation
		f.learned = matched
	}
}

// Destinations returns the endpoint and fallbacks as "host:port" addresses,
// comma-joined: the value of x-gateway-destination-endpoint.
func (f *Flight) Destinations() string {
	n := len(f.Endpoint.Address)
	for _, e := range f.Fallbacks {
		n += 1 + len(e.Address)
	}
	b := make([]byte, 0, n)
	b = append(b, f.Endpoint.Address...)
	for _, e := range f.Fallbacks {
		b = append(b, ',')
		b = append(b, e.Address...)
	}
	return string(b)
}

// matchedOn returns the prompt blocks ep holds, from the decision's prefix
// matches.
func (f *Flight) matchedOn(ep *pool.Endpoint) int {
	if f.Decision != nil && len(f.Decision.Results) > 0 {
		for _, c := range f.Decision.Results[0].Candidates() {
			if c.Endpoint == ep {
				return c.Prefix.Blocks
			}
		}
	}
	return 0
}

// maxRetries bounds how many endpoints one request is moved to.
const maxRetries = 3

// Retry moves the request to the next fallback after the current endpoint
// could not be reached (the request was not sent): the accounting moves with
// it. When the decision has no fallback left (prefix affinity may leave only
// the one endpoint holding the prefix), it schedules the request again among
// the endpoints not tried yet. It reports false when there is nowhere left
// to go or the request was moved maxRetries times already.
func (f *Flight) Retry(ctx context.Context) (*pool.Endpoint, bool) {
	if f.ended || f.retries >= maxRetries {
		return nil, false
	}
	f.tried = append(f.tried, f.Endpoint)
	var next *pool.Endpoint
	matched := 0
	if len(f.Fallbacks) > 0 {
		next, f.Fallbacks = f.Fallbacks[0], f.Fallbacks[1:]
		matched = f.matchedOn(next)
	} else {
		var eps []*pool.Endpoint
		for _, e := range f.r.pool.Snapshot().Endpoints() {
			if !slices.Contains(f.tried, e) && (!f.hasSubset || slices.Contains(f.subset, e.Address)) {
				eps = append(eps, e)
			}
		}
		if len(eps) == 0 || f.Decision == nil {
			return nil, false
		}
		if err := f.r.sched.ScheduleInto(ctx, &f.Request, eps, f.Decision); err != nil {
			return nil, false
		}
		next, f.Fallbacks = f.Decision.Endpoint, f.Decision.Fallbacks
		matched = f.Decision.Results[0].Prefix.Blocks
	}
	f.flight.End()
	f.dispatch(next, matched)
	f.retries++
	f.r.metrics.retried(next.ID)
	return next, true
}

// Served tells the flight which endpoint the proxy actually used (Envoy's
// x-gateway-destination-endpoint-served); if it is a fallback, the
// accounting moves there. Unknown addresses are ignored.
func (f *Flight) Served(addr string) {
	if f.ended || addr == "" || addr == f.Endpoint.Address {
		return
	}
	for i, e := range f.Fallbacks {
		if e.Address == addr {
			f.flight.End()
			f.dispatch(e, f.matchedOn(e))
			f.Fallbacks = f.Fallbacks[i+1:]
			f.retries++
			f.r.metrics.retried(e.ID)
			return
		}
	}
}

// FirstToken records that the response's first token (its first body bytes)
// arrived: the prompt's prefill is done.
func (f *Flight) FirstToken() {
	if f.first || f.ended {
		return
	}
	f.first = true
	f.flight.FirstToken()
	f.r.metrics.firstToken(f.r.clock().Sub(f.routed))
	if f.r.flow != nil {
		f.r.flow.Notify()
	}
}

// Outcome is how a request ended.
// It is plain data with no internal synchronisation: share it only read-only.
type Outcome struct {
	// Status is the model server's HTTP status (0 if none arrived).
	Status int
	// Usage is the reported usage, when HasUsage.
	Usage    Usage
	HasUsage bool
	// Err is set when the request failed or was cancelled.
	Err error
}

// End records the end of the request. It is idempotent; after it the
// Decision must not be used.
func (f *Flight) End(o Outcome) {
	if f.ended {
		return
	}
	f.ended = true
	f.flight.End()
	if f.r.flow != nil {
		f.r.flow.Notify()
	}
	f.r.metrics.ended(f, o)
	if f.Decision != nil {
		d := f.Decision
		f.Decision, f.Fallbacks = nil, nil
		f.r.decisions.Put(d)
	}
}

// Overhead returns the time the router spent on the request before dispatch,
// not counting the wait in flow control.
func (f *Flight) Overhead() time.Duration { return f.routed.Sub(f.start) - f.waited }

// Waited returns the time the request spent in flow control.
func (f *Flight) Waited() time.Duration { return f.waited }
