package scheduler

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/routekit/routekit/pool"
)

// Decision is the outcome of one scheduling decision: where the request goes,
// where it may go next if that fails, and why. A Decision is not safe for
// concurrent use. It may be reused across decisions with
// [Scheduler.ScheduleInto]; everything it holds (including the slices returned by
// its methods) is then overwritten.
type Decision struct {
	// Endpoint is the chosen endpoint of the primary profile.
	Endpoint *pool.Endpoint
	// Fallbacks are the primary profile's next-best endpoints, in order, for a
	// retry when Endpoint cannot be reached.
	Fallbacks []*pool.Endpoint
	// UncachedTokens is the prompt length minus the prefix Endpoint already
	// holds: pass it to pool.Endpoint.Dispatch for in-flight accounting.
	UncachedTokens int
	// Results holds one entry per profile run, in run order; Results[0] is the
	// primary. A single-profile scheduler has exactly one.
	Results []Result

	base    []Candidate // candidates after the stale policy, with prefix matches
	results []Result    // backing store reused across decisions
}

// Result is one profile's outcome within a [Decision].
// Like its Decision, a Result is not safe for concurrent use and is overwritten when
// the Decision is reused.
type Result struct {
	// Name is the profile's name, Profile its index in the scheduler.
	Name    string
	Profile int
	// Endpoint is the chosen endpoint and Fallbacks the ordered next choices;
	// Endpoint is nil if Err is set.
	Endpoint  *pool.Endpoint
	Fallbacks []*pool.Endpoint
	// Prefix is Endpoint's prefix match for the request, and UncachedTokens the
	// prompt tokens it still has to compute.
	Prefix         PrefixMatch
	UncachedTokens int
	// Scorers and Weights name the profile's scorers and their normalised weights
	// (summing to 1, or all 0 when every configured weight is 0), in the order
	// of the rows of [Result.Scores].
	Scorers []string
	Weights []float64
	// Total is the combined score of each candidate that passed the filters, in
	// the order of [Result.Candidates].
	Total []float64
	// Err is set when this (non-primary) profile failed; the decision stands.
	Err error

	cands  []Candidate
	scores []float64 // len(Scorers) rows of len(cands)
	picks  []int
}

func (d *Decision) reset() {
	d.Endpoint, d.Fallbacks, d.UncachedTokens = nil, nil, 0
	d.Results = d.results[:0]
}

// result returns the i-th result slot, reset, growing the backing store.
func (d *Decision) result(i int) *Result {
	if i >= len(d.results) {
		d.results = append(d.results, Result{})
	}
	d.Results = d.results[:i+1]
	r := &d.results[i]
	*r = Result{cands: r.cands[:0], scores: r.scores[:0], picks: r.picks[:0], Total: r.Total[:0], Fallbacks: r.Fallbacks[:0]}
	return r
}

func (d *Decision) setPrimary(i int) {
	r := &d.Results[i]
	d.Endpoint, d.Fallbacks, d.UncachedTokens = r.Endpoint, r.Fallbacks, r.UncachedTokens
}

// Result returns the result of the profile named name, or nil if it did not run.
func (d *Decision) Result(name string) *Result {
	for i := range d.Results {
		if d.Results[i].Name == name {
			return &d.Results[i]
		}
	}
	return nil
}

// Candidates returns the candidates that passed this profile's filters, in the
// order of Total and of each row of Scores.
func (r *Result) Candidates() []Candidate { return r.cands }

// Scores returns the raw [0,1] scores the i-th scorer gave, one per candidate.
func (r *Result) Scores(i int) []float64 {
	n := len(r.cands)
	if i < 0 || (i+1)*n > len(r.scores) {
		return nil
	}
	return r.scores[i*n : (i+1)*n]
}

// Score returns the raw score scorer gave the endpoint with ID id, and whether
// both were found.
func (r *Result) Score(scorer, id string) (float64, bool) {
	for j, name := range r.Scorers {
		if name != scorer {
			continue
		}
		for i := range r.cands {
			if r.cands[i].ID == id {
				return r.Scores(j)[i], true
			}
		}
	}
	return 0, false
}

// Explain writes a human-readable table of every profile's candidates, their
// prefix matches, each scorer's score and the total, marking the chosen endpoint
// (*) and fallbacks (1, 2, …). It is for debugging and logs; it allocates.
func (d *Decision) Explain(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for ri := range d.Results {
		r := &d.Results[ri]
		fmt.Fprintf(tw, "profile %s", r.Name)
		if r.Err != nil {
			fmt.Fprintf(tw, " failed: %v\n", r.Err)
			continue
		}
		fmt.Fprintln(tw)
		hdr := []string{"", "endpoint", "prefix"}
		for j, s := range r.Scorers {
			hdr = append(hdr, fmt.Sprintf("%s×%.2f", s, r.Weights[j]))
		}
		hdr = append(hdr, "total")
		fmt.Fprintln(tw, strings.Join(hdr, "\t"))
		for i := range r.cands {
			c := &r.cands[i]
			mark := ""
			for k, p := range r.picks {
				if p == i {
					if k == 0 {
						mark = "*"
					} else {
						mark = fmt.Sprint(k)
					}
				}
			}
			row := []string{mark, c.ID, fmt.Sprintf("%d(g%d/c%d/s%d)", c.Prefix.Blocks, c.Prefix.GPU, c.Prefix.CPU, c.Prefix.Storage)}
			for j := range r.Scorers {
				row = append(row, fmt.Sprintf("%.3f", r.Scores(j)[i]))
			}
			row = append(row, fmt.Sprintf("%.3f", r.Total[i]))
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	return tw.Flush()
}
