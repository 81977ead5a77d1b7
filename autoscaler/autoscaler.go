package autoscaler

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/routekit/routekit/pool"
)

// Decide computes the desired replica count of every pool of one model from the
// configuration, the state returned by the previous call, an observation of the
// fleet and the current time. It performs no I/O, starts no goroutine and reads
// no clock: the same inputs always give the same outputs.
//
// The stages run in this order for each group of pools that share a [Role]:
// the analyzer proposes a capacity, the guards correct it (missing data,
// scale-down load check, replacement of stuck replicas, scale-to-zero floor),
// the constraints bound it (step limits, prefill/decode ratio, min/max,
// accelerator budget) and the stabilizer applies the HPA behaviour
// (tolerance, stabilization windows, rate policies).
//
// Decide never panics on bad input. An invalid configuration or an unusable
// observation yields a decision that holds every pool at its current count,
// with Decision.Err set (wrapping [ErrInvalidConfig] or [ErrBadObservation]);
// the returned state is then the input state, unchanged.
//
// Decide does not modify st; callers pass the returned state to the next call.
func Decide(cfg *Config, st State, obs Observation, now time.Time) (Decision, State) {
	if cfg == nil {
		return holdDecision(nil, obs, now, fmt.Errorf("%w: nil config", ErrInvalidConfig)), st
	}
	if err := cfg.Validate(); err != nil {
		return holdDecision(cfg, obs, now, err), st
	}
	views, err := buildViews(cfg, obs, now)
	if err != nil {
		return holdDecision(cfg, obs, now, err), st
	}
	d := &decider{cfg: cfg, st: st.clone(), obs: &obs, now: now, views: views}
	return d.run()
}

// Config describes one model's pools and how to size them. The zero value of
// every optional field selects the documented default; [Config.Validate]
// reports what cannot be defaulted. A Config must not be modified while a
// [Driver] uses it; Decide only reads it, so one Config may serve concurrent
// Decide calls.
type Config struct {
	// Pools are the variants and roles of the model: the same model on
	// different accelerators (with different costs and throughputs), and for
	// disaggregated serving separate prefill and decode pools. Names must be
	// unique and non-empty. At least one pool is required.
	Pools []Pool

	// Analyzer proposes how many replicas each pool needs. Nil selects
	// Saturation{} (llm-d's spare-capacity analyzer with its defaults).
	Analyzer Analyzer

	// Guards configures the safety checks that run after the analyzer.
	Guards Guards

	// ScaleToZero allows a pool group whose pools all have Min 0 to reach zero
	// replicas after Guards.IdleWindow of proven idleness. When false a group
	// keeps at least one replica on its cheapest pool even if Min is 0.
	ScaleToZero bool

	// MaxStepUp and MaxStepDown bound the change of one pool in one decision
	// (before the stabilizer's rate policies). Zero means unbounded.
	MaxStepUp, MaxStepDown int

	// AcceleratorBudget caps the sum over all pools of replicas ×
	// Pool.Accelerators. Zero means no budget. When a proposal exceeds it,
	// replicas are removed from the pools with the highest cost per unit of
	// capacity first, never below a pool's Min.
	AcceleratorBudget int

	// PD bounds the ratio of prefill to decode replicas. It applies only when
	// the model has both RolePrefill and RoleDecode pools.
	PD PDRatio

	// ScaleUp and ScaleDown are the stabilizer's rules per direction, as in
	// the Kubernetes HPA's behavior field. Nil selects the HPA defaults:
	// DefaultScaleUp() and DefaultScaleDown().
	ScaleUp, ScaleDown *ScalingRules
}

// Pool is one set of identical replicas that the controller sizes: one
// Deployment, StatefulSet or LeaderWorkerSet.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Pool struct {
	// Name identifies the pool in observations and decisions.
	Name string
	// Role is the pool's part in disaggregated serving; the zero value,
	// RoleBoth, is an ordinary aggregated pool.
	Role Role
	// Min and Max bound the replica count. Max must be at least 1 and at
	// least Min. Min 0 allows scale to zero (see Config.ScaleToZero).
	Min, Max int
	// Cost is the price of one replica per unit of time, in any unit shared by
	// all pools (for example dollars per hour). Zero is allowed.
	Cost float64
	// Accelerators is the number of accelerators one replica uses; zero means 1.
	Accelerators int
	// Profile is the offline-profiled performance of one replica, used by the
	// QueueingModel analyzer and to rank pools by cost per capacity.
	Profile Profile
}

