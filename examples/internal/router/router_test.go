package router_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/scheduler"
)

// rig is a router over n fake endpoints with fresh metrics.
type rig struct {
	pool  *pool.Pool
	index *kvcache.Index
	rt    *router.Router
	m     *router.Metrics
	log   *router.DecisionLog
}

func newRig(t *testing.T, n int, pol router.Policy) *rig {
	t.Helper()
	return newRigMetrics(t, n, pol, true)
}

// newRigMetrics is newRig; without fresh, no endpoint has been scraped, so
// every one is stale (as in a metrics outage).
func newRigMetrics(t *testing.T, n int, pol router.Policy, fresh bool) *rig {
	t.Helper()
	p := pool.New()
	for i := range n {
		require.NoError(t, p.Store(pool.Endpoint{ID: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("10.0.0.%d:8000", i+1), Models: []string{"m"}}))
	}
	for _, e := range p.Snapshot().Endpoints() {
		if fresh {
			e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})
		}
	}
	h, err := prefix.NewHasher("m", prefix.WithBlockSize(4))
	require.NoError(t, err)
	idx, err := kvcache.New(h, kvcache.WithLearnedTTL(0))
	require.NoError(t, err)
	s, fc, err := pol.Build(p, idx)
	require.NoError(t, err)
	m := router.NewMetrics(p, fc)
	log := router.NewDecisionLog(8)
	opts := []router.Option{router.WithPrefix(h, idx), router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}),
		router.WithMetrics(m), router.WithDecisionLog(log)}
	if fc != nil {
		opts = append(opts, router.WithFlowControl(fc))
	}
	rt, err := router.New(p, s, opts...)
	require.NoError(t, err)
	return &rig{pool: p, index: idx, rt: rt, m: m, log: log}
}

func completion(prompt string) *router.Input {
	return &router.Input{API: router.Completions, Body: fmt.Appendf(nil, `{"model":"m","prompt":%q,"max_tokens":4}`, prompt)}
}

func TestRoutePrefixAffinityAndAccounting(t *testing.T) {
	r := newRig(t, 3, router.Policy{})
	ctx := context.Background()
	shared := strings.Repeat("You are a helpful assistant. ", 8)

	f1, err := r.rt.Route(ctx, completion(shared+"first question"))
	require.NoError(t, err)
	first := f1.Endpoint
	assert.Equal(t, len(shared+"first question"), f1.Request.PromptLen())
	assert.Equal(t, int64(1), first.Load().Requests)
	assert.Equal(t, int64(f1.Request.PromptLen()), first.Load().UncachedTokens, "a cold request's whole prompt is uncached")
	f1.FirstToken()
	assert.Equal(t, int64(0), first.Load().UncachedTokens, "first token releases the prefill tokens")
	f1.End(router.Outcome{Status: 200})
	assert.Equal(t, int64(0), first.Load().Requests)

	// The speculative entry from f1 makes the next request with the same
	// prefix go to the same endpoint, every time.
	for i := range 10 {
		f, err := r.rt.Route(ctx, completion(shared+fmt.Sprintf("question %d", i)))
		require.NoError(t, err)
		assert.Equal(t, first.ID, f.Endpoint.ID, "request %d", i)
		assert.Less(t, f.Decision.UncachedTokens, f.Request.PromptLen(), "the prefix counts as cached")
		f.End(router.Outcome{Status: 200})
	}
	assert.Equal(t, int64(11), r.m.Routed(first.ID))
	assert.Greater(t, r.m.PrefixHitRatio(), 0.5)
}

func TestRouteRetryMovesAccounting(t *testing.T) {
	r := newRig(t, 3, router.Policy{Fallbacks: 2})
	f, err := r.rt.Route(context.Background(), completion("retry me please, I am a prompt"))
	require.NoError(t, err)
	require.Len(t, f.Fallbacks, 2)
	dests := strings.Split(f.Destinations(), ",")
	assert.Len(t, dests, 3)
	a := f.Endpoint
	b, ok := f.Retry(context.Background())
	require.True(t, ok)
	assert.NotEqual(t, a.ID, b.ID)
	assert.Equal(t, dests[1], b.Address)
	assert.Equal(t, int64(0), a.Load().Requests)
	assert.Equal(t, int64(1), b.Load().Requests)
	c, ok := f.Retry(context.Background())
	require.True(t, ok)
	_, ok = f.Retry(context.Background())
	assert.False(t, ok, "every endpoint was tried")
	assert.Equal(t, int64(1), c.Load().Requests)
	f.End(router.Outcome{Err: context.Canceled})
	f.End(router.Outcome{}) // idempotent
	for _, e := range r.pool.Snapshot().Endpoints() {
		assert.Equal(t, pool.Load{}, e.Load(), e.ID)
	}
	// Only the last endpoint keeps the speculation: a and b were never reached.
	assertLearned(t, r, f.Request.BlockKeys, map[string]int{a.ID: 0, b.ID: 0, c.ID: len(f.Request.BlockKeys)})
}

