package scheduler

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/routekit/routekit/pool"
)

// keep compacts cands in place to the elements ok accepts, preserving order.
func keep(cands []Candidate, ok func(*Candidate) bool) []Candidate {
	n := 0
	for i := range cands {
		if ok(&cands[i]) {
			cands[n] = cands[i]
			n++
		}
	}
	return cands[:n]
}

// Labels keeps the endpoints whose labels match sel (Kubernetes label-selector
// semantics, k8s.io/apimachinery/pkg/labels). It is llm-d's
// label-selector-filter. Safe for concurrent use.
func Labels(sel labels.Selector) Filter { return labelFilter{sel} }

type labelFilter struct{ sel labels.Selector }

func (f labelFilter) Name() string { return "labels(" + f.sel.String() + ")" }

func (f labelFilter) Filter(_ context.Context, _ *Request, cands []Candidate) []Candidate {
	return keep(cands, func(c *Candidate) bool { return f.sel.Matches(c.Labels) })
}

// Roles keeps the endpoints whose role is one of roles. For disaggregation use
// Roles(pool.RoleDecode, pool.RoleBoth) in the decode profile and
// Roles(pool.RolePrefill, pool.RoleBoth) in the prefill profile. An endpoint
// without a role is pool.RoleBoth; so, unlike llm-d's prefill-filter (which drops
// unlabeled pods while its decode-filter keeps them), Roles cannot tell an
// unlabeled endpoint from one labelled "both": leave RoleBoth out of the prefill
// profile to get llm-d's behaviour for a fleet whose P/D pods are all labelled.
// Safe for concurrent use.
func Roles(roles ...pool.Role) Filter {
	var mask uint8
	for _, r := range roles {
		mask |= 1 << r
	}
	return roleFilter{mask}
}

type roleFilter struct{ mask uint8 }

func (f roleFilter) Name() string { return fmt.Sprintf("roles(%03b)", f.mask) }

func (f roleFilter) Filter(_ context.Context, _ *Request, cands []Candidate) []Candidate {
	return keep(cands, func(c *Candidate) bool { return f.mask&(1<<c.Role) != 0 })
}

// Model keeps the endpoints that serve the request's model (or LoRA adapter,
// when set): pool.Endpoint.ServesModel. Endpoints that declare no models at all
// are kept (a static fleet often does not list them). A request without a model
// keeps everything. Safe for concurrent use.
func Model() Filter { return modelFilter{} }

type modelFilter struct{}

func (modelFilter) Name() string { return "model" }

func (modelFilter) Filter(_ context.Context, req *Request, cands []Candidate) []Candidate {
	want := req.Model
	if req.LoRA != "" {
		want = req.LoRA
	}
	if want == "" {
		return cands
	}
	return keep(cands, func(c *Candidate) bool {
		return len(c.Models) == 0 && len(c.LoRAAdapters) == 0 || c.ServesModel(want)
	})
}

// Affinity configures [PrefixAffinity]. The zero value means llm-d's defaults.
// PrefixAffinity copies it; its Rand source, when set, is then used only under
// the filter's lock, so the filter is safe for concurrent use.
type Affinity struct {
	// Threshold is the minimum tier-weighted prefix fraction (the [Prefix] score)
	// for an endpoint to count as holding the prefix. Zero means 0.8.
	Threshold float64
	// PeakPrefillTokensPerSec is an endpoint's prefill throughput, used to turn
	// queued prefill tokens into time. Zero means 15,928 (Qwen3-32B on 2×H100).
	PeakPrefillTokensPerSec float64
	// MaxTTFTPenalty is how much later (in seconds of estimated TTFT) a sticky
	// endpoint may start the request than the best other endpoint before the
	// filter releases the request to every endpoint. Zero means 18 s.
	MaxTTFTPenaltySeconds float64
	// Exploration is the probability of skipping the filter (to let new
	// endpoints learn prefixes); zero means never.
	Exploration float64
	// Tiers weighs the prefix match; zero means [DefaultTierWeights].
	Tiers TierWeights
	// Rand drives Exploration; nil means a randomly seeded PCG.
	Rand rand.Source
	// Saturation, if set, also ends stickiness per endpoint: a holder whose
	// level is ≥ 1 (waiting queue or KV usage at its threshold, or stale) does
	// not count as sticky. nil means only the TTFT gap releases.
	Saturation *Saturation
}