// Profile is the profiled performance of one replica of a pool.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Profile struct {
	// MaxRate is the request rate (requests per second) one replica sustains
	// at saturation for the model's typical request shape.
	MaxRate float64
	// BaseTTFT is the time to first token of a request on an idle replica
	// (its prefill time for a typical prompt).
	BaseTTFT time.Duration
	// Concurrency is the number of requests one replica serves at once at
	// saturation (vLLM's effective max_num_seqs, bounded by KV capacity);
	// the queueing model treats the replica as that many parallel servers.
	// Zero means 1, a single-server model that queues much earlier than a
	// batching engine does and so over-provisions.
	Concurrency int
}

// Role is a pool's part in prefill/decode disaggregation: the same roles
// as the endpoints of package pool. It is a plain value, safe to copy and to
// read from several goroutines.
type Role = pool.Role

// The roles of a pool of replicas.
const (
	// RoleBoth is an aggregated pool that serves prefill and decode.
	RoleBoth = pool.RoleBoth
	// RolePrefill is a pool of prefill workers.
	RolePrefill = pool.RolePrefill
	// RoleDecode is a pool of decode workers.
	RoleDecode = pool.RoleDecode
)

// PDRatio bounds prefill replicas / decode replicas. Zero bounds are off.
// A ratio outside the bounds is repaired by adding replicas to the lagging
// role (never by removing), on its pools with the lowest cost per replica,
// within each pool's Max. The repair is a separate stage after the
// analyzer's cost-optimal mix, so the pair is not jointly optimal: a mix of
// more, cheaper replicas might have met both the capacity and the ratio for
// less.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type PDRatio struct {
	// Min and Max bound prefill/decode replicas; zero means unbounded.
	Min, Max float64
}

// Guards configures the checks between analyzer and constraints. Every zero
// field selects the default named in its comment; a negative duration or
// threshold disables that guard.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Guards struct {
	// PendingTimeout is how long a replica may stay not ready before it is
	// treated as stuck: a stuck replica is not capacity, does not block
	// decisions, and the controller asks for a replacement. Default 10 min.
	PendingTimeout time.Duration
	// WarmUp is how long after becoming ready a replica's samples are
	// ignored (it counts as fresh, empty capacity meanwhile). Default 120 s.
	WarmUp time.Duration
	// StaleAfter is the age beyond which a metrics sample counts as missing.
	// Default 60 s.
	StaleAfter time.Duration
	// ScaleDownKV and ScaleDownQueue are the per-replica KV-cache usage and
	// waiting-queue levels the remaining replicas must stay under after a
	// scale-down, with the observed load redistributed (load × N/M). Defaults
	// 0.70 and 2: the levels at which Saturation's defaults stop asking for
	// more (0.80 − 0.10 and 5 − 3), so an approved scale-down is not undone
	// by the next decision.
	ScaleDownKV, ScaleDownQueue float64
	// IdleWindow is how long every observation must show zero requests (no
	// arrivals, no gateway queue, no waiting or running request on any
	// replica, no missing sample) before a group may scale to zero. Default
	// 10 min, llm-d's retention default.
	IdleWindow time.Duration
}

// Defaults of Guards fields, applied where the field is zero.
const (
	DefaultPendingTimeout = 10 * time.Minute
	DefaultWarmUp         = 120 * time.Second
	DefaultStaleAfter     = 60 * time.Second
	DefaultScaleDownKV    = 0.70
	DefaultScaleDownQueue = 2.0
	DefaultIdleWindow     = 10 * time.Minute
)

// Observation is one sample of the fleet serving a model.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Observation struct {
	// Pools holds one entry per configured pool, matched by name.
	Pools []PoolObservation
	// GatewayQueue is the number of requests for this model held at the
	// gateway (scheduler flow control). It is the only demand signal when no
	// replica exists.
	GatewayQueue int
	// ArrivalRate is the request rate (per second) that arrived at the
	// gateway for this model over the last interval. NaN means unknown.
	ArrivalRate float64
}

