package vllmsim

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	"github.com/routekit/routekit/internal/promfloat"
)

// Bucket bounds of vLLM's histograms (vllm/v1/metrics/loggers.py).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	itlBuckets  = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	reqBuckets  = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

// tokenBuckets returns vLLM's 1-2-5 buckets up to maxModelLen
// (build_1_2_5_buckets).
func tokenBuckets(maxLen int) []float64 {
	var out []float64
	for exp := 1.0; ; exp *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := m * exp
			if v > float64(maxLen) {
				return out
			}
			out = append(out, v)
		}
	}
}

type histogram struct {
	bounds []float64
	counts []float64 // per bucket, not cumulative
	sum    float64
	n      float64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]float64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v: le is inclusive
	h.counts[i]++
	h.sum += v
	h.n++
}

// serverMetrics holds the histograms the server observes; counters and
// gauges come from the engine. Guarded by Server.mu.
type serverMetrics struct {
	ttft, itl, tpot, e2e, queue, inference, prefill, decode *histogram
	promptTokens, genTokens                                 *histogram
	created                                                 float64

	// lora holds vllm:lora_requests_info's series in the order their label
	// combinations first appeared; loraIdx indexes it by labels.
	lora    []loraSeries
	loraIdx map[string]int
}

type loraSeries struct {
	labels string // max_lora="…",running_lora_adapters="…",waiting_lora_adapters="…"
	ts     float64
}

// setLoRAs sets the series for this combination to ts (Unix seconds),
// adding it if new. The old combinations keep their last time, as with
// prometheus_client's labels(...).set_to_current_time().
func (m *serverMetrics) setLoRAs(maxLoRAs int, running, waiting []string, ts float64) {
	labels := `max_lora="` + strconv.Itoa(maxLoRAs) +
		`",running_lora_adapters="` + escapeLabel(strings.Join(running, ",")) +
		`",waiting_lora_adapters="` + escapeLabel(strings.Join(waiting, ",")) + `"`
	if i, ok := m.loraIdx[labels]; ok {
		m.lora[i].ts = ts
		return
	}
	if m.loraIdx == nil {
		m.loraIdx = make(map[string]int)
	}
	m.loraIdx[labels] = len(m.lora)
	m.lora = append(m.lora, loraSeries{labels: labels, ts: ts})
}

func newServerMetrics(maxLen int, created float64) *serverMetrics {
	return &serverMetrics{
		ttft: newHistogram(ttftBuckets), itl: newHistogram(itlBuckets), tpot: newHistogram(itlBuckets),
		e2e: newHistogram(reqBuckets), queue: newHistogram(reqBuckets),
		inference: newHistogram(reqBuckets), prefill: newHistogram(reqBuckets), decode: newHistogram(reqBuckets),
		promptTokens: newHistogram(tokenBuckets(maxLen)), genTokens: newHistogram(tokenBuckets(maxLen)),
		created: created,
	}
}

// metricsWriter renders Prometheus text format exactly as Python's
// prometheus_client 0.x does for vLLM: HELP and TYPE lines, counters with a
// _total sample and a separate _created gauge, labels sorted by name, and
// floats formatted by floatToGoString.
//
// With keep set, it answers prometheus_client's name[] query (its restricted
// registry): only samples named in keep, and a metric's HELP and TYPE lines
// only if the metric keeps a sample. A counter's or histogram's _created
// gauge belongs to its metric: when only _created is kept, the metric's own
// HELP and TYPE lines are still written, before the gauge's.
type metricsWriter struct {
	b bytes.Buffer
	// engines holds each engine's label list, engine="r",model_name="...",
	// in rank order: a per-engine metric has one sample per engine, in
	// that order, as vLLM creates its children engine by engine.
	engines []string
	created float64

	keep     map[string]bool // nil: every sample
	famStart int             // where the current metric's HELP line starts
	famKept  bool            // the current metric has a sample (not counting _created)
	inSub    bool            // writing the current metric's _created gauge
	subStart int             // where that gauge's HELP line starts
	subKept  bool            // that gauge has a sample
}

