package router

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/scheduler"
)

// Metrics are a router's operator metrics, written in the Prometheus text
// format by [Metrics.WriteTo]. Counters are atomics; per-endpoint and
// per-reason series are created on first use. A Metrics is safe for
// concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	pool *pool.Pool
	flow *scheduler.FlowControl

	decisions   atomic.Int64
	rejections  sync.Map                 // scheduler.Reason → *atomic.Int64
	mu          sync.RWMutex             // guards routed (the map, not the counters)
	routed      map[string]*atomic.Int64 // by endpoint ID
	retries     atomic.Int64
	completed   [6]atomic.Int64 // by status class: error, 1xx … 5xx
	promptToks  atomic.Int64    // prompt tokens of routed requests
	cachedToks  atomic.Int64    // of which the chosen endpoint held (predicted)
	usagePrompt atomic.Int64    // prompt tokens reported by servers
	usageCached atomic.Int64    // cached tokens reported by servers
	usageOutput atomic.Int64    // completion tokens reported by servers

	decisionLatency histogram // routing overhead, flow-control wait excluded
	flowWait        histogram
	ttft            histogram // dispatch to first response bytes
}

// NewMetrics returns metrics that also report p's per-endpoint state and
// fc's queue (fc may be nil) when written.
func NewMetrics(p *pool.Pool, fc *scheduler.FlowControl) *Metrics {
	m := &Metrics{pool: p, flow: fc, routed: make(map[string]*atomic.Int64)}
	m.decisionLatency.init(decisionBuckets)
	m.flowWait.init(waitBuckets)
	m.ttft.init(waitBuckets)
	return m
}

var (
	decisionBuckets = []float64{5e-6, 10e-6, 15e-6, 20e-6, 30e-6, 40e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3}
	waitBuckets     = []float64{1e-3, 5e-3, 10e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10, 30}
)

