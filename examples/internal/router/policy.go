package router

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/scheduler"
)

// Policy is the routing policy of the example programs, as flags set it. The
// zero value is a sensible default for a real fleet.
//
// The pipeline it builds: filters Model (endpoints serving the model),
// [InFlightCap] (endpoints below MaxInFlight, when set) and
// scheduler.PrefixAffinity (sticky to the endpoints holding the prefix until
// their estimated TTFT falls MaxTTFTPenalty behind); scorers Prefix ×2,
// TokenLoad ×1 and InFlight ×1; picker MaxScore with Fallbacks fallbacks.
// Flow control holds requests while the fleet is saturated (mean over
// endpoints of max(queue/5, KV usage/0.8, in-flight/MaxInFlight) ≥ 1).
// It is plain data with no internal synchronisation: share it only read-only.
type Policy struct {
	// MaxInFlight is the number of gateway in-flight requests at which an
	// endpoint counts as full (0: no limit). It releases prefix stickiness
	// and feeds the saturation gate.
	MaxInFlight int
	// PeakPrefillTokensPerSec converts queued prefill tokens into time for
	// prefix affinity (0: the scheduler's default, 15,928).
	PeakPrefillTokensPerSec float64
	// MaxTTFTPenalty is how much longer a sticky endpoint may make a request
	// wait for its first token than the best other one (0: 18 s).
	MaxTTFTPenalty time.Duration
	// Fallbacks is the number of fallback endpoints per decision (0: 2).
	Fallbacks int
	// NoFlowControl disables flow control: requests are scheduled at once
	// even when the fleet is saturated.
	NoFlowControl bool
	// QueueTTL bounds a request's wait in flow control (0: 60 s).
	QueueTTL time.Duration
	// MaxQueue bounds the requests waiting in flow control (0: 5,000).
	MaxQueue int
}

// Build returns the scheduler and flow control (nil with NoFlowControl) for
// endpoints of p, with prefix matches from idx (nil: load only).
func (pol Policy) Build(p *pool.Pool, idx *kvcache.Index) (*scheduler.Scheduler, *scheduler.FlowControl, error) {
	aff, err := scheduler.PrefixAffinity(scheduler.Affinity{
		PeakPrefillTokensPerSec: pol.PeakPrefillTokensPerSec,
		MaxTTFTPenaltySeconds:   pol.MaxTTFTPenalty.Seconds(),
	})
	if err != nil {
		return nil, nil, err
	}
	pfx, err := scheduler.Prefix(scheduler.TierWeights{})
	if err != nil {
		return nil, nil, err
	}
	filters := []scheduler.Filter{scheduler.Model()}
	if pol.MaxInFlight > 0 {
		filters = append(filters, InFlightCap(pol.MaxInFlight))
	}
	filters = append(filters, aff)
	prof := scheduler.Profile{
		Name:    "default",
		Filters: filters,
		Scorers: []scheduler.WeightedScorer{
			scheduler.Weighted(2, pfx),
			scheduler.Weighted(1, scheduler.TokenLoad(0)),
			scheduler.Weighted(1, scheduler.InFlight()),
		},
		Picker: scheduler.MaxScore(nil),
	}
	fb := pol.Fallbacks
	if fb == 0 {
		fb = 2
	}
	opts := []scheduler.Option{scheduler.WithFallbacks(fb), scheduler.WithStalePolicy(scheduler.StaleFailOpen)}
	if idx != nil {
		opts = append(opts, scheduler.WithPrefixIndex(scheduler.KVIndex(idx)))
	}
	s, err := scheduler.New(prof, opts...)
	if err != nil {
		return nil, nil, err
	}
	if pol.NoFlowControl {
		return s, nil, nil
	}
	// Stale endpoints count by the gateway's own in-flight counts: a metrics
	// outage does not halt admission, and the cap still holds.
	sat := &scheduler.Saturation{MaxInFlight: pol.MaxInFlight, Stale: scheduler.StaleLoadOnly}
	if err := sat.Validate(); err != nil {
		return nil, nil, err
	}
	fc, err := scheduler.NewFlowControl(scheduler.GateFunc(func() bool {
		return sat.Saturated(p.Snapshot().Endpoints())
	}), scheduler.FlowConfig{DefaultTTL: pol.QueueTTL, MaxRequests: pol.MaxQueue})
	if err != nil {
		return nil, nil, err
	}
	return s, fc, nil
}

// InFlightCap is a filter that drops endpoints with max or more gateway
// in-flight requests (pool.Load.Requests), so that a prefix holder that is
// full lets the request go elsewhere. When every endpoint is full it keeps
// them all (flow control is what holds requests back then). Safe for
// concurrent use.
func InFlightCap(max int) scheduler.Filter { return inFlightCap{max: int64(max)} }

type inFlightCap struct{ max int64 }

func (c inFlightCap) Name() string { return fmt.Sprintf("in-flight-cap(%d)", c.max) }

func (c inFlightCap) Filter(_ context.Context, _ *scheduler.Request, cands []scheduler.Candidate) []scheduler.Candidate {
	n := 0
	for i := range cands {
		if cands[i].Load().Requests < c.max {
			n++
		}
	}
	if n == 0 || n == len(cands) {
		return cands
	}
	out := cands[:0]
	for _, cd := range cands {
		if cd.Load().Requests < c.max {
			out = append(out, cd)
		}
	}
	return out
}

// RegisterFlags registers flags for pol's fields on fs.
func (pol *Policy) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&pol.MaxInFlight, "max-inflight", pol.MaxInFlight, "in-flight requests at which an endpoint counts as full (0: no limit)")
	fs.Float64Var(&pol.PeakPrefillTokensPerSec, "peak-prefill", pol.PeakPrefillTokensPerSec, "endpoint prefill throughput in tokens/s, for prefix affinity (0: 15928)")
	fs.DurationVar(&pol.MaxTTFTPenalty, "max-ttft-penalty", pol.MaxTTFTPenalty, "extra TTFT a prefix holder may cost before requests spread (0: 18s)")
	fs.IntVar(&pol.Fallbacks, "fallbacks", pol.Fallbacks, "fallback endpoints per decision (0: 2)")
	fs.BoolVar(&pol.NoFlowControl, "no-flow-control", pol.NoFlowControl, "schedule at once even when the fleet is saturated")
	fs.DurationVar(&pol.QueueTTL, "queue-ttl", pol.QueueTTL, "longest wait in flow control (0: 60s)")
	fs.IntVar(&pol.MaxQueue, "max-queue", pol.MaxQueue, "requests that may wait in flow control (0: 5000)")
}