// PoolObservation is the observed state of one pool.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type PoolObservation struct {
	// Name matches Pool.Name.
	Name string
	// Desired is the pool's current desired count (the scale subresource's
	// spec.replicas): the controller's starting point.
	Desired int
	// Replicas are the pool's existing replicas, ready or not.
	Replicas []Replica
}

// Replica is one model server of a pool.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Replica struct {
	// Name identifies the replica (pod name); used only in reasons.
	Name string
	// Ready reports whether the replica serves traffic.
	Ready bool
	// Since is when the replica was created if not ready, or when it became
	// ready if ready. The zero time means long ago.
	Since time.Time
	// Metrics is the latest scrape of the replica; a zero SampledAt means
	// none.
	Metrics Metrics
}

// Metrics is one scrape of a model server.
// It is a plain value, safe to copy and to read from several goroutines; Decide never modifies it.
type Metrics struct {
	// SampledAt is the scrape time; the zero time means no sample.
	SampledAt time.Time
	// Waiting is vllm:num_requests_waiting.
	Waiting float64
	// Running is vllm:num_requests_running.
	Running float64
	// KVUsage is vllm:kv_cache_usage_perc, in [0, 1].
	KVUsage float64
	// RequestRate is the completed requests per second over the last interval.
	RequestRate float64
	// TTFTP90 is the 90th percentile time to first token over the last
	// interval, in seconds; zero or NaN when unknown. QueueingModel refuses
	// to scale down while a replica reports one above its objective.
	TTFTP90 float64
	// ITLP90 is the 90th percentile inter-token latency over the last
	// interval, in seconds; zero or NaN when unknown. Informational: no
	// analyzer shipped here reads it.
	ITLP90 float64
}

// Decision is the outcome of one Decide call.
// It is a plain value, safe to read from several goroutines; Decide returns a new one each call.
type Decision struct {
	// At is the time passed to Decide.
	At time.Time
	// Pools holds one entry per configured pool, in configuration order.
	Pools []PoolDecision
	// Err is non-nil when the input could not be used (wrapping
	// ErrInvalidConfig or ErrBadObservation). Every pool then holds its
	// current count.
	Err error
}

// PoolDecision is the desired count of one pool and why.
// It is a plain value, safe to read from several goroutines.
type PoolDecision struct {
	// Name is the pool's name.
	Name string
	// Current is the observed desired count the decision started from.
	Current int
	// Desired is the new desired count to apply.
	Desired int
	// Reasons lists, stage by stage, what shaped Desired: the analyzer's
	// finding first, then each guard, constraint and stabilizer step that
	// changed or held the value.
	Reasons []string
}

// Changed reports whether any pool's desired count differs from its current one.
func (d Decision) Changed() bool {
	for _, p := range d.Pools {
		if p.Desired != p.Current {
			return true
		}
	}
	return false
}

// Pool returns the decision for the named pool and whether it exists.
func (d Decision) Pool(name string) (PoolDecision, bool) {
	for _, p := range d.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return PoolDecision{}, false
}

// String formats the decision on one line per pool.
func (d Decision) String() string {
	var b strings.Builder
	if d.Err != nil {
		fmt.Fprintf(&b, "error: %v\n", d.Err)
	}
	for _, p := range d.Pools {
		fmt.Fprintf(&b, "%s %d->%d: %s\n", p.Name, p.Current, p.Desired, strings.Join(p.Reasons, "; "))
	}
	return b.String()
}

var (
	// ErrInvalidConfig reports a configuration Decide cannot use; fix the
	// configuration. Decide holds every pool meanwhile.
	ErrInvalidConfig = errors.New("autoscaler: invalid config")
	// ErrBadObservation reports an observation Decide cannot use (negative
	// counts, unknown or missing pools); fix the observer. Decide holds
	// every pool meanwhile.
	ErrBadObservation = errors.New("autoscaler: bad observation")
)

