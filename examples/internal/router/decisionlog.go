package router

import (
	"sync"
	"time"
)

// DecisionLog keeps the most recent routing decisions with every candidate's
// scores, for a debug endpoint that explains why requests went where they
// went. Recording copies into preallocated slots (no allocation once warm);
// formatting happens only when someone reads. Safe for concurrent use; a nil
// *DecisionLog records nothing.
type DecisionLog struct {
	mu   sync.Mutex // guards the fields below
	ring []DecisionRecord
	next int
	n    int
}

// DecisionRecord is one decision as [DecisionLog.Recent] returns it.
// It is a copy, not a live view: plain data, safe to share read-only.
type DecisionRecord struct {
	Time         time.Time         `json:"time"`
	ID           string            `json:"request_id,omitempty"`
	Model        string            `json:"model"`
	PromptTokens int               `json:"prompt_tokens"`
	Blocks       int               `json:"blocks"`
	Endpoint     string            `json:"endpoint"`
	Fallbacks    []string          `json:"fallbacks"`
	Uncached     int               `json:"uncached_tokens"`
	OverheadUS   float64           `json:"overhead_us"`
	WaitedUS     float64           `json:"flow_wait_us"`
	Profile      string            `json:"profile"`
	Scorers      []string          `json:"scorers"`
	Weights      []float64         `json:"weights"`
	Candidates   []CandidateRecord `json:"candidates"`
}

// CandidateRecord is one candidate that passed the filters.
// It is a copy, not a live view: plain data, safe to share read-only.
type CandidateRecord struct {
	Endpoint     string    `json:"endpoint"`
	PrefixBlocks int       `json:"prefix_blocks"`
	InFlight     int64     `json:"in_flight"`
	InFlightToks int64     `json:"in_flight_uncached_tokens"`
	Waiting      int       `json:"waiting"`
	Scores       []float64 `json:"scores"`
	Total        float64   `json:"total"`
}

// NewDecisionLog returns a log of the last n decisions (n ≥ 1).
func NewDecisionLog(n int) *DecisionLog {
	return &DecisionLog{ring: make([]DecisionRecord, max(n, 1))}
}

func (l *DecisionLog) record(f *Flight) {
	if l == nil {
		return
	}
	d := f.Decision
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &l.ring[l.next]
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	r.Time, r.ID, r.Model = f.routed, f.Request.ID, f.Request.Model
	r.PromptTokens, r.Blocks = f.Request.PromptLen(), len(f.Request.BlockKeys)
	r.Endpoint, r.Uncached = d.Endpoint.ID, d.UncachedTokens
	r.OverheadUS = float64(f.Overhead().Nanoseconds()) / 1e3
	r.WaitedUS = float64(f.waited.Nanoseconds()) / 1e3
	r.Fallbacks = r.Fallbacks[:0]
	for _, e := range d.Fallbacks {
		r.Fallbacks = append(r.Fallbacks, e.ID)
	}
	res := &d.Results[0]
	r.Profile = res.Name
	r.Scorers = append(r.Scorers[:0], res.Scorers...)
	r.Weights = append(r.Weights[:0], res.Weights...)
	cands := res.Candidates()
	if cap(r.Candidates) < len(cands) {
		r.Candidates = make([]CandidateRecord, len(cands))
	}
	r.Candidates = r.Candidates[:len(cands)]
	for i := range cands {
		c := &cands[i]
		cr := &r.Candidates[i]
		ld := c.Load()
		cr.Endpoint, cr.PrefixBlocks = c.ID, c.Prefix.Blocks
		cr.InFlight, cr.InFlightToks, cr.Waiting = ld.Requests, ld.UncachedTokens, c.Metrics().Waiting
		cr.Total = res.Total[i]
		cr.Scores = cr.Scores[:0]
		for j := range res.Scorers {
			cr.Scores = append(cr.Scores, res.Scores(j)[i])
		}
	}
}

// Recent returns copies of the last decisions, newest first.
func (l *DecisionLog) Recent() []DecisionRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]DecisionRecord, 0, l.n)
	for k := 1; k <= l.n; k++ {
		r := l.ring[(l.next-k+len(l.ring))%len(l.ring)]
		r.Fallbacks = append([]string{}, r.Fallbacks...)
		r.Scorers = append([]string(nil), r.Scorers...)
		r.Weights = append([]float64(nil), r.Weights...)
		cs := make([]CandidateRecord, len(r.Candidates))
		for i, c := range r.Candidates {
			c.Scores = append([]float64(nil), c.Scores...)
			cs[i] = c
		}
		r.Candidates = cs
		out = append(out, r)
	}
	return out
}
