package scheduler

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// constScorer gives fixed scores by endpoint ID.
func constScorer(scores map[string]float64) Scorer {
	return ScorerFunc(func(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
		for i := range cands {
			out[i] = scores[cands[i].ID]
		}
		return nil
	})
}

func TestWeightSemantics(t *testing.T) {
	eps, _ := fleet(t, ep{id: "a"}, ep{id: "b"}, ep{id: "c"})
	sa := constScorer(map[string]float64{"a": 1, "b": 0, "c": 0.5})
	sb := constScorer(map[string]float64{"a": 0, "b": 1, "c": 0.5})
	req := &Request{PromptTokens: 10}
	tests := []struct {
		name      string
		scorers   []WeightedScorer
		wantTotal []float64
		wantPick  string
	}{
		{"3:1 normalised by the sum", []WeightedScorer{Weighted(3, sa), Weighted(1, sb)}, []float64{0.75, 0.25, 0.5}, "a"},
		{"6:2 is the same as 3:1", []WeightedScorer{Weighted(6, sa), Weighted(2, sb)}, []float64{0.75, 0.25, 0.5}, "a"},
		{"1:3 flips the choice", []WeightedScorer{Weighted(1, sa), Weighted(3, sb)}, []float64{0.25, 0.75, 0.5}, "b"},
		{"zero weight is explain-only", []WeightedScorer{Weighted(0, sa), Weighted(1, sb)}, []float64{0, 1, 0.5}, "b"},
		{"no weight at all", []WeightedScorer{Weighted(0, sa)}, []float64{0, 0, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Profile{Scorers: tt.scorers, Picker: MaxScore(rand.NewPCG(1, 1))})
			require.NoError(t, err)
			d, err := s.Schedule(context.Background(), req, eps)
			require.NoError(t, err)
			r := d.Results[0]
			for i := range tt.wantTotal {
				assert.InDelta(t, tt.wantTotal[i], r.Total[i], 1e-12)
			}
			if tt.wantPick != "" {
				assert.Equal(t, tt.wantPick, d.Endpoint.ID)
			}
			w := 0.0
			for _, x := range r.Weights {
				w += x
			}
			if w > 0 {
				assert.InDelta(t, 1, w, 1e-12, "normalised weights sum to 1")
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	ok := constScorer(nil)
	tests := []struct {
		name string
		p    Profile
		opts []Option
	}{
		{"negative weight", Profile{Scorers: []WeightedScorer{Weighted(-1, ok)}}, nil},
		{"NaN weight", Profile{Scorers: []WeightedScorer{Weighted(math.NaN(), ok)}}, nil},
		{"infinite weight", Profile{Scorers: []WeightedScorer{Weighted(math.Inf(1), ok)}}, nil},
		{"nil scorer", Profile{Scorers: []WeightedScorer{{Weight: 1}}}, nil},
		{"nil filter", Profile{Filters: []Filter{nil}}, nil},
		{"negative fallbacks", Profile{}, []Option{WithFallbacks(-1)}},
		{"bad stale policy", Profile{}, []Option{WithStalePolicy(9)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.p, tt.opts...)
			assert.Error(t, err)
		})
	}
	_, err := NewMulti(nil, nil)
	assert.Error(t, err)
}

func TestScheduleErrors(t *testing.T) {
	fresh, _ := fleet(t, ep{id: "a"}, ep{id: "b"})
	stale, _ := fleet(t, ep{id: "a", stale: true}, ep{id: "b", stale: true})
	none := FilterFunc(func(context.Context, *Request, []Candidate) []Candidate { return nil })
	bad := func(v float64) Scorer {
		return ScorerFunc(func(_ context.Context, _ *Request, _ []Candidate, out []float64) error {
			for i := range out {
				out[i] = 0.5
			}
			out[len(out)-1] = v
			return nil
		})
	}
	failing := ScorerFunc(func(context.Context, *Request, []Candidate, []float64) error { return errors.New("boom") })
	lazyPicker := PickerFunc(func(context.Context, *Request, []Candidate, []float64, []int) int { return 0 })
	dupPicker := PickerFunc(func(_ context.Context, _ *Request, _ []Candidate, _ []float64, out []int) int {
		out[0] = 7
		return 1
	})
	twicePicker := PickerFunc(func(_ context.Context, _ *Request, _ []Candidate, _ []float64, out []int) int {
		out[0], out[1] = 1, 1
		return 2
	})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	req := &Request{PromptTokens: 100}
	tests := []struct {
		name       string
		p          Profile
		opts       []Option
		ctx        context.Context
		req        *Request
		eps        []*pool.Endpoint
		wantErr    error
		wantStatus int
		wantReason Reason
	}{
		{"no endpoints", Profile{}, nil, nil, req, nil, ErrNoEndpoints, 503, ReasonNoEndpoints},
		{"all stale", Profile{}, nil, nil, req, stale, ErrAllStale, 503, ReasonNoEndpoints},
		{"all filtered", Profile{Filters: []Filter{none}}, nil, nil, req, fresh, ErrAllFiltered, 503, ReasonNoEndpoints},
		{"NaN score", Profile{Scorers: []WeightedScorer{Weighted(1, bad(math.NaN()))}}, nil, nil, req, fresh, ErrBadScore, 500, ReasonInternal},
		{"score above 1", Profile{Scorers: []WeightedScorer{Weighted(1, bad(1.0001))}}, nil, nil, req, fresh, ErrBadScore, 500, ReasonInternal},
		{"negative score", Profile{Scorers: []WeightedScorer{Weighted(1, bad(-0.1))}}, nil, nil, req, fresh, ErrBadScore, 500, ReasonInternal},
		{"zero-weight scorer is still checked", Profile{Scorers: []WeightedScorer{Weighted(0, bad(2))}}, nil, nil, req, fresh, ErrBadScore, 500, ReasonInternal},
		{"no prompt", Profile{}, nil, nil, &Request{Model: "m"}, fresh, ErrNoPrompt, 400, ReasonBadRequest},
		{"picker chose nothing", Profile{Picker: lazyPicker}, nil, nil, req, fresh, ErrNoPick, 500, ReasonInternal},
		{"picker out of range", Profile{Picker: dupPicker}, nil, nil, req, fresh, ErrNoPick, 500, ReasonInternal},
		{"picker repeats itself", Profile{Picker: twicePicker}, nil, nil, req, fresh, ErrNoPick, 500, ReasonInternal},
		{"client gone", Profile{}, nil, cancelled, req, fresh, context.Canceled, 499, ReasonCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.p, tt.opts...)
			require.NoError(t, err)
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			d, err := s.Schedule(ctx, tt.req, tt.eps)
			assert.Nil(t, d)
			require.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, tt.wantStatus, HTTPStatus(err))
			assert.Equal(t, tt.wantReason, DropReason(err))
		})
	}
	t.Run("scorer error", func(t *testing.T) {
		s, err := New(Profile{Scorers: []WeightedScorer{Weighted(1, failing).Named("flaky")}})
		require.NoError(t, err)
		_, err = s.Schedule(context.Background(), req, fresh)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "flaky")
		assert.Equal(t, http.StatusInternalServerError, HTTPStatus(err))
	})
	t.Run("score error names scorer and endpoint", func(t *testing.T) {
		s, err := New(Profile{Scorers: []WeightedScorer{Weighted(1, bad(3)).Named("mine")}})
		require.NoError(t, err)
		_, err = s.Schedule(context.Background(), req, fresh)
		se, ok := errors.AsType[*ScoreError](err)
		require.True(t, ok)
		assert.Equal(t, ScoreError{Scorer: "mine", Endpoint: "b", Value: 3}, *se)
	})
}

