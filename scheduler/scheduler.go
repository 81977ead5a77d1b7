package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/routekit/routekit/pool"
)

// Candidate is one endpoint under consideration for a request, with what the
// scheduler computed about it for this request. Filters, scorers and pickers
// receive a slice of candidates; the slice and its elements belong to the
// scheduler and are valid only during the call.
// Plugins must not keep a Candidate or its slice after the call returns; the pointed-to
// Endpoint is safe for concurrent use.
type Candidate struct {
	// Endpoint is the pool endpoint, with its live state (Metrics, Load, Status).
	*pool.Endpoint

	// Prefix is how much of the request's prompt the endpoint already holds,
	// filled from the scheduler's [PrefixIndex] before any filter runs. It is zero
	// without an index or without block keys.
	Prefix PrefixMatch
}

// PrefixMatch is how many of a request's leading KV blocks an endpoint holds,
// consecutively from block 0, and in which cache tier. GPU+CPU+Storage == Blocks.
// It is a plain value, safe to copy and to read from several goroutines.
type PrefixMatch struct {
	Blocks  int // consecutive leading blocks available, any tier
	GPU     int // of which in GPU memory
	CPU     int // of which offloaded to local CPU memory
	Storage int // of which in shared storage
}

// Filter narrows the candidates for a request.
//
// Filter returns the candidates to keep. It may compact cands in place (the
// slice belongs to the scheduler) and return a prefix of it, or return cands
// unchanged; it must not retain the slice. An empty result means no candidate
// passes: the scheduler then fails with [ErrAllFiltered]. A Filter must be safe
// for concurrent use.
type Filter interface {
	Filter(ctx context.Context, req *Request, cands []Candidate) []Candidate
}

// FilterFunc adapts a function to [Filter].
// The function must be safe for concurrent use: a Scheduler calls it from every
// goroutine that schedules.
type FilterFunc func(ctx context.Context, req *Request, cands []Candidate) []Candidate

// Filter calls f.
func (f FilterFunc) Filter(ctx context.Context, req *Request, cands []Candidate) []Candidate {
	return f(ctx, req, cands)
}

// Scorer rates each candidate for a request.
//
// Score writes into out[i] a score in [0,1] for cands[i], 1 being best;
// len(out) == len(cands). A value outside [0,1] (or NaN) is a bug: the scheduler
// fails the decision with a [*ScoreError] instead of clamping it. An error
// returned by Score fails the decision too. A Scorer must be safe for
// concurrent use and should not allocate.
type Scorer interface {
	Score(ctx context.Context, req *Request, cands []Candidate, out []float64) error
}

// ScorerFunc adapts a function to [Scorer].
// The function must be safe for concurrent use: a Scheduler calls it from every
// goroutine that schedules.
type ScorerFunc func(ctx context.Context, req *Request, cands []Candidate, out []float64) error

// Score calls f.
func (f ScorerFunc) Score(ctx context.Context, req *Request, cands []Candidate, out []float64) error {
	return f(ctx, req, cands, out)
}

// Picker chooses endpoints from scored candidates.
//
// Pick writes into out the indices (into cands and scores) of the chosen
// candidates, best first: out[0] is the endpoint to use, the rest are ordered
// fallbacks. It returns how many it wrote, at least 1 and at most len(out) for a
// non-empty candidate list, and never an index twice. scores[i] is the weighted
// combined score of cands[i], in [0,1]. A Picker must be safe for concurrent use
// and should not allocate.
type Picker interface {
	Pick(ctx context.Context, req *Request, cands []Candidate, scores []float64, out []int) int
}

// PickerFunc adapts a function to [Picker].
// The function must be safe for concurrent use: a Scheduler calls it from every
// goroutine that schedules.
type PickerFunc func(ctx context.Context, req *Request, cands []Candidate, scores []float64, out []int) int

// Pick calls f.
func (f PickerFunc) Pick(ctx context.Context, req *Request, cands []Candidate, scores []float64, out []int) int {
	return f(ctx, req, cands, scores, out)
}

// Observer is implemented by plugins that learn from decisions (LRU spreading,
// session binding). After a profile has picked, the scheduler calls Observe on
// each of the profile's filters, scorers and picker that implements it, with
// that profile's result. Observe runs synchronously on the request path: it
// must be fast and safe for concurrent use, and must not retain res.
type Observer interface {
	Observe(req *Request, res *Result)
}

// PrefixIndex tells the scheduler how much of a prompt each candidate holds.
// Match sets cands[i].Prefix for every candidate from req.BlockKeys. It is called
// once per decision, before filters, and only when the request has block keys.
// It must be safe for concurrent use. [github.com/routekit/routekit/kvcache]'s
// index satisfies it through [KVIndex].
type PrefixIndex interface {
	Match(req *Request, cands []Candidate)
}