func counter(m *sync.Map, key any) *atomic.Int64 {
	if c, ok := m.Load(key); ok {
		return c.(*atomic.Int64)
	}
	c, _ := m.LoadOrStore(key, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func (m *Metrics) rejected(err error) {
	if m == nil {
		return
	}
	counter(&m.rejections, Reason(err)).Add(1)
}

func (m *Metrics) decided(f *Flight) {
	if m == nil {
		return
	}
	m.decisions.Add(1)
	m.routedCounter(f.Endpoint.ID).Add(1)
	m.promptToks.Add(int64(f.Request.PromptLen()))
	m.cachedToks.Add(int64(f.Request.PromptLen() - f.Decision.UncachedTokens))
	m.decisionLatency.observe(f.Overhead().Seconds())
	if f.r.flow != nil {
		m.flowWait.observe(f.waited.Seconds())
	}
}

func (m *Metrics) retried(string) {
	if m == nil {
		return
	}
	m.retries.Add(1)
}

func (m *Metrics) firstToken(d time.Duration) {
	if m == nil {
		return
	}
	m.ttft.observe(d.Seconds())
}

func (m *Metrics) ended(_ *Flight, o Outcome) {
	if m == nil {
		return
	}
	class := 0
	if o.Err == nil && o.Status >= 100 && o.Status < 600 {
		class = o.Status / 100
	}
	m.completed[class].Add(1)
	if o.HasUsage {
		m.usagePrompt.Add(int64(o.Usage.PromptTokens))
		m.usageCached.Add(int64(o.Usage.CachedTokens))
		m.usageOutput.Add(int64(o.Usage.CompletionTokens))
	}
}

// routedCounter returns the endpoint's counter, creating it on first use.
func (m *Metrics) routedCounter(id string) *atomic.Int64 {
	m.mu.RLock()
	c := m.routed[id]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.routed[id]; c == nil {
		c = new(atomic.Int64)
		m.routed[id] = c
	}
	return c
}

// Routed returns how many requests were routed to the endpoint with ID id.
func (m *Metrics) Routed(id string) int64 {
	if m == nil {
		return 0
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c := m.routed[id]; c != nil {
		return c.Load()
	}
	return 0
}

// PrefixHitRatio returns the fraction of routed prompt tokens that the chosen
// endpoints held in their prefix cache, by the index, at decision time.
func (m *Metrics) PrefixHitRatio() float64 {
	p := m.promptToks.Load()
	if p == 0 {
		return 0
	}
	return float64(m.cachedToks.Load()) / float64(p)
}

// DecisionQuantile returns an upper bound of the q-quantile of the routing
// overhead per request: the upper bound of the histogram bucket holding it
// (the largest finite bound when it is above every bucket; 0 with no data).
func (m *Metrics) DecisionQuantile(q float64) time.Duration {
	return time.Duration(m.decisionLatency.quantileBound(q) * float64(time.Second))
}

// labelEscaper escapes a label value as the Prometheus text format wants:
// only backslash, double quote and line feed (Go's %q escapes more, which
// Prometheus parsers reject or read differently).
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// WriteTo writes the metrics in the Prometheus text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriter(w)}
	p := func(format string, args ...any) { fmt.Fprintf(cw, format, args...) }

	p("# HELP routekit_decisions_total Requests routed to an endpoint.\n# TYPE routekit_decisions_total counter\nroutekit_decisions_total %d\n", m.decisions.Load())
	p("# HELP routekit_rejections_total Requests not routed, by drop reason.\n# TYPE routekit_rejections_total counter\n")
	for _, kv := range sorted(&m.rejections) {
		p("routekit_rejections_total{reason=\"%s\"} %d\n", kv.k, kv.v)
	}
	p("# HELP routekit_routed_requests_total Requests routed, by endpoint.\n# TYPE routekit_routed_requests_total counter\n")
	m.mu.RLock()
	ids := make([]string, 0, len(m.routed))
	for id := range m.routed {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	slices.Sort(ids)
	for _, id := range ids {
		p("routekit_routed_requests_total{endpoint=\"%s\"} %d\n", labelEscaper.Replace(id), m.Routed(id))
	}
	p("# HELP routekit_retries_total Requests moved to a fallback endpoint.\n# TYPE routekit_retries_total counter\nroutekit_retries_total %d\n", m.retries.Load())
	p("# HELP routekit_completed_requests_total Requests ended, by upstream status class.\n# TYPE routekit_completed_requests_total counter\n")
	for class := range m.completed {
		name := "error"
		if class > 0 {
			name = strconv.Itoa(class) + "xx"
		}
		if n := m.completed[class].Load(); n > 0 {
			p("routekit_completed_requests_total{status=\"%s\"} %d\n", name, n)
		}
	}
	p("# HELP routekit_prompt_tokens_total Prompt tokens of routed requests.\n# TYPE routekit_prompt_tokens_total counter\nroutekit_prompt_tokens_total %d\n", m.promptToks.Load())
	p("# HELP routekit_prefix_hit_tokens_total Prompt tokens the chosen endpoint held in cache, by the index.\n# TYPE routekit_prefix_hit_tokens_total counter\nroutekit_prefix_hit_tokens_total %d\n", m.cachedToks.Load())
	p("# HELP routekit_prefix_hit_ratio Prefix-cache hit ratio predicted at decision time (hit tokens / prompt tokens).\n# TYPE routekit_prefix_hit_ratio gauge\nroutekit_prefix_hit_ratio %g\n", m.PrefixHitRatio())
	p("# HELP routekit_usage_tokens_total Tokens reported in responses' usage.\n# TYPE routekit_usage_tokens_total counter\n")
	p("routekit_usage_tokens_total{kind=\"prompt\"} %d\nroutekit_usage_tokens_total{kind=\"cached\"} %d\nroutekit_usage_tokens_total{kind=\"completion\"} %d\n",
		m.usagePrompt.Load(), m.usageCached.Load(), m.usageOutput.Load())
	m.decisionLatency.write(cw, "routekit_decision_duration_seconds", "Routing overhead per request (parse, tokenize, hash, schedule, dispatch), flow-control wait excluded.")
	m.flowWait.write(cw, "routekit_flow_wait_seconds", "Time requests waited in flow control.")
	m.ttft.write(cw, "routekit_time_to_first_byte_seconds", "Time from dispatch to the first response body bytes.")
	if m.flow != nil {
		n, b := m.flow.Len()
		p("# HELP routekit_flow_queue_requests Requests waiting in flow control.\n# TYPE routekit_flow_queue_requests gauge\nroutekit_flow_queue_requests %d\n", n)
		p("# HELP routekit_flow_queue_bytes Bytes of requests waiting in flow control.\n# TYPE routekit_flow_queue_bytes gauge\nroutekit_flow_queue_bytes %d\n", b)
	}
	if m.pool != nil {
		eps := m.pool.Snapshot().Endpoints()
		p("# HELP routekit_endpoint_inflight_requests Requests dispatched to the endpoint and not ended.\n# TYPE routekit_endpoint_inflight_requests gauge\n")
		for _, e := range eps {
			p("routekit_endpoint_inflight_requests{endpoint=\"%s\"} %d\n", labelEscaper.Replace(e.ID), e.Load().Requests)
		}
		p("# HELP routekit_endpoint_inflight_uncached_tokens Uncached prompt tokens in flight before their first token.\n# TYPE routekit_endpoint_inflight_uncached_tokens gauge\n")
		for _, e := range eps {
			p("routekit_endpoint_inflight_uncached_tokens{endpoint=\"%s\"} %d\n", labelEscaper.Replace(e.ID), e.Load().UncachedTokens)
		}
		p("# HELP routekit_endpoint_queue_length Waiting queue scraped from the endpoint's /metrics.\n# TYPE routekit_endpoint_queue_length gauge\n")
		for _, e := range eps {
			p("routekit_endpoint_queue_length{endpoint=\"%s\"} %d\n", labelEscaper.Replace(e.ID), e.Metrics().Waiting)
		}
		p("# HELP routekit_endpoint_kv_cache_usage KV-cache usage scraped from the endpoint (0-1).\n# TYPE routekit_endpoint_kv_cache_usage gauge\n")
		for _, e := range eps {
			p("routekit_endpoint_kv_cache_usage{endpoint=\"%s\"} %g\n", labelEscaper.Replace(e.ID), e.Metrics().KVCacheUsage)
		}
		p("# HELP routekit_endpoint_stale Whether the endpoint's metrics are stale (1) or fresh (0).\n# TYPE routekit_endpoint_stale gauge\n")
		for _, e := range eps {
			v := 0
			if e.Stale() {
				v = 1
			}
			p("routekit_endpoint_stale{endpoint=\"%s\"} %d\n", labelEscaper.Replace(e.ID), v)
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil && cw.err == nil {
		cw.err = err
	}
	return cw.n, cw.err
}

type kv struct {
	k string
	v int64
}

func sorted(m *sync.Map) []kv {
	var out []kv
	m.Range(func(k, v any) bool {
		out = append(out, kv{fmt.Sprint(k), v.(*atomic.Int64).Load()})
		return true
	})
	slices.SortFunc(out, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	return out
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// histogram is a fixed-bucket Prometheus histogram with atomic counts.
type histogram struct {
	bounds []float64
	counts []atomic.Int64 // per bucket (not cumulative), plus +Inf
	sum    atomic.Uint64  // float64 bits
	n      atomic.Int64
}

func (h *histogram) init(bounds []float64) {
	h.bounds = bounds
	h.counts = make([]atomic.Int64, len(bounds)+1)
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) quantileBound(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		if cum >= rank {
			return b
		}
	}
	return h.bounds[len(h.bounds)-1]
}

func (h *histogram) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, b, cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, cum, name, math.Float64frombits(h.sum.Load()), name, cum)
}