func TestStalePolicies(t *testing.T) {
	mixed, _ := fleet(t, ep{id: "a", stale: true}, ep{id: "b"})
	stale, _ := fleet(t, ep{id: "a", stale: true}, ep{id: "b", stale: true})
	req := &Request{PromptTokens: 1}
	tests := []struct {
		name    string
		policy  StalePolicy
		eps     []*pool.Endpoint
		want    []string
		wantErr error
	}{
		{"exclude drops stale", StaleExclude, mixed, []string{"b"}, nil},
		{"exclude all stale fails", StaleExclude, stale, nil, ErrAllStale},
		{"fail-open drops stale", StaleFailOpen, mixed, []string{"b"}, nil},
		{"fail-open keeps all when all stale", StaleFailOpen, stale, []string{"a", "b"}, nil},
		{"include keeps stale", StaleInclude, mixed, []string{"a", "b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Profile{}, WithStalePolicy(tt.policy))
			require.NoError(t, err)
			d, err := s.Schedule(context.Background(), req, tt.eps)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(d.Results[0].Candidates()))
		})
	}
}

func TestDecisionFallbacksPrefixAndExplain(t *testing.T) {
	eps, _ := fleet(t, ep{id: "a", waiting: 4}, ep{id: "b", waiting: 0}, ep{id: "c", waiting: 2}, ep{id: "d", waiting: 8})
	idx := mapIndex{"a": gpu(8), "c": PrefixMatch{Blocks: 4, GPU: 2, CPU: 2}}
	prefix, err := Prefix(TierWeights{})
	require.NoError(t, err)
	s, err := New(Profile{
		Scorers: []WeightedScorer{Weighted(3, prefix), Weighted(1, QueueDepth())},
		Picker:  MaxScore(rand.NewPCG(1, 1)),
	}, WithPrefixIndex(idx), WithFallbacks(2))
	require.NoError(t, err)
	req := &Request{BlockKeys: keys(10), BlockSize: 16}
	d, err := s.Schedule(context.Background(), req, eps)
	require.NoError(t, err)
	// a: .75·.8 + .25·.5 = .725; b: .25·1 = .25; c: .75·.36 + .25·.75 = .4575; d: 0
	assert.Equal(t, "a", d.Endpoint.ID)
	require.Len(t, d.Fallbacks, 2)
	assert.Equal(t, "c", d.Fallbacks[0].ID)
	assert.Equal(t, "b", d.Fallbacks[1].ID)
	assert.Equal(t, 160-8*16, d.UncachedTokens)
	r := d.Result("default")
	require.NotNil(t, r)
	assert.Equal(t, gpu(8), r.Prefix)
	v, ok := r.Score("prefix", "c")
	assert.True(t, ok)
	assert.InDelta(t, 0.36, v, 1e-12)
	v, ok = r.Score("queue-depth", "d")
	assert.True(t, ok)
	assert.InDelta(t, 0, v, 1e-12)
	_, ok = r.Score("nope", "a")
	assert.False(t, ok)
	var sb strings.Builder
	require.NoError(t, d.Explain(&sb))
	out := sb.String()
	assert.Contains(t, out, "profile default")
	assert.Contains(t, out, "prefix×0.75")
	assert.Contains(t, out, "queue-depth×0.25")
	assert.Regexp(t, `\*\s+a\s+8\(g8/c0/s0\)\s+0\.800\s+0\.500\s+0\.725`, out)
	assert.Nil(t, d.Result("prefill"))
}

