package fleetsim_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
)

// listWorkload replays fixed requests.
type listWorkload struct {
	reqs []*fleetsim.Request
	i    int
}

func (l *listWorkload) Peek() (time.Duration, bool) {
	if l.i >= len(l.reqs) {
		return 0, false
	}
	return l.reqs[l.i].Arrival, true
}

func (l *listWorkload) Pop() *fleetsim.Request {
	r := l.reqs[l.i]
	l.i++
	return r
}

func tokens(n int, base uint32) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = base + uint32(i)
	}
	return t
}

func TestColdTTFTIsPromptOverPrefillRate(t *testing.T) {
	cfg := vllmsim.Qwen3_32B_H100x2()
	tests := []struct {
		name   string
		prompt int
	}{
		{"one chunk", 4000},
		{"chunked", 20000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &listWorkload{reqs: []*fleetsim.Request{{Prompt: tokens(tt.prompt, 7), OutputLen: 10}}}
			sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 1}, w, fleetsim.RoundRobin())
			require.NoError(t, err)
			rep, err := sim.Run()
			require.NoError(t, err)
			require.Equal(t, 1, rep.Finished)
			steps := (tt.prompt + cfg.MaxBatchedTokens - 1) / cfg.MaxBatchedTokens
			want := float64(tt.prompt)/cfg.PrefillTokensPerSec + float64(steps)*cfg.StepOverhead.Seconds()
			assert.InDelta(t, want, rep.TTFT.P50.Seconds(), 0.001)
			// The bulk of it is prompt / prefill throughput.
			assert.InDelta(t, float64(tt.prompt)/cfg.PrefillTokensPerSec, rep.TTFT.P50.Seconds(), 0.1*want)
			assert.Zero(t, rep.Results[0].CachedTokens)
		})
	}
}

func TestRepeatedPromptsHitAndTTFTDrops(t *testing.T) {
	cfg := vllmsim.Qwen3_32B_H100x2()
	prompt := tokens(8000, 100)
	var reqs []*fleetsim.Request
	for i := range 50 {
		reqs = append(reqs, &fleetsim.Request{ID: int64(i), Arrival: time.Duration(i) * 2 * time.Second, Prompt: prompt, OutputLen: 20})
	}
	sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 1}, &listWorkload{reqs: reqs}, fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 50, rep.Finished)
	assert.Greater(t, rep.PrefixHitRate, 0.97)
	first, later := rep.Results[0], rep.Results[10]
	assert.Zero(t, first.CachedTokens)
	assert.Equal(t, 7984, later.CachedTokens) // all full blocks but the last token's
	assert.Less(t, later.TTFT, first.TTFT/10)
}

func TestPastSaturationQueuesGrow(t *testing.T) {
	cfg := vllmsim.Qwen3_32B_H100x2()
	w := fleetsim.SharedPrefix{
		Groups: 50, PromptsPerGroup: 5, SystemPromptLen: 1000, QuestionLen: 500, OutputLen: 50,
		Arrivals: fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: 1, Duration: 15 * time.Second}, {Rate: 40, Duration: 15 * time.Second}}},
		Seed:     1,
	}.Workload()
	sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 1, Seed: 1, MaxTime: 31 * time.Second}, w, fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	calm := fleetsim.Summarize(rep.Results, 0, 15*time.Second)
	hot := fleetsim.Summarize(rep.Results, 15*time.Second, 0)
	assert.Greater(t, hot.TTFT.P90, 10*calm.TTFT.P90)
	var early, late int
	for _, s := range rep.Series {
		switch {
		case s.At < 15*time.Second:
			early = max(early, s.Waiting)
		case s.At < 30*time.Second:
			late = max(late, s.Waiting)
		}
	}
	assert.LessOrEqual(t, early, 1)
	assert.Greater(t, late, 50)
	assert.Positive(t, rep.Unfinished, "the backlog is still there at MaxTime")
	t.Log(rep)
}

func smallShared(n int, rate float64, seed uint64) fleetsim.Workload {
	return fleetsim.SharedPrefix{
		Groups: 20, PromptsPerGroup: 4, SystemPromptLen: 3000, QuestionLen: 500, OutputLen: 100,
		Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: rate}}},
		NumRequests: n, Seed: seed,
	}.Workload()
}

