package fleetsim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
)

// Report summarises a run.
// It is plain data with no internal synchronisation: share it only read-only.
type Report struct {
	Summary
	// ITL are inter-token latency quantiles over every output token after
	// the first (vLLM's vllm:inter_token_latency_seconds), ±1%.
	ITL Quantiles
	// PrefixHitRate is the fleet's prefix-cache hit rate in tokens
	// (Σ hits / Σ queries over the replicas' counters).
	PrefixHitRate float64
	// MeanWaiting and MaxWaiting are the per-replica waiting-queue length
	// (vllm:num_requests_waiting), averaged over samples and replicas, and
	// the largest seen.
	MeanWaiting float64
	MaxWaiting  int
	// ReplicaSeconds is the integral of the replica count (starting,
	// ready or draining) over the run: the fleet's cost.
	ReplicaSeconds float64
	// Preemptions across the fleet.
	Preemptions int64
	// End is the virtual time the run ended.
	End time.Duration
	// Replicas has one entry per replica ever added.
	Replicas []ReplicaReport
	// Series samples the fleet every Config.SampleInterval.
	Series []Sample
	// Results has one entry per request (finished, rejected, or unfinished
	// at MaxTime), in completion order.
	Results []Result
}

// ReplicaReport is one replica's share of a run.
// It is plain data with no internal synchronisation: share it only read-only.
type ReplicaReport struct {
	ID                 int
	Routed, Completed  int
	PrefixHitRate      float64
	Added, Ready, Gone time.Duration // Gone is 0 if never removed
	// Final is the engine's state and counters at the end of the run.
	Final vllmsim.Stats
}

// Sample is the fleet at one instant.
// It is plain data with no internal synchronisation: share it only read-only.
type Sample struct {
	At                         time.Duration
	Replicas, Ready            int
	Waiting, Running, InFlight int
	// MeanKVUsage is the mean KV usage of ready replicas.
	MeanKVUsage float64
}

// Quantiles of a latency distribution.
// It is a plain value, safe to copy and to read from several goroutines.
type Quantiles struct {
	P50, P90, P99, Mean time.Duration
}

// Summary are the request-level figures of a set of results.
// It is a plain value, safe to copy and to read from several goroutines.
type Summary struct {
	Requests, Finished, Rejected, Unfinished int
	TTFT, E2E                                Quantiles
	// TPOT is the per-request mean time per output token after the first.
	TPOT Quantiles
	// QueueMean is the mean time from arrival to admission.
	QueueMean time.Duration
	// CachedFraction is Σ cached prompt tokens / Σ prompt tokens of the
	// finished requests.
	CachedFraction float64
	// OutputTokensPerSec and RequestsPerSec are finished output tokens and
	// requests divided by the span from the first arrival to the last
	// finish.
	OutputTokensPerSec, RequestsPerSec float64
}

// Summarize computes a Summary over results whose arrival is in [from, to)
// (to = 0 means no upper bound): use it for per-stage figures of a rate
// ladder.
func Summarize(results []Result, from, to time.Duration) Summary {
	var s Summary
	var ttft, e2e, tpot []time.Duration
	var queue time.Duration
	var prompt, cached, out int64
	first, last := time.Duration(math.MaxInt64), time.Duration(0)
	for _, r := range results {
		if r.Arrival < from || (to > 0 && r.Arrival >= to) {
			continue
		}
		s.Requests++
		switch {
		case r.Rejected:
			s.Rejected++
			continue
		case !r.Finished:
			s.Unfinished++
			continue
		}
		s.Finished++
		first = min(first, r.Arrival)
		last = max(last, r.Arrival+r.E2E)
		ttft = append(ttft, r.TTFT)
		e2e = append(e2e, r.E2E)
		if r.OutputTokens > 1 {
			tpot = append(tpot, (r.E2E-r.TTFT)/time.Duration(r.OutputTokens-1))
		}
		queue += r.Queue
		prompt += int64(r.PromptTokens)
		cached += int64(r.CachedTokens)
		out += int64(r.OutputTokens)
	}
	s.TTFT, s.E2E, s.TPOT = quantiles(ttft), quantiles(e2e), quantiles(tpot)
	if s.Finished > 0 {
		s.QueueMean = queue / time.Duration(s.Finished)
		span := (last - first).Seconds()
		if span > 0 {
			s.OutputTokensPerSec = float64(out) / span
			s.RequestsPerSec = float64(s.Finished) / span
		}
	}
	if prompt > 0 {
		s.CachedFraction = float64(cached) / float64(prompt)
	}
	return s
}

func quantiles(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[max(i, 0)]
	}
	return Quantiles{P50: q(0.5), P90: q(0.9), P99: q(0.99), Mean: sum / time.Duration(len(d))}
}

