package pool

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Engine is the kind of model server a metrics page came from.
// Engine values are immutable and safe for concurrent use.
type Engine uint8

const (
	// EngineUnknown is the zero value: no page has been parsed yet.
	EngineUnknown Engine = iota
	// EngineVLLM is vLLM (metric names prefixed "vllm:").
	EngineVLLM
	// EngineSGLang is SGLang (metric names prefixed "sglang:").
	EngineSGLang
)

// String returns "vllm", "sglang" or "unknown".
func (e Engine) String() string {
	switch e {
	case EngineVLLM:
		return "vllm"
	case EngineSGLang:
		return "sglang"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (e Engine) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (e *Engine) UnmarshalText(b []byte) error {
	switch string(b) {
	case "vllm":
		*e = EngineVLLM
	case "sglang":
		*e = EngineSGLang
	case "unknown", "":
		*e = EngineUnknown
	default:
		return fmt.Errorf("pool: unknown engine %q", b)
	}
	return nil
}

// Fields is a set of optional metric groups a page provided.
// Fields values are immutable and safe for concurrent use.
type Fields uint8

const (
	// FieldCacheConfig: vllm:cache_config_info (or sglang:cache_config_info) was
	// present; BlockSize, NumGPUBlocks and KVCacheTokens are meaningful.
	FieldCacheConfig Fields = 1 << iota
	// FieldLoRA: vllm:lora_requests_info was present (the server runs with
	// --enable-lora); MaxLoRA, RunningLoRAs and WaitingLoRAs are meaningful.
	FieldLoRA
	// FieldPrefixCache: prefix-cache query and hit counters were present.
	FieldPrefixCache
)

// Metrics is what one good scrape of an endpoint's /metrics page said. Values
// are summed over the page's `engine` label (one series per data-parallel engine
// behind the API server). A *Metrics read from an [Endpoint] is immutable and
// shared: do not modify it.
type Metrics struct {
	// Engine is the server kind the page came from.
	Engine Engine
	// Running is the number of requests in execution batches
	// (vllm:num_requests_running, sglang:num_running_reqs).
	Running int
	// Waiting is the queue depth (vllm:num_requests_waiting, sglang:num_queue_reqs).
	Waiting int
	// KVCacheUsage is the KV-cache usage, the mean over engines
	// (vllm:kv_cache_usage_perc, before v0.12 vllm:gpu_cache_usage_perc;
	// sglang:token_usage). Servers report a fraction in [0, 1]; a value
	// above 1 is kept as reported, not clamped.
	KVCacheUsage float64
	// KVCacheUsageMax is the largest KV-cache usage of any one engine.
	KVCacheUsageMax float64
	// Engines is the number of engine series KVCacheUsage was computed from.
	Engines int
	// BlockSize is the KV block size in tokens (cache_config_info block_size, or
	// SGLang's page_size). Valid if Present has FieldCacheConfig.
	BlockSize int
	// NumGPUBlocks is the number of GPU KV blocks, summed over engines
	// (num_gpu_blocks, SGLang's num_pages). Valid if Present has FieldCacheConfig.
	NumGPUBlocks int
	// KVCacheTokens is the KV capacity in tokens: kv_cache_size_tokens where the
	// server reports it, otherwise NumGPUBlocks × BlockSize.
	KVCacheTokens int
	// PrefixCacheQueries and PrefixCacheHits are the prefix-cache counters, in
	// tokens (vllm:prefix_cache_queries_total, vllm:prefix_cache_hits_total; before
	// v0.12 vllm:gpu_prefix_cache_*). The hit rate is Δhits/Δqueries between two
	// scrapes. Valid if Present has FieldPrefixCache.
	PrefixCacheQueries float64
	PrefixCacheHits    float64
	// MaxLoRA, RunningLoRAs and WaitingLoRAs come from the newest
	// vllm:lora_requests_info series. Valid if Present has FieldLoRA.
	MaxLoRA      int
	RunningLoRAs []string
	WaitingLoRAs []string
	// Present says which optional groups the page had.
	Present Fields
	// ScrapedAt is when the page was fetched (by the scraper's clock). The zero
	// time means the endpoint has never been scraped successfully.
	ScrapedAt time.Time
}

// Has reports whether all groups in f were present on the page.
func (m *Metrics) Has(f Fields) bool { return m.Present&f == f }

// Status is the outcome of an endpoint's most recent scrapes. A *Status read
// from an [Endpoint] is immutable and shared: do not modify it.
type Status struct {
	// LastAttempt is when the most recent scrape finished (good or bad).
	LastAttempt time.Time
	// LastSuccess is when the most recent good scrape was fetched; it equals the
	// ScrapedAt of the endpoint's Metrics. Zero if there was none.
	LastSuccess time.Time
	// Err is the error of the most recent scrape, nil if it was good.
	Err error
	// Failures is the number of consecutive failed scrapes.
	Failures int
	// Stale reports that the endpoint has had no good scrape for longer than the
	// scraper's staleness age (or none at all yet). Its Metrics are then the last
	// good values, kept, but old.
	Stale bool
}

// Load is the gateway's own view of the work it has sent to an endpoint and
// that has not finished yet. It is fresher than any scrape.
// A Load is a copy, not a live view: a plain value, safe to share read-only.
type Load struct {
	// Requests is the number of requests dispatched and not yet ended.
	Requests int64 `json:"requests"`
	// UncachedTokens is the number of uncached prompt tokens of requests that have
	// been dispatched but have not produced their first token: prefill work the
	// endpoint still has to do.
	UncachedTokens int64 `json:"uncached_tokens"`
}

// ErrNotScraped is the Status.Err of an endpoint that has not been scraped yet.
// Its Status is Stale: treat its metrics as unknown until the first scrape.
var ErrNotScraped = errors.New("pool: not scraped yet")

var (
	zeroMetrics  = &Metrics{}
	initialState = &Status{Err: ErrNotScraped, Stale: true}
)

// live is the mutable state of one pool membership. It is shared by every
// version of the endpoint's description (updates keep it) and by Flights.
type live struct {
	requests atomic.Int64
	tokens   atomic.Int64
	metrics  atomic.Pointer[Metrics]
	status   atomic.Pointer[Status]
	_        [64]byte // keep neighbouring endpoints' counters off this cache line
}

func newLive() *live {
	l := &live{}
	l.metrics.Store(zeroMetrics)
	l.status.Store(initialState)
	return l
}

// Metrics returns the last good scraped metrics; never nil. Before the first
// good scrape it is a zero Metrics (ScrapedAt is zero).
func (e *Endpoint) Metrics() *Metrics {
	if e.live == nil {
		return zeroMetrics
	}
	return e.live.metrics.Load()
}

// Status returns the scrape status; never nil.
func (e *Endpoint) Status() *Status {
	if e.live == nil {
		return initialState
	}
	return e.live.status.Load()
}

// Stale reports whether the endpoint's metrics are stale (see [Status]).
func (e *Endpoint) Stale() bool { return e.Status().Stale }

// Load returns the gateway-side in-flight work on the endpoint.
func (e *Endpoint) Load() Load {
	if e.live == nil {
		return Load{}
	}
	return Load{Requests: e.live.requests.Load(), UncachedTokens: e.live.tokens.Load()}
}

// StoreMetrics records m as the endpoint's newest good metrics and marks the
// endpoint fresh, as a successful scrape does. It is for metrics sources other
// than [Scraper] (a push feed, a simulator, tests). The pool keeps its own copy
// of m; m.ScrapedAt should be set by the caller's clock.
func (e *Endpoint) StoreMetrics(m Metrics) {
	if e.live == nil {
		return
	}
	e.live.storeGood(&m, m.ScrapedAt)
}

func (l *live) storeGood(m *Metrics, at time.Time) {
	l.metrics.Store(m)
	l.status.Store(&Status{LastAttempt: at, LastSuccess: at})
}

// scraped holds what one good scrape publishes, allocated together: one
// allocation per scrape instead of two.
type scraped struct {
	m  Metrics
	st Status
}

// storeScraped publishes r's metrics and a good status at time at. r must
// not be modified afterwards.
func (l *live) storeScraped(r *scraped, at time.Time) {
	r.st = Status{LastAttempt: at, LastSuccess: at}
	l.metrics.Store(&r.m)
	l.status.Store(&r.st)
}

// storeFailure records a failed scrape; the last good metrics are kept.
func (l *live) storeFailure(err error, at time.Time, stale bool) {
	prev := l.status.Load()
	l.status.Store(&Status{
		LastAttempt: at,
		LastSuccess: prev.LastSuccess,
		Err:         err,
		Failures:    prev.Failures + 1,
		Stale:       stale || prev.Stale,
	})
}

// markStale sets Stale on status seen, unless it was replaced meanwhile (by a
// newer scrape, which decides staleness itself).
func (l *live) markStale(seen *Status) {
	next := *seen
	next.Stale = true
	l.status.CompareAndSwap(seen, &next)
}

// Flight tracks one request dispatched to an endpoint, from [Endpoint.Dispatch]
// to [Flight.End]. It is a small value: keep it in the request's own state, call
// FirstToken when the first token arrives and End exactly when the request is
// over (success, error or cancellation). Both are idempotent, and End without
// FirstToken also releases the uncached tokens. A Flight is not safe for
// concurrent use; it belongs to the goroutine that handles the request. The
// zero Flight does nothing.
type Flight struct {
	l      *live
	tokens int64
	state  uint8 // flightPrefill, flightDecode, flightDone
}

const (
	flightPrefill uint8 = iota
	flightDecode
	flightDone
)

// Dispatch records a request sent to e with uncachedTokens prompt tokens that
// the endpoint must compute (the prompt minus its cached prefix), and returns
// its Flight. It does not allocate.
func (e *Endpoint) Dispatch(uncachedTokens int) Flight {
	if e.live == nil {
		return Flight{state: flightDone}
	}
	t := int64(max(uncachedTokens, 0))
	e.live.requests.Add(1)
	if t != 0 {
		e.live.tokens.Add(t)
	}
	return Flight{l: e.live, tokens: t}
}

// FirstToken records that the request's first token arrived: its prompt is
// computed, so its uncached tokens no longer count.
func (f *Flight) FirstToken() {
	if f.l == nil || f.state != flightPrefill {
		return
	}
	f.state = flightDecode
	if f.tokens != 0 {
		f.l.tokens.Add(-f.tokens)
	}
}

// End records that the request is over.
func (f *Flight) End() {
	if f.l == nil || f.state == flightDone {
		return
	}
	f.FirstToken()
	f.state = flightDone
	f.l.requests.Add(-1)
}
