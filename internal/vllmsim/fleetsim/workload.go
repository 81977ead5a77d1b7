package fleetsim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Workload produces requests in arrival order. The simulator asks Peek for
// the next arrival time after every event and calls Pop when that time
// comes, so a workload materialises one request at a time and may add
// earlier arrivals in reaction to completions (closed loops).
//
// A Sim calls a Workload only from the goroutine running Sim.Run, so
// implementations need not be safe for concurrent use; use one Workload per
// Sim.
type Workload interface {
	// Peek returns the arrival time of the next request, and false when no
	// request is pending (for now: a closed-loop workload may have more
	// after a completion).
	Peek() (time.Duration, bool)
	// Pop returns the request Peek announced.
	Pop() *Request
}

// Feedback is implemented by workloads that react to completions (multi-turn
// chat). output is nil for rejected requests.
// The simulator calls it only from the goroutine running Sim.Run, so it need
// not be safe for concurrent use.
type Feedback interface {
	Completed(now time.Duration, req *Request, output []uint32)
}

// Stage is a constant-rate phase of an arrival process.
// It is a plain value, safe to copy and to read from several goroutines.
type Stage struct {
	// Rate is the arrival rate in requests per second.
	Rate float64
	// Duration is the stage's length; 0 on the last stage means forever.
	Duration time.Duration
}

// Arrivals is an arrival process: Poisson or evenly spaced, over a ladder of
// rate stages (inference-perf's load stages). It is a plain value; each
// Workload built from it keeps its own arrival state.
type Arrivals struct {
	// Poisson draws exponential gaps; otherwise gaps are 1/Rate.
	Poisson bool
	Stages  []Stage
}

// Ladder returns stages from rate `from` to `to` in steps of `step`, each
// lasting d: the "rate ladder" of llm-d's benchmarks (e.g. 3→60 QPS). A step
// that is not positive (or NaN) yields the single stage at `from`.
func Ladder(from, to, step float64, d time.Duration) []Stage {
	if !(step > 0) {
		return []Stage{{Rate: from, Duration: d}}
	}
	var st []Stage
	for r := from; r <= to+1e-9; r += step {
		st = append(st, Stage{Rate: r, Duration: d})
	}
	return st
}

// arrivalClock generates arrival times from an Arrivals.
type arrivalClock struct {
	a     Arrivals
	rng   *rand.Rand
	stage int
	start time.Duration // start of the current stage
	t     time.Duration
}

// next returns the next arrival time, false when the stages are over.
func (c *arrivalClock) next() (time.Duration, bool) {
	for c.stage < len(c.a.Stages) {
		st := c.a.Stages[c.stage]
		end := time.Duration(math.MaxInt64)
		if st.Duration > 0 {
			end = c.start + st.Duration
		}
		if st.Rate > 0 {
			var gap float64
			if c.a.Poisson {
				gap = c.rng.ExpFloat64() / st.Rate
			} else {
				gap = 1 / st.Rate
			}
			// A gap too long for a Duration (a tiny rate) means no more
			// arrivals in this stage; a gap under 1 ns (a huge or infinite
			// rate) still advances the clock, so the stage ends.
			if ns := gap * float64(time.Second); ns < float64(math.MaxInt64-c.t) {
				t := c.t + max(time.Duration(ns), 1)
				if t < end {
					c.t = t
					return t, true
				}
			}
		}
		if st.Duration <= 0 {
			return 0, false
		}
		// Move to the next stage; a Poisson process is memoryless, so
		// restarting at the boundary is exact.
		c.stage++
		c.start, c.t = end, end
	}
	return 0, false
}

// SharedPrefix is inference-perf's shared_prefix workload: Groups system
// prompts (customers) of SystemPromptLen tokens, each with PromptsPerGroup
// distinct questions (users) of QuestionLen tokens; every request picks a
// random group and user and asks for OutputLen tokens. With MultiTurn each
// user's requests form a conversation: the prompt is the system prompt plus
// every earlier question and (completed) answer of that user plus a new
// question.
//
// The llm-d "b2b-saas" benchmark is Groups 150, PromptsPerGroup 5,
// SystemPromptLen 6000, QuestionLen 1200, OutputLen 1000, Poisson 3→60 QPS.
// Groups and PromptsPerGroup below 1 mean 1; negative lengths mean 0.
// It is a plain value, safe to copy and to read from several goroutines. Each
// Workload built from it keeps its own state.
type SharedPrefix struct {
	Groups, PromptsPerGroup      int
	SystemPromptLen, QuestionLen int
	OutputLen                    int
	MultiTurn                    bool
	Arrivals                     Arrivals
	// NumRequests stops the workload after this many requests (0 = when the
	// arrival stages end).
	NumRequests int
	Seed        uint64
}