// PrefixIndexFunc adapts a function to [PrefixIndex].
// The function must be safe for concurrent use: a Scheduler calls it from every
// goroutine that schedules.
type PrefixIndexFunc func(req *Request, cands []Candidate)

// Match calls f.
func (f PrefixIndexFunc) Match(req *Request, cands []Candidate) { f(req, cands) }

// WeightedScorer is a scorer with its weight in a profile.
//
// Weight semantics: weights are relative. A profile's combined score for a
// candidate is Σ wᵢ·sᵢ / Σ wᵢ over its scorers, so it stays in [0,1] and only the
// ratios of the weights matter: {3·a, 1·b} ranks exactly like {6·a, 2·b}. A zero
// weight keeps a scorer for the explain output without letting it influence the
// pick. With no scorers (or all weights zero) every combined score is 0 and the
// picker decides alone (a random or cost picker, or a random tie-break).
//
// llm-d, by contrast, adds wᵢ·sᵢ without dividing by Σ wᵢ (its totals can
// exceed 1). The two differ by the constant factor Σ wᵢ per profile, so for the
// same weights they rank candidates identically and [MaxScore] and
// [WeightedRandom] choose alike; only the totals in [Decision.Explain] are
// scaled. routekit normalises so that totals stay in [0,1] and are comparable
// across profiles.
// It is a plain value; the scorer it holds must be safe for concurrent use.
type WeightedScorer struct {
	Weight float64
	Scorer Scorer
	// Name labels the scorer in [Decision] and [*ScoreError]. Empty means the
	// scorer's Name() method if it has one, else its Go type.
	Name string
}

// Weighted returns scorer s with weight w. See [WeightedScorer] for the
// semantics; w must be finite and ≥ 0 ([New] checks).
func Weighted(w float64, s Scorer) WeightedScorer { return WeightedScorer{Weight: w, Scorer: s} }

// Named returns a copy of ws labelled name.
func (ws WeightedScorer) Named(name string) WeightedScorer { ws.Name = name; return ws }

// Profile is one filter → score → pick pipeline. It is plain data: build one
// with a composite literal and hand it to [New] or [NewMulti].
// New copies what it needs; the plugins a Profile holds must be safe for concurrent
// use.
type Profile struct {
	// Name labels the profile's [Result] ("default", "decode", "prefill").
	Name string
	// Filters run in order; each sees what the previous kept.
	Filters []Filter
	// Scorers rate what the filters kept; see [WeightedScorer] for weights.
	Scorers []WeightedScorer
	// Picker chooses; nil means [MaxScore] with a random seed.
	Picker Picker
}

// StalePolicy says what the scheduler does with endpoints whose scraped metrics
// are stale (pool.Endpoint.Stale).
// It is a plain value, safe to copy and to read from several goroutines.
type StalePolicy uint8

const (
	// StaleExclude drops stale endpoints before filtering; if every endpoint is
	// stale the decision fails with [ErrAllStale]. It is the default.
	StaleExclude StalePolicy = iota
	// StaleFailOpen drops stale endpoints unless every endpoint is stale, in which
	// case it keeps them all (routing on old metrics rather than not at all).
	StaleFailOpen
	// StaleInclude keeps stale endpoints; scorers see their last good metrics.
	StaleInclude
)

// Option configures a [Scheduler].
// Options are immutable values, safe to reuse for several schedulers.
type Option interface{ apply(*Scheduler) }

type optionFunc func(*Scheduler)

func (f optionFunc) apply(s *Scheduler) { f(s) }

// WithPrefixIndex sets the index that fills [Candidate.Prefix]. Without it (or
// with nil) prefix matches are zero.
func WithPrefixIndex(idx PrefixIndex) Option {
	return optionFunc(func(s *Scheduler) { s.index = idx })
}

// WithStalePolicy sets the stale-metrics policy; the default is [StaleExclude].
func WithStalePolicy(p StalePolicy) Option {
	return optionFunc(func(s *Scheduler) { s.stale = p })
}

// WithFallbacks sets how many fallback endpoints a decision carries after the
// chosen one (default 2). The picker decides their order.
func WithFallbacks(n int) Option {
	return optionFunc(func(s *Scheduler) { s.fallbacks = n })
}

// Scheduler turns a request and a list of endpoints into a [Decision]. It is
// immutable after [New] and safe for concurrent use; its plugins must be too.
type Scheduler struct {
	profiles  []profile
	handler   ProfileHandler // nil: run profiles[0] only
	index     PrefixIndex
	stale     StalePolicy
	fallbacks int
}