// Validate reports whether the configuration is usable, wrapping
// ErrInvalidConfig with the first problem found.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Pools) == 0 {
		return bad("no pools")
	}
	seen := make(map[string]bool, len(c.Pools))
	for i, p := range c.Pools {
		switch {
		case p.Name == "":
			return bad("pool %d has no name", i)
		case seen[p.Name]:
			return bad("duplicate pool %q", p.Name)
		case p.Role > RoleDecode:
			return bad("pool %q: unknown role %d", p.Name, p.Role)
		case p.Min < 0:
			return bad("pool %q: min %d < 0", p.Name, p.Min)
		case p.Max < 1:
			return bad("pool %q: max %d < 1", p.Name, p.Max)
		case p.Min > p.Max:
			return bad("pool %q: min %d > max %d", p.Name, p.Min, p.Max)
		case !finiteNonNeg(p.Cost):
			return bad("pool %q: cost %v is not a finite non-negative number", p.Name, p.Cost)
		case p.Accelerators < 0:
			return bad("pool %q: accelerators %d < 0", p.Name, p.Accelerators)
		case !finiteNonNeg(p.Profile.MaxRate):
			return bad("pool %q: profile max rate %v is not a finite non-negative number", p.Name, p.Profile.MaxRate)
		case p.Profile.BaseTTFT < 0:
			return bad("pool %q: profile base TTFT %v < 0", p.Name, p.Profile.BaseTTFT)
		case p.Profile.Concurrency < 0 || p.Profile.Concurrency > 1<<16:
			return bad("pool %q: profile concurrency %d not in [0, 65536]", p.Name, p.Profile.Concurrency)
		}
		seen[p.Name] = true
	}
	if c.MaxStepUp < 0 || c.MaxStepDown < 0 {
		return bad("negative step limit")
	}
	if c.AcceleratorBudget < 0 {
		return bad("accelerator budget %d < 0", c.AcceleratorBudget)
	}
	if !finiteNonNeg(c.PD.Min) || !finiteNonNeg(c.PD.Max) || (c.PD.Max > 0 && c.PD.Min > c.PD.Max) {
		return bad("prefill/decode ratio bounds [%v, %v]", c.PD.Min, c.PD.Max)
	}
	for _, r := range []*ScalingRules{c.ScaleUp, c.ScaleDown} {
		if r == nil {
			continue
		}
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	for _, v := range []float64{c.Guards.ScaleDownKV, c.Guards.ScaleDownQueue} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return bad("guard threshold %v", v)
		}
	}
	if c.Analyzer != nil {
		if v, ok := c.Analyzer.(interface{ Validate(*Config) error }); ok {
			if err := v.Validate(c); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
			}
		}
	}
	return nil
}

func finiteNonNeg(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

// State is what Decide remembers between calls: recommendation history and
// scale events for the stabilizer, the idle proof for scale to zero, and the
// arrival-rate forecast. The zero value is a valid initial state. A State is
// a value: Decide never modifies the State passed in, so a caller may keep old
// states (to replay or branch a simulation). It is not safe for concurrent
// mutation, but it has no exported mutators.
type State struct {
	pools        map[string]poolState
	idleSince    time.Time
	lastObserved time.Time
	forecast     holt
}

type poolState struct {
	recs []timedValue // stabilizer recommendations
	up   []timedValue // scale-up events: replicas added
	down []timedValue // scale-down events: replicas removed
}

type timedValue struct {
	at time.Time
	v  int
}

func (s State) clone() State {
	out := s
	out.pools = make(map[string]poolState, len(s.pools))
	for k, v := range s.pools {
		out.pools[k] = poolState{
			recs: append([]timedValue(nil), v.recs...),
			up:   append([]timedValue(nil), v.up...),
			down: append([]timedValue(nil), v.down...),
		}
	}
	return out
}

// IdleSince returns the start of the current proven-idle period, or the zero
// time when the last observation showed (or could not rule out) requests.
func (s State) IdleSince() time.Time { return s.idleSince }

func holdDecision(cfg *Config, obs Observation, now time.Time, err error) Decision {
	d := Decision{At: now, Err: err}
	reason := "hold: " + err.Error()
	if cfg == nil {
		for _, p := range obs.Pools {
			d.Pools = append(d.Pools, PoolDecision{Name: p.Name, Current: p.Desired, Desired: p.Desired, Reasons: []string{reason}})
		}
		return d
	}
	for _, p := range cfg.Pools {
		cur := 0
		for _, o := range obs.Pools {
			if o.Name == p.Name {
				cur = max(o.Desired, 0)
			}
		}
		d.Pools = append(d.Pools, PoolDecision{Name: p.Name, Current: cur, Desired: cur, Reasons: []string{reason}})
	}
	return d
}