func TestKVEventsReproduceEachCache(t *testing.T) {
	cfg := vllmsim.Qwen3_32B_H100x2()
	cfg.NumBlocks = 1500 // force evictions
	index := map[int]map[uint64]int{}
	var stored, removed int
	onKV := func(r *fleetsim.Replica, _ time.Duration, ev vllmsim.KVEvent) {
		m := index[r.ID()]
		if m == nil {
			m = map[uint64]int{}
			index[r.ID()] = m
		}
		switch ev.Kind {
		case vllmsim.BlockStored:
			stored++
			assert.Len(t, ev.Tokens, len(ev.Keys)*ev.BlockSize)
			for _, k := range ev.Keys {
				m[k]++
			}
		case vllmsim.BlockRemoved:
			removed++
			for _, k := range ev.Keys {
				m[k]--
				if m[k] == 0 {
					delete(m, k)
				}
			}
		}
	}
	var replicas []*fleetsim.Replica
	router := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
		replicas = st.Replicas
		return st.Replicas[req.Group%len(st.Replicas)]
	})
	sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 3, OnKVEvent: onKV}, smallShared(250, 4, 3), router)
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 250, rep.Finished)
	assert.Positive(t, stored)
	assert.Positive(t, removed, "the small cache must evict")
	for _, r := range replicas {
		m := index[r.ID()]
		assert.Equal(t, r.NumCachedBlocks(), len(m), "replica %d", r.ID())
		for k, c := range m {
			assert.True(t, r.Cached(k))
			assert.Positive(t, c)
		}
	}
}

func TestDeterministicGivenSeed(t *testing.T) {
	run := func() *fleetsim.Report {
		sim, err := fleetsim.New(fleetsim.Config{Engine: vllmsim.Qwen3_8B_H100(), Replicas: 4, Seed: 9}, smallShared(150, 20, 9), fleetsim.Random())
		require.NoError(t, err)
		rep, err := sim.Run()
		require.NoError(t, err)
		return rep
	}
	a, b := run(), run()
	assert.Equal(t, a.Results, b.Results)
	assert.Equal(t, a.ITL, b.ITL)
}

func TestAutoscaleStartupDelayAndDrain(t *testing.T) {
	var added *fleetsim.Replica
	var removedFirst bool
	onTick := func(c *fleetsim.Control) {
		switch {
		case c.Now() == 10*time.Second:
			r, err := c.AddReplica(fleetsim.ReplicaSpec{Labels: map[string]string{"role": "decode"}})
			assert.NoError(t, err)
			added = r
		case c.Now() == 60*time.Second && !removedFirst:
			removedFirst = true
			c.RemoveReplica(c.Replicas()[0])
		}
	}
	var sawStarting bool
	router := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
		if st.Starting > 0 {
			sawStarting = true
		}
		for _, r := range st.Replicas {
			assert.True(t, r.Ready())
			assert.False(t, r.Draining())
		}
		return fleetsim.LeastLoaded().Route(req, st)
	})
	sim, err := fleetsim.New(fleetsim.Config{
		Engine: vllmsim.Qwen3_8B_H100(), Replicas: 1, StartupDelay: 30 * time.Second,
		OnTick: onTick, TickInterval: time.Second, Seed: 2,
	}, smallShared(400, 5, 2), router)
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.NotNil(t, added)
	assert.True(t, sawStarting)
	require.Len(t, rep.Replicas, 2)
	assert.Equal(t, 10*time.Second, rep.Replicas[1].Added)
	assert.Equal(t, 40*time.Second, rep.Replicas[1].Ready)
	assert.Positive(t, rep.Replicas[1].Routed)
	assert.GreaterOrEqual(t, rep.Replicas[0].Gone, 60*time.Second)
	for _, res := range rep.Results {
		if res.Replica == 1 {
			assert.GreaterOrEqual(t, res.Arrival, 40*time.Second)
		}
		if res.Replica == 0 {
			assert.Less(t, res.Arrival, 60*time.Second)
		}
	}
	assert.Equal(t, 400, rep.Finished)
	// Cost: replica 0 from 0 to Gone, replica 1 from 10 s to the end.
	want := rep.Replicas[0].Gone.Seconds() + (rep.End - 10*time.Second).Seconds()
	assert.InDelta(t, want, rep.ReplicaSeconds, 0.01)
}

