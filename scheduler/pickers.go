package scheduler

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// lockedRand draws per-decision seeds from a rand.Source shared by concurrent
// decisions. Per-candidate randomness is derived from the seed with splitmix64,
// so a decision takes the lock once and does not allocate.
type lockedRand struct {
	mu  sync.Mutex // guards src
	src rand.Source
}

func newLockedRand(src rand.Source) *lockedRand {
	if src == nil {
		src = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	return &lockedRand{src: src}
}

func (l *lockedRand) seed() uint64 {
	l.mu.Lock()
	v := l.src.Uint64()
	l.mu.Unlock()
	return v
}

// mix is splitmix64's finaliser: a well-spread 64-bit hash of seed and i.
func mix(seed uint64, i int) uint64 {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// unit returns a uniform float64 in (0,1) from a hash.
func unit(h uint64) float64 { return (float64(h>>11) + 0.5) / (1 << 53) }

// topK writes into out the indices of the len(out) (or len(key)) largest keys,
// best first; ties broken by tie (larger wins). It runs in O(n·k), which beats
// sorting for the few fallbacks a decision carries.
func topK(n int, key func(int) float64, tie func(int) uint64, out []int) int {
	k := min(len(out), n)
	for j := range k {
		best, bk, bt := -1, 0.0, uint64(0)
	next:
		for i := range n {
			for _, c := range out[:j] {
				if c == i {
					continue next
				}
			}
			v, t := key(i), tie(i)
			if best < 0 || v > bk || (v == bk && t > bt) {
				best, bk, bt = i, v, t
			}
		}
		out[j] = best
	}
	return k
}

// MaxScore returns a picker that chooses the highest combined score, breaking
// ties uniformly at random, and fills the fallbacks with the next best scores.
// Randomness comes from src (nil: a randomly seeded PCG); with a seeded source the
// choices are reproducible for a given sequence of calls. It is llm-d's default
// max-score-picker without the shuffle-and-sort. Safe for concurrent use.
func MaxScore(src rand.Source) Picker { return &maxScore{r: newLockedRand(src)} }

type maxScore struct{ r *lockedRand }

func (*maxScore) Name() string { return "max-score" }

func (p *maxScore) Pick(_ context.Context, _ *Request, cands []Candidate, scores []float64, out []int) int {
	seed := p.r.seed()
	return topKScores(scores, seed, out)
}

func topKScores(scores []float64, seed uint64, out []int) int {
	n := len(scores)
	k := min(len(out), n)
	for j := range k {
		best, bt := -1, uint64(0)
	next:
		for i, v := range scores {
			for _, c := range out[:j] {
				if c == i {
					continue next
				}
			}
			if best < 0 || v > scores[best] {
				best, bt = i, mix(seed, i)
			} else if v == scores[best] {
				if t := mix(seed, i); t > bt {
					best, bt = i, t
				}
			}
		}
		out[j] = best
	}
	return k
}

// WeightedRandom returns a picker that chooses candidate i with probability
// proportional to its combined score sᵢ (sampling without replacement for the
// fallbacks), by the A-Res method: key = u^(1/sᵢ) with u uniform in (0,1), the
// largest keys win. Candidates with score 0 come last, in random order; if every
// score is 0 the choice is uniform. Safe for concurrent use.
func WeightedRandom(src rand.Source) Picker { return &weightedRandom{r: newLockedRand(src)} }

type weightedRandom struct{ r *lockedRand }

func (*weightedRandom) Name() string { return "weighted-random" }

func (p *weightedRandom) Pick(_ context.Context, _ *Request, cands []Candidate, scores []float64, out []int) int {
	seed := p.r.seed()
	key := func(i int) float64 {
		s := scores[i]
		if s <= 0 {
			return math.Inf(-1)
		}
		return math.Log(unit(mix(seed, i))) / s // log of u^(1/s): same order
	}
	return topK(len(scores), key, func(i int) uint64 { return mix(seed^0x5bd1e995, i) }, out)
}

// Random returns a picker that ignores scores and chooses uniformly at random
// (a baseline). Safe for concurrent use.
func Random(src rand.Source) Picker { return &random{r: newLockedRand(src)} }

type random struct{ r *lockedRand }

func (*random) Name() string { return "random" }

func (p *random) Pick(_ context.Context, _ *Request, cands []Candidate, _ []float64, out []int) int {
	seed := p.r.seed()
	return topK(len(cands), func(int) float64 { return 0 }, func(i int) uint64 { return mix(seed, i) }, out)
}

// RoundRobin returns a picker that ignores scores and cycles through the
// candidates by position (a baseline; with a stable candidate order it visits
// every endpoint in turn). Safe for concurrent use.
func RoundRobin() Picker { return &roundRobin{} }

type roundRobin struct{ next atomic.Uint64 }

func (*roundRobin) Name() string { return "round-robin" }

func (p *roundRobin) Pick(_ context.Context, _ *Request, cands []Candidate, _ []float64, out []int) int {
	n := len(cands)
	start := int((p.next.Add(1) - 1) % uint64(n)) // reduce before converting: past 2^63 int() is negative
	k := min(len(out), n)
	for j := range k {
		out[j] = (start + j) % n
	}
	return k
}