// Workload returns the workload's generator. Each call starts afresh; a
// generator belongs to one Sim and is not safe for concurrent use.
func (sp SharedPrefix) Workload() Workload {
	g := &sharedPrefixGen{sp: sp, rng: rand.New(rand.NewPCG(sp.Seed, sp.Seed^0x2545f4914f6cdd1d))}
	g.clock = arrivalClock{a: sp.Arrivals, rng: g.rng}
	sp.Groups, sp.PromptsPerGroup = max(sp.Groups, 1), max(sp.PromptsPerGroup, 1)
	sp.OutputLen = max(sp.OutputLen, 0)
	g.sp = sp
	g.systems = make([][]uint32, sp.Groups)
	g.questions = make([][][]uint32, sp.Groups)
	for i := range g.systems {
		g.systems[i] = randomTokens(g.rng, sp.SystemPromptLen)
		g.questions[i] = make([][]uint32, sp.PromptsPerGroup)
		for j := range g.questions[i] {
			g.questions[i][j] = randomTokens(g.rng, sp.QuestionLen)
		}
	}
	if sp.MultiTurn {
		g.history = make(map[[2]int]*chatHistory)
	}
	g.advance()
	return g
}

type chatHistory struct {
	tokens []uint32 // system + earlier turns (questions and answers)
	turn   int
}

type sharedPrefixGen struct {
	sp        SharedPrefix
	rng       *rand.Rand
	clock     arrivalClock
	systems   [][]uint32
	questions [][][]uint32
	history   map[[2]int]*chatHistory
	n         int64
	nextAt    time.Duration
	ok        bool
}

func (g *sharedPrefixGen) advance() {
	if g.sp.NumRequests > 0 && g.n >= int64(g.sp.NumRequests) {
		g.ok = false
		return
	}
	g.nextAt, g.ok = g.clock.next()
}

func (g *sharedPrefixGen) Peek() (time.Duration, bool) { return g.nextAt, g.ok }

func (g *sharedPrefixGen) Pop() *Request {
	grp := g.rng.IntN(max(g.sp.Groups, 1))
	usr := g.rng.IntN(max(g.sp.PromptsPerGroup, 1))
	req := &Request{ID: g.n, Arrival: g.nextAt, OutputLen: g.sp.OutputLen, Group: grp, User: usr}
	g.n++
	sys := g.systems[grp]
	q := g.questions[grp][usr]
	if g.history == nil {
		req.Prompt = make([]uint32, 0, len(sys)+len(q)+req.OutputLen) // room for the output
		req.Prompt = append(append(req.Prompt, sys...), q...)
	} else {
		h := g.history[[2]int{grp, usr}]
		if h == nil {
			h = &chatHistory{tokens: sys}
			g.history[[2]int{grp, usr}] = h
		}
		if h.turn > 0 {
			q = randomTokens(g.rng, g.sp.QuestionLen) // a new question each turn
		}
		req.Turn = h.turn
		h.turn++
		req.Prompt = make([]uint32, 0, len(h.tokens)+len(q)+req.OutputLen)
		req.Prompt = append(append(req.Prompt, h.tokens...), q...)
		// The question joins the history now; the answer when it completes.
		h.tokens = req.Prompt
	}
	g.advance()
	return req
}

// Completed appends a multi-turn answer to its user's history.
func (g *sharedPrefixGen) Completed(_ time.Duration, req *Request, output []uint32) {
	if g.history == nil || output == nil {
		return
	}
	h := g.history[[2]int{req.Group, req.User}]
	if h == nil || len(h.tokens) != len(req.Prompt) {
		return // a later turn already started; keep its history
	}
	h.tokens = append(append(make([]uint32, 0, len(h.tokens)+len(output)), h.tokens...), output...)
}