func TestMultiTurnChatReusesHistory(t *testing.T) {
	w := fleetsim.Chat{
		SystemPromptLen: 500, QuestionLen: 100, OutputLen: 50, Turns: 4, ThinkTime: 2 * time.Second,
		Arrivals:         fleetsim.Arrivals{Stages: []fleetsim.Stage{{Rate: 2}}},
		NumConversations: 10, Seed: 4,
	}.Workload()
	sim, err := fleetsim.New(fleetsim.Config{Engine: vllmsim.Qwen3_8B_H100(), Replicas: 1}, w, fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 40, rep.Finished)
	for _, r := range rep.Results {
		wantPrompt := 500 + 100*(r.Turn+1) + 50*r.Turn
		assert.Equal(t, wantPrompt, r.PromptTokens)
		if r.Turn > 0 {
			// Everything but the new question (and the partial block) hits.
			assert.GreaterOrEqual(t, r.CachedTokens, wantPrompt-100-16)
		}
	}
}

func TestRejectAndBadConfig(t *testing.T) {
	_, err := fleetsim.New(fleetsim.Config{Engine: vllmsim.Config{Model: "x"}}, smallShared(1, 1, 1), fleetsim.Random())
	require.ErrorIs(t, err, vllmsim.ErrBadConfig)
	_, err = fleetsim.New(fleetsim.Config{OnTick: func(*fleetsim.Control) {}}, smallShared(1, 1, 1), fleetsim.Random())
	require.Error(t, err)
	for _, c := range []fleetsim.Config{{StartupDelay: -1}, {MaxTime: -1}, {KVEventDelay: -1}, {ScrapeInterval: -1}, {TickInterval: -1}} {
		_, err = fleetsim.New(c, smallShared(1, 1, 1), fleetsim.Random())
		assert.ErrorContains(t, err, "negative duration", "%+v", c)
	}

	none := fleetsim.RouterFunc(func(*fleetsim.Request, *fleetsim.State) *fleetsim.Replica { return nil })
	sim, err := fleetsim.New(fleetsim.Config{Replicas: 1}, smallShared(10, 1, 1), none)
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	assert.Equal(t, 10, rep.Rejected)
	_, err = sim.Run()
	assert.Error(t, err)
}

type pdRouter struct{}

func (pdRouter) Route(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
	_, d := pdRouter{}.RoutePD(req, st)
	return d
}

func (pdRouter) RoutePD(req *fleetsim.Request, st *fleetsim.State) (p, d *fleetsim.Replica) {
	for _, r := range st.Replicas {
		switch {
		case r.Labels()["role"] == "prefill" && p == nil:
			p = r
		case r.Labels()["role"] == "decode" && (d == nil || r.InFlight() < d.InFlight()):
			d = r
		}
	}
	if req.ID%5 == 0 {
		p = nil // some requests skip disaggregation
	}
	return p, d
}