func TestObserversSeeEveryDecision(t *testing.T) {
	eps, _ := fleet(t, ep{id: "a"}, ep{id: "b"})
	sess := SessionAffinity(0, 0, nil)
	s, err := New(Profile{Scorers: []WeightedScorer{Weighted(1, sess)}, Picker: MaxScore(rand.NewPCG(2, 2))})
	require.NoError(t, err)
	req := &Request{PromptTokens: 1, Session: "chat-1"}
	d, err := s.Schedule(context.Background(), req, eps)
	require.NoError(t, err)
	first := d.Endpoint.ID
	for range 20 {
		d, err := s.Schedule(context.Background(), req, eps)
		require.NoError(t, err)
		assert.Equal(t, first, d.Endpoint.ID, "session sticks")
	}
}

func TestDisaggregated(t *testing.T) {
	eps, _ := fleet(t,
		ep{id: "d1", role: pool.RoleDecode}, ep{id: "d2", role: pool.RoleDecode},
		ep{id: "p1", role: pool.RolePrefill}, ep{id: "p2", role: pool.RolePrefill, waiting: 3},
	)
	idx := mapIndex{"d2": gpu(6)}
	prefix, err := Prefix(TierWeights{})
	require.NoError(t, err)
	decode := Profile{Name: "decode", Filters: []Filter{Roles(pool.RoleDecode, pool.RoleBoth)}, Scorers: []WeightedScorer{Weighted(1, prefix)}}
	prefill := Profile{Name: "prefill", Filters: []Filter{Roles(pool.RolePrefill)}, Scorers: []WeightedScorer{Weighted(1, QueueDepth())}}
	s, err := NewMulti(Disaggregated{Decode: 0, Prefill: 1, MinUncachedTokens: 64}, []Profile{decode, prefill}, WithPrefixIndex(idx))
	require.NoError(t, err)
	tests := []struct {
		name        string
		blocks      int
		wantPrefill string
	}{
		{"long uncached prompt disaggregates", 20, "p1"}, // 320 − 96 = 224 ≥ 64
		{"mostly cached stays local", 9, ""},             // 144 − 96 = 48 < 64
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(tt.blocks)}, eps)
			require.NoError(t, err)
			assert.Equal(t, "d2", d.Endpoint.ID)
			assert.Equal(t, "decode", d.Results[0].Name)
			if tt.wantPrefill == "" {
				assert.Len(t, d.Results, 1)
				return
			}
			r := d.Result("prefill")
			require.NotNil(t, r)
			assert.Equal(t, tt.wantPrefill, r.Endpoint.ID)
		})
	}
	t.Run("failed prefill keeps the decode result", func(t *testing.T) {
		only, _ := fleet(t, ep{id: "d1", role: pool.RoleDecode})
		d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(20)}, only)
		require.NoError(t, err)
		assert.Equal(t, "d1", d.Endpoint.ID)
		r := d.Result("prefill")
		require.NotNil(t, r)
		assert.ErrorIs(t, r.Err, ErrAllFiltered)
		var sb strings.Builder
		require.NoError(t, d.Explain(&sb))
		assert.Contains(t, sb.String(), "profile decode")
		assert.Contains(t, sb.String(), "profile prefill failed")
	})
	t.Run("failed prefill pick names no endpoint", func(t *testing.T) {
		dup := PickerFunc(func(_ context.Context, _ *Request, _ []Candidate, _ []float64, out []int) int {
			out[0], out[1] = 0, 0
			return 2
		})
		bad := prefill
		bad.Picker = dup
		s, err := NewMulti(Disaggregated{Decode: 0, Prefill: 1, MinUncachedTokens: 64}, []Profile{decode, bad}, WithPrefixIndex(idx))
		require.NoError(t, err)
		d, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(20)}, eps)
		require.NoError(t, err)
		r := d.Result("prefill")
		require.NotNil(t, r)
		require.ErrorIs(t, r.Err, ErrNoPick)
		assert.Nil(t, r.Endpoint, "Endpoint is nil if Err is set")
		assert.Empty(t, r.Fallbacks)
	})
	t.Run("failed decode fails", func(t *testing.T) {
		only, _ := fleet(t, ep{id: "p1", role: pool.RolePrefill})
		_, err := s.Schedule(context.Background(), &Request{BlockKeys: keys(20)}, only)
		assert.ErrorIs(t, err, ErrAllFiltered)
	})
	t.Run("bad handler", func(t *testing.T) {
		bad, err := NewMulti(ProfileHandlerFunc(func(context.Context, *Request, *Decision) int { return 5 }), []Profile{decode})
		require.NoError(t, err)
		_, err = bad.Schedule(context.Background(), &Request{PromptTokens: 1}, eps)
		assert.Error(t, err)
		loop, err := NewMulti(ProfileHandlerFunc(func(context.Context, *Request, *Decision) int { return 0 }), []Profile{decode})
		require.NoError(t, err)
		d, err := loop.Schedule(context.Background(), &Request{PromptTokens: 1}, eps)
		require.NoError(t, err, "a handler that never stops is cut off")
		assert.LessOrEqual(t, len(d.Results), 2)
	})
}