// Chat is a closed-loop multi-turn chat workload: conversations start
// following Arrivals; each has Turns turns; after an answer completes the
// user thinks for ThinkTime and sends the next turn, whose prompt is the
// whole conversation so far (system prompt, earlier questions and answers)
// plus a new question.
// It is a plain value, safe to copy and to read from several goroutines. Each
// Workload built from it keeps its own state.
type Chat struct {
	SystemPromptLen, QuestionLen, OutputLen int
	// SharedSystemPrompts is the number of distinct system prompts that
	// conversations draw from (0 or 1: all share one).
	SharedSystemPrompts int
	Turns               int
	ThinkTime           time.Duration
	Arrivals            Arrivals
	// NumConversations stops starting conversations after this many (0 =
	// when the arrival stages end).
	NumConversations int
	Seed             uint64
}

// Workload returns the workload's generator.
func (c Chat) Workload() Workload {
	c.OutputLen = max(c.OutputLen, 0)
	g := &chatGen{c: c, rng: rand.New(rand.NewPCG(c.Seed, c.Seed^0x7fb5d329728ea185)), byReq: make(map[int64]*chatConv)}
	g.clock = arrivalClock{a: c.Arrivals, rng: g.rng}
	for range max(c.SharedSystemPrompts, 1) {
		g.systems = append(g.systems, randomTokens(g.rng, c.SystemPromptLen))
	}
	g.nextStart()
	return g
}

type chatConv struct {
	id      int
	history []uint32
	turn    int
}

type pendingTurn struct {
	at   time.Duration
	conv *chatConv
}

type chatGen struct {
	c       Chat
	rng     *rand.Rand
	clock   arrivalClock
	systems [][]uint32
	started int
	startAt time.Duration
	startOK bool
	pending []pendingTurn // follow-up turns, sorted by at
	byReq   map[int64]*chatConv
	n       int64
}

func (g *chatGen) nextStart() {
	if g.c.NumConversations > 0 && g.started >= g.c.NumConversations {
		g.startOK = false
		return
	}
	g.startAt, g.startOK = g.clock.next()
}

func (g *chatGen) Peek() (time.Duration, bool) {
	if len(g.pending) > 0 && (!g.startOK || g.pending[0].at <= g.startAt) {
		return g.pending[0].at, true
	}
	return g.startAt, g.startOK
}

func (g *chatGen) Pop() *Request {
	var conv *chatConv
	var at time.Duration
	if len(g.pending) > 0 && (!g.startOK || g.pending[0].at <= g.startAt) {
		conv, at = g.pending[0].conv, g.pending[0].at
		g.pending = g.pending[1:]
	} else {
		at = g.startAt
		sys := g.systems[g.rng.IntN(len(g.systems))]
		conv = &chatConv{id: g.started, history: sys}
		g.started++
		g.nextStart()
	}
	q := randomTokens(g.rng, g.c.QuestionLen)
	req := &Request{ID: g.n, Arrival: at, OutputLen: g.c.OutputLen, User: conv.id, Turn: conv.turn}
	g.n++
	req.Prompt = append(append(make([]uint32, 0, len(conv.history)+len(q)+req.OutputLen), conv.history...), q...)
	conv.history = req.Prompt
	conv.turn++
	g.byReq[req.ID] = conv
	return req
}

// Completed schedules the conversation's next turn, ThinkTime after the
// answer, with the answer appended to the conversation.
func (g *chatGen) Completed(now time.Duration, req *Request, output []uint32) {
	conv := g.byReq[req.ID]
	delete(g.byReq, req.ID)
	if conv == nil || output == nil || conv.turn >= max(g.c.Turns, 1) {
		return
	}
	conv.history = append(append(make([]uint32, 0, len(conv.history)+len(output)), conv.history...), output...)
	pt := pendingTurn{at: now + max(g.c.ThinkTime, 0), conv: conv} // a turn never arrives in the past
	i, _ := slices.BinarySearchFunc(g.pending, pt.at, func(p pendingTurn, t time.Duration) int {
		if p.at <= t {
			return -1
		}
		return 1
	})
	g.pending = slices.Insert(g.pending, i, pt)
}

// randomTokens returns n token ids drawn uniformly from [1000, 100000), a
// range typical of BPE vocabularies' ordinary tokens.
func randomTokens(rng *rand.Rand, n int) []uint32 {
	t := make([]uint32, max(n, 0))
	for i := range t {
		t[i] = 1000 + uint32(rng.IntN(99000))
	}
	return t
}