// end drops what the last metric kept no sample of; call it when done.
func (w *metricsWriter) end() {
	if w.keep == nil {
		return
	}
	switch {
	case !w.famKept && !w.subKept:
		w.b.Truncate(w.famStart)
	case w.inSub && !w.subKept:
		w.b.Truncate(w.subStart)
	}
}

func (w *metricsWriter) header(name, help, typ string) {
	w.end()
	w.famStart, w.famKept = w.b.Len(), false
	w.inSub, w.subKept = false, false
	w.writeHeader(name, help, typ)
}

// createdHeader starts the current metric's _created gauge.
func (w *metricsWriter) createdHeader(name, help string) {
	w.inSub, w.subStart, w.subKept = true, w.b.Len(), false
	w.writeHeader(name, help, "gauge")
}

func (w *metricsWriter) writeHeader(name, help, typ string) {
	w.b.WriteString("# HELP ")
	w.b.WriteString(name)
	w.b.WriteByte(' ')
	w.b.WriteString(help)
	w.b.WriteString("\n# TYPE ")
	w.b.WriteString(name)
	w.b.WriteByte(' ')
	w.b.WriteString(typ)
	w.b.WriteByte('\n')
}

func (w *metricsWriter) sample(name, labels string, v float64) {
	if w.keep != nil && !w.keep[name] {
		return
	}
	if w.inSub {
		w.subKept = true
	} else {
		w.famKept = true
	}
	w.b.WriteString(name)
	w.b.WriteByte('{')
	w.b.WriteString(labels)
	w.b.WriteString("} ")
	w.b.WriteString(promfloat.Format(v))
	w.b.WriteByte('\n')
}

// gauge writes a per-engine gauge; v gives engine i's value.
func (w *metricsWriter) gauge(name, help string, v func(i int) float64) {
	w.header(name, help, "gauge")
	for i, l := range w.engines {
		w.sample(name, l, v(i))
	}
}

// counter writes a per-engine counter: every engine's _total sample, then
// the _created gauge with every engine's sample, as prometheus_client moves
// _created samples behind a family's own.
func (w *metricsWriter) counter(base, help string, v func(i int) float64) {
	w.header(base+"_total", help, "counter")
	for i, l := range w.engines {
		w.sample(base+"_total", l, v(i))
	}
	w.createdHeader(base+"_created", help)
	for _, l := range w.engines {
		w.sample(base+"_created", l, w.createdVal())
	}
}

func (w *metricsWriter) createdVal() float64 { return w.created }

// withLabel inserts k="v" into the sorted label list.
func withLabel(labels, k, v string) string {
	parts := strings.Split(labels, ",")
	parts = append(parts, k+`="`+escapeLabel(v)+`"`)
	sort.Slice(parts, func(i, j int) bool {
		return labelName(parts[i]) < labelName(parts[j])
	})
	return strings.Join(parts, ",")
}

func labelName(kv string) string {
	if i := strings.IndexByte(kv, '='); i >= 0 {
		return kv[:i]
	}
	return kv
}

func escapeLabel(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, "\n", `\n`)
	return strings.ReplaceAll(v, `"`, `\"`)
}

// histogram writes a per-engine histogram, h giving engine i's: each
// engine's buckets, count and sum in turn, then the _created gauge.
func (w *metricsWriter) histogram(name, help string, h func(i int) *histogram) {
	w.header(name, help, "histogram")
	for i, l := range w.engines {
		h := h(i)
		var cum float64
		for i, ub := range h.bounds {
			cum += h.counts[i]
			w.sample(name+"_bucket", withLabel(l, "le", promfloat.Format(ub)), cum)
		}
		cum += h.counts[len(h.bounds)]
		w.sample(name+"_bucket", withLabel(l, "le", "+Inf"), cum)
		w.sample(name+"_count", l, h.n)
		w.sample(name+"_sum", l, h.sum)
	}
	w.createdHeader(name+"_created", help)
	for _, l := range w.engines {
		w.sample(name+"_created", l, w.createdVal())
	}
}