func TestPrefillDecodeDisaggregation(t *testing.T) {
	spec := func(role string) fleetsim.ReplicaSpec {
		return fleetsim.ReplicaSpec{Labels: map[string]string{"role": role}}
	}
	router := pdRouter{}
	sim, err := fleetsim.New(fleetsim.Config{
		Engine: vllmsim.Qwen3_8B_H100(), Fleet: []fleetsim.ReplicaSpec{spec("prefill"), spec("decode"), spec("decode")}, Seed: 5,
		OnComplete: func(fleetsim.Result) {},
	}, smallShared(200, 4, 5), fleetsim.PDRouter(router))
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 200, rep.Finished)
	var disagg int
	for _, r := range rep.Results {
		if r.PrefillReplica >= 0 {
			disagg++
			assert.Equal(t, 0, r.PrefillReplica)
			assert.NotEqual(t, 0, r.Replica)
			assert.Equal(t, r.PromptTokens, r.RemoteTokens+r.CachedTokens, "every prompt token is pulled or cached")
			assert.Positive(t, r.RemoteTokens)
		} else {
			assert.Zero(t, r.RemoteTokens)
		}
		assert.Equal(t, 100, r.OutputTokens)
	}
	assert.Equal(t, 160, disagg)
	assert.Equal(t, 160, rep.Replicas[0].Routed)
	assert.Zero(t, rep.Replicas[0].Final.Held, "decode replicas released every prefill's blocks")
	assert.Equal(t, rep.Replicas[0].Final.NumBlocks, rep.Replicas[0].Final.FreeBlocks)
	assert.Positive(t, rep.Replicas[1].Final.ExternalHits)
	assert.Equal(t, 200, rep.Replicas[1].Routed+rep.Replicas[2].Routed)
}

func TestKVEventDelayAndScrapeInterval(t *testing.T) {
	type rec struct {
		replica int
		at      time.Duration
		kind    vllmsim.KVEventKind
		keys    int
	}
	run := func(delay time.Duration) []rec {
		var out []rec
		var scrapes []time.Duration
		router := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
			for _, r := range st.Replicas {
				m := r.Scraped()
				assert.LessOrEqual(t, m.At, st.Now)
				assert.Less(t, st.Now-m.At, 500*time.Millisecond, "scraped within the interval")
				scrapes = append(scrapes, m.At)
			}
			return st.Replicas[req.Group%len(st.Replicas)]
		})
		sim, err := fleetsim.New(fleetsim.Config{
			Engine: vllmsim.Qwen3_8B_H100(), Replicas: 2, Seed: 4,
			KVEventDelay: delay, ScrapeInterval: 500 * time.Millisecond,
			OnKVEvent: func(r *fleetsim.Replica, at time.Duration, ev vllmsim.KVEvent) {
				out = append(out, rec{r.ID(), at, ev.Kind, len(ev.Keys)})
			},
		}, smallShared(60, 10, 4), router)
		require.NoError(t, err)
		_, err = sim.Run()
		require.NoError(t, err)
		for _, s := range scrapes {
			assert.Zero(t, s%(500*time.Millisecond), "scrapes happen on the interval")
		}
		return out
	}
	now, later := run(0), run(200*time.Millisecond)
	require.NotEmpty(t, now)
	// Events after the last arrival are not delivered once the run is
	// over; every delivered one is the undelayed event shifted by 200 ms.
	require.LessOrEqual(t, len(later), len(now))
	require.Greater(t, len(later), len(now)/2)
	for i := range later {
		assert.Equal(t, now[i].at+200*time.Millisecond, later[i].at)
		assert.Equal(t, now[i].replica, later[i].replica)
		assert.Equal(t, now[i].kind, later[i].kind)
		assert.Equal(t, now[i].keys, later[i].keys)
	}
}