// TestHugeFallbackCount: WithFallbacks(math.MaxInt) means "every other
// candidate", not an overflowed negative slice length.
func TestHugeFallbackCount(t *testing.T) {
	eps, _ := fleet(t, ep{id: "a", waiting: 0}, ep{id: "b", waiting: 1}, ep{id: "c", waiting: 2})
	s, err := New(Profile{Scorers: []WeightedScorer{Weighted(1, QueueDepth())}}, WithFallbacks(math.MaxInt))
	require.NoError(t, err)
	d, err := s.Schedule(context.Background(), &Request{PromptTokens: 1}, eps)
	require.NoError(t, err)
	assert.Equal(t, "a", d.Endpoint.ID)
	assert.Equal(t, []*pool.Endpoint{eps[1], eps[2]}, d.Fallbacks)
}

func TestScheduleIntoDoesNotAllocate(t *testing.T) {
	specs := make([]ep, 100)
	idx := mapIndex{}
	for i := range specs {
		specs[i] = ep{waiting: i % 7, inflight: i % 3, tokens: 1000 * i}
	}
	eps, _ := fleet(t, specs...)
	for i, e := range eps {
		if i%10 == 0 {
			idx[e.ID] = gpu(400)
		}
	}
	s, err := New(DefaultProfile(rand.NewPCG(1, 1)), WithPrefixIndex(idx))
	require.NoError(t, err)
	req := &Request{BlockKeys: keys(512)}
	var d Decision
	require.NoError(t, s.ScheduleInto(context.Background(), req, eps, &d))
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.ScheduleInto(context.Background(), req, eps, &d); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
