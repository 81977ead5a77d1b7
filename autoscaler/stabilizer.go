package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ScalingRules is the stabilizer's behaviour in one direction, with the
// semantics of the Kubernetes HPA's HPAScalingRules.
//
// A recommendation passes these steps, in the HPA's order:
//  1. Tolerance: a change of at most Tolerance × current (relative) is dropped.
//     Zero, the default here, keeps every ±1 change (the HPA's 0.1 silently
//     drops ±1 at ten replicas or more).
//  2. Stabilization window: scaling up goes no higher than the lowest
//     recommendation within the up window; scaling down goes no lower than
//     the highest recommendation within the down window.
//  3. Rate policies: each policy allows a change of Value pods (PolicyPods) or
//     Value percent (PolicyPercent) of the replica count at the start of the
//     trailing Period, counting the changes already made in it; SelectPolicy
//     picks the most permissive (SelectMax, default), the least
//     (SelectMin), or forbids the direction (SelectDisabled). No policies
//     means no rate limit.
//  4. Clamp to [Min, Max].
//
// It is a plain value, read-only once in a [Config]; Decide never modifies it.
type ScalingRules struct {
	// StabilizationWindow is how far back recommendations are considered.
	StabilizationWindow time.Duration
	// Policies are the rate limits; none means no limit.
	Policies []Policy
	// SelectPolicy chooses among Policies.
	SelectPolicy SelectPolicy
	// Tolerance is the relative change that is dropped.
	Tolerance float64
}

// Policy is one rate limit: at most Value pods or percent per Period.
// It is a plain value, safe to copy and to read from several goroutines.
type Policy struct {
	// Type is the unit of Value.
	Type PolicyType
	// Value is the allowed change per Period (positive).
	Value int
	// Period is the trailing window the change is counted over.
	Period time.Duration
}

// PolicyType is the unit of a Policy's Value.
// It is a plain value, safe to copy and to read from several goroutines.
type PolicyType uint8

const (
	// PolicyPods limits the change to Value replicas per period.
	PolicyPods PolicyType = iota
	// PolicyPercent limits the change to Value percent of the replicas at the
	// start of the period.
	PolicyPercent
)

// SelectPolicy chooses among several policies.
// It is a plain value, safe to copy and to read from several goroutines.
type SelectPolicy uint8

const (
	// SelectMax uses the policy that allows the largest change.
	SelectMax SelectPolicy = iota
	// SelectMin uses the policy that allows the smallest change.
	SelectMin
	// SelectDisabled forbids changes in this direction.
	SelectDisabled
)

// DefaultScaleUp returns the HPA's default scale-up rules: no window, at most
// max(4 pods, 100 %) per 15 s.
func DefaultScaleUp() *ScalingRules {
	return &ScalingRules{Policies: []Policy{
		{Type: PolicyPods, Value: 4, Period: 15 * time.Second},
		{Type: PolicyPercent, Value: 100, Period: 15 * time.Second},
	}}
}

// DefaultScaleDown returns the HPA's default scale-down rules: a 300 s window
// and at most 100 % per 15 s.
func DefaultScaleDown() *ScalingRules {
	return &ScalingRules{
		StabilizationWindow: 300 * time.Second,
		Policies:            []Policy{{Type: PolicyPercent, Value: 100, Period: 15 * time.Second}},
	}
}

func (r *ScalingRules) validate() error {
	if r.StabilizationWindow < 0 || r.StabilizationWindow > time.Hour {
		return fmt.Errorf("stabilization window %v not in [0, 1h]", r.StabilizationWindow)
	}
	if r.SelectPolicy > SelectDisabled {
		return errors.New("unknown select policy")
	}
	if !finiteNonNeg(r.Tolerance) {
		return fmt.Errorf("tolerance %v", r.Tolerance)
	}
	for _, p := range r.Policies {
		if p.Type > PolicyPercent || p.Value <= 0 || p.Period <= 0 || p.Period > 30*time.Minute {
			return fmt.Errorf("policy %+v: value must be positive and period in (0, 30m]", p)
		}
	}
	return nil
}

func (c *Config) upRules() *ScalingRules {
	if c.ScaleUp != nil {
		return c.ScaleUp
	}
	return defaultUp
}

func (c *Config) downRules() *ScalingRules {
	if c.ScaleDown != nil {
		return c.ScaleDown
	}
	return defaultDown
}

var (
	defaultUp   = DefaultScaleUp()
	defaultDown = DefaultScaleDown()
)

