package scheduler

import (
	"fmt"
	"math"
	"net/http"

	"github.com/routekit/routekit/pool"
)

// Saturation is a saturation detector: it says how close a fleet is to being
// unable to take more work, from each endpoint's scraped queue and KV-cache usage
// and, optionally, the gateway's own in-flight counters (which are fresher than
// any scrape). The zero value means llm-d's utilization-detector defaults. It is
// plain data, read-only once in use, and safe for concurrent use.
//
// Per endpoint e:
//
//	level(e) = max(Waiting/QueueThreshold, KVCacheUsage/KVThreshold,
//	               InFlight/MaxInFlight, InFlightTokens/MaxInFlightTokens)
//
// (the last two only when set). The fleet's level is the mean over endpoints;
// the fleet is saturated when level ≥ 1. A stale endpoint (pool.Endpoint.Stale)
// counts as level 1 under [StaleSaturated], is left out under [StaleIgnore],
// and counts with its in-flight terms alone under [StaleLoadOnly]; a fleet with
// no usable endpoint is saturated.
//
// With MaxInFlight and MaxInFlightTokens unset this is llm-d's
// utilization-detector with headroom 0. Differences: staleness is the pool's
// (the scraper's WithStaleAfter, 2 s by default), not the detector's own
// 200 ms metricsStalenessThreshold; and under [StaleIgnore] an all-stale fleet
// is saturated, where llm-d's ignore policy scores it 0 and lets everything
// through (routekit will not treat a fleet it cannot see as idle; use
// [StaleFailOpen] on the scheduler to keep routing on old metrics, and
// [StaleLoadOnly] with in-flight limits to keep gating on the gateway's own
// counts).
type Saturation struct {
	// QueueThreshold is the waiting-queue length at which an endpoint is full.
	// Zero means 5.
	QueueThreshold float64
	// KVThreshold is the KV-cache usage (0–1) at which an endpoint is full. Zero
	// means 0.8.
	KVThreshold float64
	// MaxInFlight, if > 0, is the number of gateway in-flight requests
	// (pool.Load.Requests) at which an endpoint is full.
	MaxInFlight int
	// MaxInFlightTokens, if > 0, is the number of in-flight uncached prompt tokens
	// (pool.Load.UncachedTokens) at which an endpoint is full.
	MaxInFlightTokens int
	// Stale is the policy for endpoints whose metrics are stale.
	Stale StaleSaturation
}

// StaleSaturation is [Saturation]'s policy for stale endpoints.
// It is a plain value, safe to copy and to read from several goroutines.
type StaleSaturation uint8

const (
	// StaleSaturated counts a stale endpoint as full (fail closed: an all-stale
	// fleet halts dispatch). It is the default, as in llm-d.
	StaleSaturated StaleSaturation = iota
	// StaleIgnore leaves stale endpoints out of the mean; if all are stale the
	// fleet is saturated.
	StaleIgnore
	// StaleLoadOnly judges a stale endpoint by the gateway's own in-flight
	// counts alone (MaxInFlight, MaxInFlightTokens), which stay fresh when
	// scrapes fail; with neither limit set it is left out, as under
	// [StaleIgnore]. A gateway that caps in-flight work then keeps admitting
	// up to those caps through a metrics outage instead of halting.
	StaleLoadOnly
)

func (s *Saturation) thresholds() (q, kv float64) {
	q, kv = s.QueueThreshold, s.KVThreshold
	if q == 0 {
		q = 5
	}
	if kv == 0 {
		kv = 0.8
	}
	return q, kv
}

// Validate reports whether the thresholds are usable.
func (s *Saturation) Validate() error {
	q, kv := s.thresholds()
	switch {
	case !(q > 0) || math.IsInf(q, 0):
		return fmt.Errorf("scheduler: queue threshold %v, want > 0", s.QueueThreshold)
	case !(kv > 0) || math.IsInf(kv, 0):
		return fmt.Errorf("scheduler: KV threshold %v, want > 0", s.KVThreshold)
	case s.MaxInFlight < 0 || s.MaxInFlightTokens < 0:
		return fmt.Errorf("scheduler: negative in-flight limit")
	case s.Stale > StaleLoadOnly:
		return fmt.Errorf("scheduler: unknown stale policy %d", s.Stale)
	}
	return nil
}

// Endpoint returns one endpoint's level (≥ 1 means full) and whether it counts
// (false: stale and ignored).
func (s *Saturation) Endpoint(e *pool.Endpoint) (float64, bool) {
	limits := s.MaxInFlight > 0 || s.MaxInFlightTokens > 0
	var l float64
	switch {
	case !e.Stale():
		q, kv := s.thresholds()
		m := e.Metrics()
		l = max(float64(m.Waiting)/q, m.KVCacheUsage/kv)
	case s.Stale == StaleSaturated:
		return 1, true
	case s.Stale == StaleIgnore || !limits:
		return 1, false
	}
	if limits {
		ld := e.Load()
		if s.MaxInFlight > 0 {
			l = max(l, float64(ld.Requests)/float64(s.MaxInFlight))
		}
		if s.MaxInFlightTokens > 0 {
			l = max(l, float64(ld.UncachedTokens)/float64(s.MaxInFlightTokens))
		}
	}
	if math.IsNaN(l) {
		l = 1
	}
	return l, true
}

// Level returns the fleet's saturation level: the mean endpoint level (see
// [Saturation]); 1 when no endpoint counts.
func (s *Saturation) Level(eps []*pool.Endpoint) float64 {
	sum, n := 0.0, 0
	for _, e := range eps {
		if l, ok := s.Endpoint(e); ok {
			sum += l
			n++
		}
	}
	if n == 0 {
		return 1
	}
	return sum / float64(n)
}

// Saturated reports whether Level(eps) ≥ 1.
func (s *Saturation) Saturated(eps []*pool.Endpoint) bool { return s.Level(eps) >= 1 }

// Admit is per-request admission without queueing: it rejects a sheddable
// request (Priority < 0) with a 429 [*RejectError] ([ReasonSaturated]) when the
// fleet is saturated, and a request of any priority with a 503 ([ReasonNoEndpoints])
// when eps is empty. Requests with Priority ≥ 0 are always admitted otherwise; use
// [FlowControl] to make them wait instead.
func (s *Saturation) Admit(req *Request, eps []*pool.Endpoint) error {
	if len(eps) == 0 {
		return reject(ReasonNoEndpoints, http.StatusServiceUnavailable, ErrNoEndpoints)
	}
	if req.Priority < 0 && s.Saturated(eps) {
		return reject(ReasonSaturated, http.StatusTooManyRequests, nil)
	}
	return nil
}