func TestScaleFromZeroHoldsRequests(t *testing.T) {
	onTick := func(c *fleetsim.Control) {
		if c.Holding() > 0 && len(c.Replicas()) == 0 {
			_, err := c.AddReplica(fleetsim.ReplicaSpec{})
			assert.NoError(t, err)
		}
	}
	w := smallShared(20, 10, 6)
	sim, err := fleetsim.New(fleetsim.Config{
		Engine: vllmsim.Qwen3_8B_H100(), StartupDelay: 30 * time.Second, HoldWhenEmpty: true,
		OnTick: onTick, TickInterval: time.Second,
	}, w, fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 20, rep.Finished)
	for _, r := range rep.Results {
		if r.Arrival < 30*time.Second {
			assert.GreaterOrEqual(t, r.TTFT, 30*time.Second-r.Arrival, "waited for the cold start")
		}
	}
	// Without holding, the router sees no replica and rejects.
	sim, err = fleetsim.New(fleetsim.Config{
		Engine: vllmsim.Qwen3_8B_H100(), StartupDelay: 30 * time.Second,
		OnTick: onTick, TickInterval: time.Second,
	}, smallShared(20, 10, 6), fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err = sim.Run()
	require.NoError(t, err)
	assert.Positive(t, rep.Rejected)
}

// TestDegenerateWorkloads: zero or negative sizes and a non-positive ladder
// step give a clear, finite workload instead of a panic or an endless loop.
func TestDegenerateWorkloads(t *testing.T) {
	assert.Equal(t, []fleetsim.Stage{{Rate: 3, Duration: time.Second}}, fleetsim.Ladder(3, 60, 0, time.Second))
	assert.Equal(t, []fleetsim.Stage{{Rate: 3, Duration: time.Second}}, fleetsim.Ladder(3, 60, -1, time.Second))
	assert.Len(t, fleetsim.Ladder(3, 9, 3, time.Second), 3)

	// Rates too small or too large for nanosecond gaps end or fill the stage.
	for _, rate := range []float64{1e-12, math.Inf(1)} {
		w := fleetsim.SharedPrefix{NumRequests: 1000, Arrivals: fleetsim.Arrivals{Stages: []fleetsim.Stage{{Rate: rate, Duration: time.Microsecond}}}}.Workload()
		last, n := time.Duration(0), 0
		for at, ok := w.Peek(); ok; at, ok = w.Peek() {
			require.Greater(t, at, last, "rate %v: arrival times increase", rate)
			require.Less(t, at, time.Microsecond, "rate %v: arrivals stay in the stage", rate)
			last = at
			w.Pop()
			n++
		}
		assert.LessOrEqual(t, n, 999, "rate %v", rate)
	}

	arr := fleetsim.Arrivals{Stages: []fleetsim.Stage{{Rate: 10, Duration: time.Second}}}
	tests := []struct {
		name string
		give fleetsim.Workload
	}{
		{"no groups", fleetsim.SharedPrefix{Arrivals: arr}.Workload()},
		{"negative sizes", fleetsim.SharedPrefix{Groups: -2, PromptsPerGroup: -1, SystemPromptLen: -5,
			QuestionLen: -1, OutputLen: -3, Arrivals: arr}.Workload()},
		{"multi-turn, no groups", fleetsim.SharedPrefix{MultiTurn: true, Arrivals: arr}.Workload()},
		{"chat, negative sizes", fleetsim.Chat{SystemPromptLen: -1, QuestionLen: -1, OutputLen: -1,
			Turns: 1, Arrivals: arr}.Workload()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			for {
				_, ok := tt.give.Peek()
				if !ok {
					break
				}
				req := tt.give.Pop()
				require.NotNil(t, req)
				assert.Empty(t, req.Prompt)
				assert.GreaterOrEqual(t, req.OutputLen, 0)
				n++
			}
			assert.Equal(t, 9, n, "10 requests/s for one second: at 0.1 s .. 0.9 s")
		})
	}
}

// TestChatNegativeThinkTime: a negative think time sends the next turn at
// once, never before the answer that triggers it.
func TestChatNegativeThinkTime(t *testing.T) {
	w := fleetsim.Chat{
		SystemPromptLen: 64, QuestionLen: 16, OutputLen: 8, Turns: 3, ThinkTime: -time.Hour,
		Arrivals:         fleetsim.Arrivals{Stages: []fleetsim.Stage{{Rate: 5}}},
		NumConversations: 4, Seed: 9,
	}.Workload()
	sim, err := fleetsim.New(fleetsim.Config{Engine: vllmsim.Fast(), Replicas: 1}, w, fleetsim.RoundRobin())
	require.NoError(t, err)
	rep, err := sim.Run()
	require.NoError(t, err)
	require.Equal(t, 12, rep.Finished)
	done := map[[2]int]time.Duration{} // (conversation, turn) → when its answer completed
	for _, r := range rep.Results {
		done[[2]int{r.User, r.Turn}] = r.Arrival + r.E2E
	}
	for _, r := range rep.Results {
		if r.Turn > 0 {
			prev, ok := done[[2]int{r.User, r.Turn - 1}]
			require.True(t, ok)
			assert.GreaterOrEqual(t, r.Arrival, prev, "conversation %d turn %d", r.User, r.Turn)
		}
	}
}