// profile is a validated Profile.
type profile struct {
	name      string
	filters   []Filter
	fnames    []string
	scorers   []Scorer
	snames    []string
	weights   []float64 // normalised: sum 1 (or all 0)
	picker    Picker
	observers []Observer
}

// New returns a scheduler that runs one profile. It fails if a weight is
// negative or not finite, or a scorer or filter is nil.
func New(p Profile, opts ...Option) (*Scheduler, error) {
	return NewMulti(nil, []Profile{p}, opts...)
}

// NewMulti returns a scheduler that runs several profiles per decision as
// h directs (for example decode then prefill, see [Disaggregated]). A nil h
// runs profiles[0] alone, like [New].
func NewMulti(h ProfileHandler, profiles []Profile, opts ...Option) (*Scheduler, error) {
	if len(profiles) == 0 {
		return nil, errors.New("scheduler: no profiles")
	}
	s := &Scheduler{handler: h, fallbacks: 2}
	for _, o := range opts {
		o.apply(s)
	}
	if s.fallbacks < 0 {
		return nil, fmt.Errorf("scheduler: negative fallback count %d", s.fallbacks)
	}
	if s.stale > StaleInclude {
		return nil, fmt.Errorf("scheduler: unknown stale policy %d", s.stale)
	}
	for i, p := range profiles {
		cp, err := compile(p)
		if err != nil {
			return nil, fmt.Errorf("scheduler: profile %d (%q): %w", i, p.Name, err)
		}
		s.profiles = append(s.profiles, cp)
	}
	return s, nil
}

func compile(p Profile) (profile, error) {
	cp := profile{name: p.Name, picker: p.Picker}
	if cp.name == "" {
		cp.name = "default"
	}
	if cp.picker == nil {
		cp.picker = MaxScore(nil)
	}
	for i, f := range p.Filters {
		if f == nil {
			return cp, fmt.Errorf("filter %d is nil", i)
		}
		cp.filters = append(cp.filters, f)
		cp.fnames = append(cp.fnames, nameOf(f, "filter", i))
		if o, ok := f.(Observer); ok {
			cp.observers = append(cp.observers, o)
		}
	}
	var sum float64
	for i, ws := range p.Scorers {
		if ws.Scorer == nil {
			return cp, fmt.Errorf("scorer %d is nil", i)
		}
		if math.IsNaN(ws.Weight) || math.IsInf(ws.Weight, 0) || ws.Weight < 0 {
			return cp, fmt.Errorf("scorer %d: weight %v, want a finite value ≥ 0", i, ws.Weight)
		}
		name := ws.Name
		if name == "" {
			name = nameOf(ws.Scorer, "scorer", i)
		}
		cp.scorers = append(cp.scorers, ws.Scorer)
		cp.snames = append(cp.snames, name)
		cp.weights = append(cp.weights, ws.Weight)
		sum += ws.Weight
		if o, ok := ws.Scorer.(Observer); ok {
			cp.observers = append(cp.observers, o)
		}
	}
	if sum > 0 {
		for i := range cp.weights {
			cp.weights[i] /= sum
		}
	}
	if o, ok := cp.picker.(Observer); ok {
		cp.observers = append(cp.observers, o)
	}
	return cp, nil
}

// nameOf returns a plugin's Name() if it has one, else its Go type, else kind#i
// for anonymous function adapters.
func nameOf(x any, kind string, i int) string {
	if n, ok := x.(interface{ Name() string }); ok {
		return n.Name()
	}
	switch x.(type) {
	case FilterFunc, ScorerFunc, PickerFunc:
		return fmt.Sprintf("%s#%d", kind, i)
	}
	return fmt.Sprintf("%T", x)
}

// Schedule decides where req goes among eps and returns a new [Decision]. See
// [Scheduler.ScheduleInto], which reuses a Decision and does not allocate.
func (s *Scheduler) Schedule(ctx context.Context, req *Request, eps []*pool.Endpoint) (*Decision, error) {
	d := new(Decision)
	if err := s.ScheduleInto(ctx, req, eps, d); err != nil {
		return nil, err
	}
	return d, nil
}