// stabilize applies tolerance, windows and rate policies to want for a pool
// whose current count is cur, and returns the result, the updated pool state
// and reasons.
func stabilize(up, down *ScalingRules, ps poolState, cur, want int, now time.Time) (int, poolState, []string) {
	var reasons []string
	if cur > 0 {
		ratio := float64(want) / float64(cur)
		if want > cur && ratio-1 <= up.Tolerance {
			reasons = append(reasons, fmt.Sprintf("stabilizer: +%d within up tolerance %.2f", want-cur, up.Tolerance))
			want = cur
		} else if want < cur && 1-ratio <= down.Tolerance {
			reasons = append(reasons, fmt.Sprintf("stabilizer: -%d within down tolerance %.2f", cur-want, down.Tolerance))
			want = cur
		}
	}
	// Windows.
	upRec, downRec := want, want
	upCut, downCut := now.Add(-up.StabilizationWindow), now.Add(-down.StabilizationWindow)
	for _, r := range ps.recs {
		if r.at.After(upCut) {
			upRec = min(upRec, r.v)
		}
		if r.at.After(downCut) {
			downRec = max(downRec, r.v)
		}
	}
	keep := max(up.StabilizationWindow, down.StabilizationWindow)
	recs := ps.recs[:0:0]
	for _, r := range ps.recs {
		if r.at.After(now.Add(-keep)) {
			recs = append(recs, r)
		}
	}
	ps.recs = append(recs, timedValue{at: now, v: want})
	got := max(cur, upRec)
	got = min(got, downRec)
	if got != want {
		if want > cur {
			reasons = append(reasons, fmt.Sprintf("stabilizer: up window %v holds %d", up.StabilizationWindow, got))
		} else {
			reasons = append(reasons, fmt.Sprintf("stabilizer: down window %v holds %d", down.StabilizationWindow, got))
		}
	}
	// Rate policies.
	if got > cur {
		limit := upLimit(up, ps, cur, now)
		if limit < cur {
			limit = cur
		}
		if got > limit {
			reasons = append(reasons, fmt.Sprintf("stabilizer: scale-up policy limits to %d", limit))
			got = limit
		}
	} else if got < cur {
		limit := downLimit(down, ps, cur, now)
		if limit > cur {
			limit = cur
		}
		if got < limit {
			reasons = append(reasons, fmt.Sprintf("stabilizer: scale-down policy limits to %d", limit))
			got = limit
		}
	}
	return got, ps, reasons
}

func changeInPeriod(events []timedValue, period time.Duration, now time.Time) int {
	cut := now.Add(-period)
	n := 0
	for _, e := range events {
		if e.at.After(cut) {
			n += e.v
		}
	}
	return n
}

func upLimit(r *ScalingRules, ps poolState, cur int, now time.Time) int {
	if r.SelectPolicy == SelectDisabled {
		return cur
	}
	if len(r.Policies) == 0 {
		return math.MaxInt32
	}
	result := math.MinInt32
	if r.SelectPolicy == SelectMin {
		result = math.MaxInt32
	}
	for _, p := range r.Policies {
		start := cur - changeInPeriod(ps.up, p.Period, now) + changeInPeriod(ps.down, p.Period, now)
		var proposed int
		if p.Type == PolicyPods {
			proposed = start + p.Value
		} else {
			// Clamped: with a huge Value the product overflows int, and the
			// wrapped value would forbid every scale-up.
			proposed = int(min(math.Ceil(float64(start)*(1+float64(p.Value)/100)), maxCount))
		}
		if r.SelectPolicy == SelectMin {
			result = min(result, proposed)
		} else {
			result = max(result, proposed)
		}
	}
	return result
}

func downLimit(r *ScalingRules, ps poolState, cur int, now time.Time) int {
	if r.SelectPolicy == SelectDisabled {
		return cur
	}
	if len(r.Policies) == 0 {
		return math.MinInt32
	}
	result := math.MaxInt32
	if r.SelectPolicy == SelectMin {
		result = math.MinInt32
	}
	for _, p := range r.Policies {
		start := cur + changeInPeriod(ps.down, p.Period, now) - changeInPeriod(ps.up, p.Period, now)
		var proposed int
		if p.Type == PolicyPods {
			proposed = start - p.Value
		} else {
			proposed = int(float64(start) * (1 - float64(p.Value)/100))
		}
		if r.SelectPolicy == SelectMin {
			result = max(result, proposed)
		} else {
			result = min(result, proposed)
		}
	}
	return result
}

// recordEvent appends a scale event and drops events older than the longest
// policy period.
func recordEvent(up, down *ScalingRules, ps poolState, cur, got int, now time.Time) poolState {
	var keep time.Duration
	for _, r := range []*ScalingRules{up, down} {
		for _, p := range r.Policies {
			keep = max(keep, p.Period)
		}
	}
	prune := func(ev []timedValue) []timedValue {
		out := ev[:0:0]
		for _, e := range ev {
			if e.at.After(now.Add(-keep)) {
				out = append(out, e)
			}
		}
		return out
	}
	ps.up, ps.down = prune(ps.up), prune(ps.down)
	switch {
	case got > cur:
		ps.up = append(ps.up, timedValue{at: now, v: got - cur})
	case got < cur:
		ps.down = append(ps.down, timedValue{at: now, v: cur - got})
	}
	return ps
}