// assertLearned checks how many of keys the index presumes each endpoint holds.
func assertLearned(t *testing.T, r *rig, keys []uint64, want map[string]int) {
	t.Helper()
	require.NotEmpty(t, keys)
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	got := make([]kvcache.Match, len(ids))
	_, err := r.index.Lookup(keys, ids, got)
	require.NoError(t, err)
	for i, id := range ids {
		assert.Equal(t, want[id], got[i].Total(), id)
	}
}

func TestRouteServedMovesAccounting(t *testing.T) {
	r := newRig(t, 3, router.Policy{})
	f, err := r.rt.Route(context.Background(), completion("served elsewhere"))
	require.NoError(t, err)
	a, b := f.Endpoint, f.Fallbacks[1]
	f.Served("10.9.9.9:1") // unknown: ignored
	f.Served(b.Address)
	assert.Equal(t, b, f.Endpoint)
	assert.Equal(t, int64(0), a.Load().Requests)
	assert.Equal(t, int64(1), b.Load().Requests)
	assertLearned(t, r, f.Request.BlockKeys, map[string]int{a.ID: 0, b.ID: len(f.Request.BlockKeys)})
	f.End(router.Outcome{Status: 200})
}

func TestRouteSubset(t *testing.T) {
	r := newRig(t, 4, router.Policy{})
	for range 20 {
		in := completion("subset")
		in.Subset, in.HasSubset = []string{"10.0.0.2:8000", "10.0.0.4:8000"}, true
		f, err := r.rt.Route(context.Background(), in)
		require.NoError(t, err)
		assert.Contains(t, []string{"ep-1", "ep-3"}, f.Endpoint.ID)
		for _, fb := range f.Fallbacks {
			assert.Contains(t, []string{"ep-1", "ep-3"}, fb.ID)
		}
		f.End(router.Outcome{Status: 200})
	}
	for _, give := range [][]string{{}, {"192.168.1.1:80"}} {
		in := completion("subset")
		in.Subset, in.HasSubset = give, true
		_, err := r.rt.Route(context.Background(), in)
		require.ErrorIs(t, err, scheduler.ErrNoEndpoints)
		assert.Equal(t, 503, router.Status(err))
		assert.Equal(t, scheduler.ReasonNoEndpoints, router.Reason(err))
	}
}

func TestRouteRejections(t *testing.T) {
	r := newRig(t, 2, router.Policy{})
	ctx := context.Background()
	_, err := r.rt.Route(ctx, &router.Input{API: router.Completions, Body: []byte(`{"model":`)})
	assert.Equal(t, 400, router.Status(err))
	assert.Equal(t, scheduler.ReasonBadRequest, router.Reason(err))

	in := completion("x")
	in.Header = map[string][]string{router.HeaderPriority: {"high"}}
	_, err = r.rt.Route(ctx, in)
	assert.Equal(t, 400, router.Status(err))

	empty := newRig(t, 0, router.Policy{NoFlowControl: true})
	_, err = empty.rt.Route(ctx, completion("x"))
	assert.Equal(t, 503, router.Status(err))

	var buf bytes.Buffer
	_, err = r.m.WriteTo(&buf)
	require.NoError(t, err)
	assert.Contains(t, buf.String(), `routekit_rejections_total{reason="rejected-bad-request"} 2`)
}