// ScheduleInto decides where req goes among eps (typically a pool snapshot's
// endpoints, or a subset hint) and writes the outcome into d, reusing d's
// memory: with a reused d, a decision does not allocate (beyond what plugins do).
//
// Errors: [ErrNoPrompt], [ErrNoEndpoints], [ErrAllStale], [ErrAllFiltered] (from
// the primary profile), [ErrBadScore] via [*ScoreError], [ErrNoPick], a scorer's
// own error, or the context's error. [HTTPStatus] maps them to status codes. A
// failing secondary profile (for example prefill) does not fail the decision: its
// Result has Err set and the primary result stands.
func (s *Scheduler) ScheduleInto(ctx context.Context, req *Request, eps []*pool.Endpoint, d *Decision) error {
	d.reset()
	if req.PromptLen() == 0 {
		return ErrNoPrompt
	}
	if len(eps) == 0 {
		return ErrNoEndpoints
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	// Candidates, after the stale policy.
	base := d.base[:0]
	for _, e := range eps {
		if s.stale != StaleInclude && e.Stale() {
			continue
		}
		base = append(base, Candidate{Endpoint: e})
	}
	if len(base) == 0 {
		if s.stale == StaleExclude {
			d.base = base
			return ErrAllStale
		}
		for _, e := range eps {
			base = append(base, Candidate{Endpoint: e})
		}
	}
	d.base = base
	if s.index != nil && len(req.BlockKeys) > 0 {
		s.index.Match(req, base)
	}

	if s.handler == nil {
		r := d.result(0)
		if err := s.run(ctx, &s.profiles[0], req, d, r); err != nil {
			return err
		}
		d.setPrimary(0)
		return nil
	}
	ran := 0
	for n := 0; n <= len(s.profiles); n++ {
		pi := s.handler.Next(ctx, req, d)
		if pi < 0 {
			break
		}
		if pi >= len(s.profiles) {
			return fmt.Errorf("scheduler: profile handler chose profile %d of %d", pi, len(s.profiles))
		}
		r := d.result(ran)
		r.Profile = pi
		err := s.run(ctx, &s.profiles[pi], req, d, r)
		ran++
		if err != nil {
			if ran == 1 {
				return err
			}
			r.Err = err
		}
	}
	if ran == 0 {
		return errors.New("scheduler: profile handler chose no profile")
	}
	d.setPrimary(0)
	return nil
}

// run executes one profile into r.
func (s *Scheduler) run(ctx context.Context, p *profile, req *Request, d *Decision, r *Result) error {
	r.Name = p.name
	cands := append(r.cands[:0], d.base...)
	for i, f := range p.filters {
		cands = f.Filter(ctx, req, cands)
		if len(cands) == 0 {
			r.cands = cands
			return fmt.Errorf("%w by %s", ErrAllFiltered, p.fnames[i])
		}
	}
	r.cands = cands
	n := len(cands)
	r.Scorers = p.snames
	r.Weights = p.weights
	r.scores = grow(r.scores, n*len(p.scorers))
	r.Total = grow(r.Total, n)
	clear(r.Total)
	for j, sc := range p.scorers {
		row := r.scores[j*n : (j+1)*n]
		if err := sc.Score(ctx, req, cands, row); err != nil {
			return fmt.Errorf("scheduler: scorer %s: %w", p.snames[j], err)
		}
		w := p.weights[j]
		for i, v := range row {
			if !(v >= 0 && v <= 1) {
				return &ScoreError{Scorer: p.snames[j], Endpoint: cands[i].ID, Value: v}
			}
			r.Total[i] += w * v
		}
	}
	k := 1 + min(s.fallbacks, n-1) // not 1+fallbacks: WithFallbacks(math.MaxInt) would wrap
	r.picks = grow(r.picks, k)
	got := p.picker.Pick(ctx, req, cands, r.Total, r.picks)
	if got < 1 || got > k {
		return fmt.Errorf("%w (it returned %d of %d)", ErrNoPick, got, k)
	}
	r.picks = r.picks[:got]
	// Validate every pick before using any: a failed Result names no endpoint.
	for i, pi := range r.picks {
		if pi < 0 || pi >= n {
			return fmt.Errorf("%w (index %d of %d candidates)", ErrNoPick, pi, n)
		}
		for _, prev := range r.picks[:i] {
			if prev == pi {
				return fmt.Errorf("%w (candidate %d chosen twice)", ErrNoPick, pi)
			}
		}
	}
	r.Endpoint = cands[r.picks[0]].Endpoint
	r.Prefix = cands[r.picks[0]].Prefix
	r.Fallbacks = r.Fallbacks[:0]
	for _, pi := range r.picks[1:] {
		r.Fallbacks = append(r.Fallbacks, cands[pi].Endpoint)
	}
	r.UncachedTokens = req.UncachedTokens(r.Prefix.Blocks)
	for _, o := range p.observers {
		o.Observe(req, r)
	}
	return nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