// PrefixAffinity keeps the endpoints that hold the request's prefix until they
// are saturated, then releases it to all. With p(e) the [Prefix] score and
//
//	ttft(e) = (pool.Load(e).UncachedTokens + promptLen − cachedTokens(e)) / PeakPrefillTokensPerSec
//
// (this request's own uncached prefill included), let S = {e : p(e) ≥ Threshold}
// (and, with a Saturation detector, level(e) < 1).
// If S is empty, or S is every candidate, or min over S of ttft − min over the
// others of ttft > MaxTTFTPenalty, it keeps every candidate; otherwise it keeps S.
// With probability Exploration it keeps every candidate. It is llm-d's
// prefix-cache-affinity-filter ("sticky until saturated") with its defaults,
// and three deliberate differences: ttft(e) counts this request's own uncached
// tokens on e, where llm-d counts in-flight tokens alone (so the holder is
// credited with the prefill its cache saves, and is released about
// (cached(holder) − cached(best other))/PeakPrefillTokensPerSec later than in
// llm-d); p(e) weighs the match by cache tier ([TierWeights]) where llm-d
// counts every matched block as 1; and MaxTTFTPenaltySeconds 0 means the 18 s
// default where llm-d's 0 means "never release" (use math.Inf(1) for that).
// Safe for concurrent use.
func PrefixAffinity(a Affinity) (Filter, error) {
	if a.Threshold == 0 {
		a.Threshold = 0.8
	}
	if a.PeakPrefillTokensPerSec == 0 {
		a.PeakPrefillTokensPerSec = 15928
	}
	if a.MaxTTFTPenaltySeconds == 0 {
		a.MaxTTFTPenaltySeconds = 18
	}
	a.Tiers = a.Tiers.orDefault()
	switch {
	case !(a.Threshold > 0 && a.Threshold <= 1):
		return nil, fmt.Errorf("scheduler: affinity threshold %v, want (0,1]", a.Threshold)
	case !(a.PeakPrefillTokensPerSec > 0) || math.IsInf(a.PeakPrefillTokensPerSec, 0):
		return nil, fmt.Errorf("scheduler: peak prefill throughput %v, want > 0", a.PeakPrefillTokensPerSec)
	case !(a.MaxTTFTPenaltySeconds > 0):
		return nil, fmt.Errorf("scheduler: max TTFT penalty %v, want > 0", a.MaxTTFTPenaltySeconds)
	case !(a.Exploration >= 0 && a.Exploration <= 1):
		return nil, fmt.Errorf("scheduler: exploration probability %v, want [0,1]", a.Exploration)
	}
	if err := a.Tiers.valid(); err != nil {
		return nil, err
	}
	if a.Saturation != nil {
		if err := a.Saturation.Validate(); err != nil {
			return nil, err
		}
	}
	f := &affinity{a: a}
	if a.Exploration > 0 {
		f.r = newLockedRand(a.Rand)
	}
	return f, nil
}

type affinity struct {
	a Affinity
	r *lockedRand
}

func (*affinity) Name() string { return "prefix-affinity" }

// ttft returns the estimated seconds before c could start computing req's
// first token.
func (f *affinity) ttft(req *Request, c *Candidate) float64 {
	t := float64(c.Load().UncachedTokens) + float64(req.UncachedTokens(c.Prefix.Blocks))
	return t / f.a.PeakPrefillTokensPerSec
}

func (f *affinity) sticky(req *Request, c *Candidate) bool {
	n := len(req.BlockKeys)
	if n == 0 || f.a.Tiers.of(c.Prefix)/float64(n) < f.a.Threshold {
		return false
	}
	if f.a.Saturation != nil {
		if l, _ := f.a.Saturation.Endpoint(c.Endpoint); l >= 1 {
			return false
		}
	}
	return true
}

func (f *affinity) Filter(_ context.Context, req *Request, cands []Candidate) []Candidate {
	if len(req.BlockKeys) == 0 {
		return cands
	}
	if f.r != nil && unit(mix(f.r.seed(), 0)) < f.a.Exploration {
		return cands
	}
	bestS, bestO := math.Inf(1), math.Inf(1)
	ns := 0
	for i := range cands {
		c := &cands[i]
		t := f.ttft(req, c)
		if f.sticky(req, c) {
			ns++
			bestS = min(bestS, t)
		} else {
			bestO = min(bestO, t)
		}
	}
	if ns == 0 || ns == len(cands) || bestS-bestO > f.a.MaxTTFTPenaltySeconds {
		return cands
	}
	return keep(cands, func(c *Candidate) bool { return f.sticky(req, c) })
}