// TestRouteFlowControlThroughMetricsOutage: with every endpoint's metrics
// stale (never scraped here), flow control still admits up to the in-flight
// cap, which the gateway counts itself, instead of holding every request as
// if the fleet were full; past the cap it sheds as usual.
func TestRouteFlowControlThroughMetricsOutage(t *testing.T) {
	r := newRigMetrics(t, 2, router.Policy{MaxInFlight: 1}, false)
	for _, e := range r.pool.Snapshot().Endpoints() {
		require.True(t, e.Stale(), e.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var flights []*router.Flight
	for _, prompt := range []string{"one", "two"} {
		f, err := r.rt.Route(ctx, completion(prompt))
		require.NoError(t, err, "admitted under the cap")
		flights = append(flights, f)
	}
	assert.NotEqual(t, flights[0].Endpoint.ID, flights[1].Endpoint.ID)
	shed := completion("three")
	shed.Header = map[string][]string{router.HeaderPriority: {"-1"}}
	_, err := r.rt.Route(ctx, shed)
	assert.Equal(t, 429, router.Status(err), "both endpoints at the cap")
	for _, f := range flights {
		f.End(router.Outcome{Status: 200})
	}
}

func TestRouteFlowControlSheds(t *testing.T) {
	// One endpoint, at most one in flight: a second sheddable request is
	// rejected with 429, a normal one waits until the first ends.
	r := newRig(t, 1, router.Policy{MaxInFlight: 1})
	ctx := context.Background()
	f1, err := r.rt.Route(ctx, completion("one"))
	require.NoError(t, err)

	shed := completion("two")
	shed.Header = map[string][]string{router.HeaderPriority: {"-1"}}
	_, err = r.rt.Route(ctx, shed)
	assert.Equal(t, 429, router.Status(err))
	assert.Equal(t, scheduler.ReasonSaturated, router.Reason(err))

	got := make(chan error, 1)
	go func() {
		f, err := r.rt.Route(ctx, completion("three"))
		if err == nil {
			f.End(router.Outcome{Status: 200})
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("request passed flow control while the fleet was full: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	f1.End(router.Outcome{Status: 200})
	select {
	case err := <-got:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("waiting request was not released")
	}

	cctx, cancel := context.WithCancel(ctx)
	f2, err := r.rt.Route(ctx, completion("four"))
	require.NoError(t, err)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = r.rt.Route(cctx, completion("five"))
	assert.Equal(t, scheduler.ReasonCancelled, router.Reason(err), "a client that leaves while queued is dropped")
	f2.End(router.Outcome{Status: 200})
}

func TestDecisionLog(t *testing.T) {
	r := newRig(t, 3, router.Policy{})
	for i := range 12 {
		in := completion(fmt.Sprintf("prompt number %d", i))
		in.Header = map[string][]string{router.HeaderRequestID: {fmt.Sprint("req-", i)}}
		f, err := r.rt.Route(context.Background(), in)
		require.NoError(t, err)
		f.End(router.Outcome{Status: 200})
	}
	recs := r.log.Recent()
	require.Len(t, recs, 8, "the log keeps its capacity")
	assert.Equal(t, "req-11", recs[0].ID, "newest first")
	assert.Equal(t, "req-4", recs[7].ID)
	rec := recs[0]
	assert.Equal(t, []string{"prefix", "token-load", "in-flight"}, rec.Scorers)
	assert.Len(t, rec.Candidates, 3)
	assert.Len(t, rec.Fallbacks, 2)
	for _, c := range rec.Candidates {
		assert.Len(t, c.Scores, 3)
		assert.InDelta(t, c.Total, 0.5*c.Scores[0]+0.25*c.Scores[1]+0.25*c.Scores[2], 1e-9)
	}
}

func TestInFlightCap(t *testing.T) {
	r := newRig(t, 2, router.Policy{MaxInFlight: 2, NoFlowControl: true})
	shared := strings.Repeat("same prefix for everyone ", 10)
	var fs []*router.Flight
	seen := map[string]int{}
	for i := range 4 {
		f, err := r.rt.Route(context.Background(), completion(shared+fmt.Sprint(i)))
		require.NoError(t, err)
		seen[f.Endpoint.ID]++
		fs = append(fs, f)
	}
	assert.Equal(t, map[string]int{"ep-0": 2, "ep-1": 2}, seen, "a full prefix holder lets requests spill over")
	for _, f := range fs {
		f.End(router.Outcome{Status: 200})
	}
}

func TestRetryReschedulesWhenNoFallbackLeft(t *testing.T) {
	// The prefix holder is the only candidate prefix affinity keeps, so the
	// decision has no fallback; Retry schedules again among the others.
	r := newRig(t, 3, router.Policy{})
	prompt := strings.Repeat("held only by ep-1 ", 10)
	h, err := prefix.NewHasher("m", prefix.WithBlockSize(4))
	require.NoError(t, err)
	toks, _ := router.Bytes{}.Encode(prompt, true)
	require.NoError(t, r.index.Learn("ep-1", h.AppendKeys(nil, toks, prefix.Extra{})))
	f, err := r.rt.Route(context.Background(), completion(prompt))
	require.NoError(t, err)
	require.Equal(t, "ep-1", f.Endpoint.ID)
	require.Empty(t, f.Fallbacks)
	next, ok := f.Retry(context.Background())
	require.True(t, ok)
	assert.NotEqual(t, "ep-1", next.ID)
	next2, ok := f.Retry(context.Background())
	require.True(t, ok)
	assert.NotContains(t, []string{"ep-1", next.ID}, next2.ID)
	_, ok = f.Retry(context.Background())
	assert.False(t, ok)
	f.End(router.Outcome{})
	for _, e := range r.pool.Snapshot().Endpoints() {
		assert.Equal(t, pool.Load{}, e.Load(), e.ID)
	}
}

// TestMetricsEscapeLabelValues: an endpoint ID with a quote, a backslash, a
// line feed, a tab and non-ASCII text is written with the Prometheus text
// format's escapes (not Go's %q), so a Prometheus parser reads the ID back.
func TestMetricsEscapeLabelValues(t *testing.T) {
	id := "pod \"a\"\\b\nc\td-é"
	p := pool.New()
	require.NoError(t, p.Store(pool.Endpoint{ID: id, Address: "10.0.0.1:8000", Models: []string{"m"}}))
	var buf bytes.Buffer
	_, err := router.NewMetrics(p, nil).WriteTo(&buf)
	require.NoError(t, err)
	assert.Contains(t, buf.String(), "routekit_endpoint_inflight_requests{endpoint=\"pod \\\"a\\\"\\\\b\\nc\td-é\"} 0\n")
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(&buf)
	require.NoError(t, err)
	fam := fams["routekit_endpoint_inflight_requests"]
	require.NotNil(t, fam)
	require.Len(t, fam.GetMetric(), 1)
	assert.Equal(t, id, fam.GetMetric()[0].GetLabel()[0].GetValue())
}