// String formats the report's headline figures on one line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests=%d finished=%d rejected=%d unfinished=%d ", r.Requests, r.Finished, r.Rejected, r.Unfinished)
	fmt.Fprintf(&b, "ttft p50=%v p90=%v p99=%v ", r.TTFT.P50.Round(time.Millisecond), r.TTFT.P90.Round(time.Millisecond), r.TTFT.P99.Round(time.Millisecond))
	fmt.Fprintf(&b, "itl p50=%v p90=%v ", r.ITL.P50.Round(100*time.Microsecond), r.ITL.P90.Round(100*time.Microsecond))
	fmt.Fprintf(&b, "out=%.0f tok/s req=%.2f/s hit=%.1f%% waiting mean=%.1f max=%d",
		r.OutputTokensPerSec, r.RequestsPerSec, 100*r.PrefixHitRate, r.MeanWaiting, r.MaxWaiting)
	return b.String()
}

func (s *Sim) sample() {
	sm := Sample{At: s.now, InFlight: s.inflight}
	ready := 0
	var kv float64
	for _, r := range s.replicas {
		if r.removed {
			continue
		}
		sm.Replicas++
		if !r.ready {
			continue
		}
		ready++
		st := r.eng.Stats()
		sm.Waiting += st.Waiting
		sm.Running += st.Running
		kv += st.KVUsage
	}
	sm.Ready = ready
	if ready > 0 {
		sm.MeanKVUsage = kv / float64(ready)
	}
	s.series = append(s.series, sm)
}

func (s *Sim) report() *Report {
	s.advance(s.now)
	results := s.results
	for _, rec := range s.recs {
		results = append(results, rec.res) // unfinished
	}
	for _, req := range s.holding { // never routed: no replica became ready
		results = append(results, Result{ID: req.ID, Group: req.Group, User: req.User, Turn: req.Turn,
			Replica: -1, PrefillReplica: -1, Arrival: req.Arrival, PromptTokens: len(req.Prompt)})
	}
	slices.SortStableFunc(results[len(s.results):], func(a, b Result) int { return int(a.ID - b.ID) })
	rep := &Report{Summary: Summarize(results, 0, 0), Results: results, Series: s.series, End: s.now,
		ReplicaSeconds: s.replSec}
	rep.ITL = s.itl.quantiles()
	var q, h int64
	for _, r := range s.replicas {
		st := r.eng.Stats()
		q += st.PrefixQueries
		h += st.PrefixHits
		rep.Preemptions += st.Preemptions
		rr := ReplicaReport{ID: r.id, Routed: r.routed, Completed: r.completed, Added: r.added, Ready: r.readyAt, Final: st}
		if r.removed {
			rr.Gone = r.removedAt
		}
		if st.PrefixQueries > 0 {
			rr.PrefixHitRate = float64(st.PrefixHits) / float64(st.PrefixQueries)
		}
		rep.Replicas = append(rep.Replicas, rr)
	}
	if q > 0 {
		rep.PrefixHitRate = float64(h) / float64(q)
	}
	var wsum float64
	var wn int
	for _, sm := range s.series {
		if sm.Ready == 0 {
			continue
		}
		wsum += float64(sm.Waiting) / float64(sm.Ready)
		wn++
	}
	if wn > 0 {
		rep.MeanWaiting = wsum / float64(wn)
	}
	for _, r := range s.replicas {
		rep.MaxWaiting = max(rep.MaxWaiting, r.maxWaiting)
	}
	return rep
}

// histogram is a log-bucketed latency histogram for the per-token ITL
// samples, which are too many to keep: buckets are the float64 exponent
// and the top 7 mantissa bits of the duration in ns, so a quantile is exact
// to within 0.8%.
type histogram struct {
	counts []int64
	n      int64
	sum    time.Duration
}

const (
	histShift = 52 - 7
	histBias  = 1023 << 7 // bucket of 1 ns
)

func (h *histogram) add(d time.Duration) {
	i := int(math.Float64bits(float64(max(d, 0))+1)>>histShift) - histBias
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]int64, i+1-len(h.counts)+64)...)
	}
	h.counts[i]++
	h.n++
	h.sum += d
}

// upper returns the upper bound of bucket i.
func (h *histogram) upper(i int) time.Duration {
	return time.Duration(math.Float64frombits(uint64(i+histBias+1)<<histShift) - 1)
}

func (h *histogram) quantile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := max(int64(math.Ceil(p*float64(h.n))), 1)
	var c int64
	for i, n := range h.counts {
		c += n
		if c >= target {
			return h.upper(i)
		}
	}
	return 0
}

func (h *histogram) quantiles() Quantiles {
	if h.n == 0 {
		return Quantiles{}
	}
	return Quantiles{P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), Mean: h.sum / time.Duration(h.n)}
}
