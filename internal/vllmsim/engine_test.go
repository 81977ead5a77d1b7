package vllmsim_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
)

func seqTokens(n int, base uint32) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = base + uint32(i)
	}
	return t
}

// run steps the engine until every sequence finished, returning the step
// outputs' batch sizes.
func run(t *testing.T, eng *vllmsim.Engine, now *time.Duration, seqs ...*vllmsim.Seq) (prefill []int, decode []int) {
	t.Helper()
	for range 100000 {
		done := true
		for _, s := range seqs {
			if s.Finish() == vllmsim.NotFinished {
				done = false
			}
		}
		if done {
			return
		}
		d, ok := eng.Schedule(*now)
		require.True(t, ok, "engine stalled")
		*now += d
		out := eng.Complete(*now)
		prefill = append(prefill, out.PrefillTokens)
		decode = append(decode, out.DecodeSeqs)
	}
	t.Fatal("did not finish")
	return
}

func TestEngineChunkedPrefillRespectsTokenBudget(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.MaxBatchedTokens = 100
	eng, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	var now time.Duration
	s, err := eng.Add(&vllmsim.Request{ID: "a", Prompt: seqTokens(350, 1), MaxTokens: 3, IgnoreEOS: true}, now)
	require.NoError(t, err)
	prefill, decode := run(t, eng, &now, s)
	assert.Equal(t, []int{100, 100, 100, 50, 0, 0}, prefill)
	assert.Equal(t, []int{0, 0, 0, 0, 1, 1}, decode)
	assert.Len(t, s.Output(), 3)
}

func TestEngineMaxNumSeqsAndFIFO(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.MaxNumSeqs = 2
	eng, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	var now time.Duration
	var seqs []*vllmsim.Seq
	for i := range 4 {
		s, err := eng.Add(&vllmsim.Request{ID: fmt.Sprint(i), Prompt: seqTokens(20, uint32(100*i)), MaxTokens: 5, IgnoreEOS: true}, now)
		require.NoError(t, err)
		seqs = append(seqs, s)
	}
	d, ok := eng.Schedule(now)
	require.True(t, ok)
	st := eng.Stats()
	assert.Equal(t, 2, st.Running)
	assert.Equal(t, 2, st.Waiting)
	now += d
	eng.Complete(now)
	run(t, eng, &now, seqs...)
	// FIFO: the first two were admitted first and finished first.
	assert.Less(t, seqs[0].Admitted, seqs[2].Admitted)
	assert.Less(t, seqs[1].LastToken, seqs[3].LastToken)
	assert.Equal(t, seqs[0].Admitted, seqs[1].Admitted)
}

func TestEngineLRUEvictionOrderAndEvents(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.NumBlocks = 8
	cfg.MaxModelLen = 128
	eng, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	var now time.Duration
	add := func(id string, p []uint32) *vllmsim.Seq {
		s, err := eng.Add(&vllmsim.Request{ID: id, Prompt: p, MaxTokens: 1, IgnoreEOS: true}, now)
		require.NoError(t, err)
		return s
	}
	var stored, removed []uint64
	step := func() {
		d, ok := eng.Schedule(now)
		require.True(t, ok)
		now += d
		for _, ev := range eng.Complete(now).Events {
			switch ev.Kind {
			case vllmsim.BlockStored:
				stored = append(stored, ev.Keys...)
			case vllmsim.BlockRemoved:
				removed = append(removed, ev.Keys...)
			}
		}
	}
	a := seqTokens(64, 1000) // 4 blocks (the sampled token is never computed)
	b := seqTokens(80, 2000) // 5 blocks
	sa := add("a", a)
	step()
	require.Equal(t, vllmsim.FinishLength, sa.Finish())
	keysA := eng.BlockKeys(nil, a, "", "")
	keysB := eng.BlockKeys(nil, b, "", "")
	assert.Equal(t, keysA, stored)
	assert.Equal(t, 4, eng.CachedPrefix(keysA)) // unreferenced but cached
	assert.Equal(t, 8, eng.Stats().FreeBlocks)

	// b takes the 4 never-used blocks, then the least recently freed
	// cached block: a's LAST block, since vLLM frees a request's blocks
	// tail first.
	stored = nil
	sb := add("b", b)
	step()
	require.Equal(t, vllmsim.FinishLength, sb.Finish())
	assert.Equal(t, []uint64{keysA[3]}, removed)
	assert.Equal(t, 3, eng.CachedPrefix(keysA))
	assert.Equal(t, keysB, stored)

	// a again: its first 3 blocks hit (cached_tokens 48); the 4th is
	// recomputed into the LRU block, b's last, and stored again.
	stored, removed = nil, nil
	sa2 := add("a2", a)
	step()
	assert.Equal(t, 48, sa2.CachedTokens())
	assert.Equal(t, []uint64{keysB[4]}, removed)
	assert.Equal(t, []uint64{keysA[3]}, stored)
	assert.Equal(t, 4, eng.CachedPrefix(keysA))
	assert.Equal(t, 4, eng.CachedPrefix(keysB))
	st := eng.Stats()
	assert.Equal(t, int64(64+80+64), st.PrefixQueries)
	assert.Equal(t, int64(48), st.PrefixHits)
}

func TestEnginePreemptsWhenKVRunsOut(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.NumBlocks = 10
	cfg.MaxModelLen = 160
	eng, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	var now time.Duration
	// Two requests that each grow to 5+ blocks: together they exceed 10.
	s1, err := eng.Add(&vllmsim.Request{ID: "1", Prompt: seqTokens(40, 1), MaxTokens: 60, IgnoreEOS: true}, now)
	require.NoError(t, err)
	s2, err := eng.Add(&vllmsim.Request{ID: "2", Prompt: seqTokens(40, 500), MaxTokens: 60, IgnoreEOS: true}, now)
	require.NoError(t, err)
	run(t, eng, &now, s1, s2)
	assert.Len(t, s1.Output(), 60)
	assert.Len(t, s2.Output(), 60)
	assert.Positive(t, eng.Stats().Preemptions)
	assert.Positive(t, s2.Preemptions(), "the later request is the victim")
	assert.Zero(t, s1.Preemptions())
	assert.Equal(t, 10, eng.Stats().FreeBlocks)
}

func TestEngineAbortFreesBlocks(t *testing.T) {
	eng, err := vllmsim.NewEngine(vllmsim.Fast())
	require.NoError(t, err)
	var now time.Duration
	s, err := eng.Add(&vllmsim.Request{ID: "x", Prompt: seqTokens(100, 1), MaxTokens: 100, IgnoreEOS: true}, now)
	require.NoError(t, err)
	d, ok := eng.Schedule(now)
	require.True(t, ok)
	eng.Abort(s) // mid-step
	now += d
	out := eng.Complete(now)
	assert.Empty(t, out.Tokens)
	st := eng.Stats()
	assert.Equal(t, st.NumBlocks, st.FreeBlocks)
	assert.Equal(t, 0, st.Running)
	assert.Equal(t, int64(1), st.Finished[vllmsim.FinishAbort])
	_, ok = eng.Schedule(now)
	assert.False(t, ok)
}

func TestEngineAddErrors(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.NumBlocks = 4
	eng, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	tests := []struct {
		name string
		req  vllmsim.Request
		want error
	}{
		{"empty", vllmsim.Request{MaxTokens: 1}, vllmsim.ErrEmptyPrompt},
		{"zero max tokens", vllmsim.Request{Prompt: []uint32{1}}, vllmsim.ErrBadMaxTokens},
		{"negative max tokens", vllmsim.Request{Prompt: []uint32{1}, MaxTokens: -3}, vllmsim.ErrBadMaxTokens},
		{"too long", vllmsim.Request{Prompt: make([]uint32, 8192), MaxTokens: 1}, vllmsim.ErrPromptTooLong},
		{"max tokens that overflow prompt + output", vllmsim.Request{Prompt: []uint32{1, 2, 3}, MaxTokens: math.MaxInt, IgnoreEOS: true}, vllmsim.ErrPromptTooLong},
		{"larger than the cache", vllmsim.Request{Prompt: make([]uint32, 100), MaxTokens: 1}, vllmsim.ErrTooLargeForCache},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eng.Add(&tt.req, 0)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	_, err = vllmsim.NewEngine(vllmsim.Config{BlockSize: 16})
	assert.ErrorIs(t, err, vllmsim.ErrBadConfig)
}

func TestEngineDeterministicOutputs(t *testing.T) {
	gen := func(seed uint64) []uint32 {
		eng, err := vllmsim.NewEngine(vllmsim.Fast(), vllmsim.WithSeed(seed))
		require.NoError(t, err)
		var now time.Duration
		s, err := eng.Add(&vllmsim.Request{ID: "d", Prompt: seqTokens(30, 7), MaxTokens: 20}, now)
		require.NoError(t, err)
		run(t, eng, &now, s)
		return append([]uint32(nil), s.Output()...)
	}
	assert.Equal(t, gen(1), gen(1))
	assert.NotEqual(t, gen(1), gen(2))
	for _, tok := range gen(3) {
		assert.True(t, tok >= 32 && tok < 127, "printable by default")
	}
}

func TestEngineRemotePrefillAndRelease(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.TransferPerBlock = time.Millisecond
	cfg.KVLease = time.Second
	p, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	d, err := vllmsim.NewEngine(cfg)
	require.NoError(t, err)
	var now time.Duration
	prompt := seqTokens(320, 9) // 20 blocks
	ps, err := p.Add(&vllmsim.Request{ID: "p1", Prompt: prompt, MaxTokens: 1, RemoteDecode: true}, now)
	require.NoError(t, err)
	run(t, p, &now, ps)
	assert.Equal(t, vllmsim.FinishLength, ps.Finish())
	assert.Len(t, ps.BlockIDs(), 20) // the prompt's blocks
	assert.Equal(t, 1, p.Stats().Held)
	// The lease expires if nobody pulls.
	wake, ok := p.NextWake()
	require.True(t, ok)
	assert.Equal(t, now+time.Second, wake)

	start := now
	ds, err := d.Add(&vllmsim.Request{ID: "d1", Prompt: prompt, MaxTokens: 4, IgnoreEOS: true, RemotePrefill: true}, now)
	require.NoError(t, err)
	_, ok = d.Schedule(now) // admits and starts the transfer; nothing to compute yet
	assert.False(t, ok)
	wake, ok = d.NextWake()
	require.True(t, ok)
	assert.Equal(t, start+20*time.Millisecond, wake) // 20 blocks × 1 ms
	now = wake
	run(t, d, &now, ds)
	assert.Equal(t, 320, ds.RemoteTokens())
	// TTFT = transfer + one step computing the last prompt token.
	assert.Equal(t, 20*time.Millisecond+cfg.StepOverhead+time.Duration(float64(time.Second)/cfg.PrefillTokensPerSec), ds.FirstToken-start)
	assert.True(t, p.Release("p1"))
	assert.False(t, p.Release("p1"))
	assert.Equal(t, 0, p.Stats().Held)
}

func TestEngineReportsReusedBlocksInFullMode(t *testing.T) {
	eng, err := vllmsim.NewEngine(vllmsim.Fast())
	require.NoError(t, err)
	var now time.Duration
	prompt := seqTokens(50, 3) // 3 full blocks
	collect := func(full bool) (stored [][]uint64, parents []bool) {
		s, err := eng.Add(&vllmsim.Request{ID: "r", Prompt: prompt, MaxTokens: 1, ReportCachedBlocks: full}, now)
		require.NoError(t, err)
		for s.Finish() == vllmsim.NotFinished {
			d, ok := eng.Schedule(now)
			require.True(t, ok)
			now += d
			for _, ev := range eng.Complete(now).Events {
				if ev.Kind == vllmsim.BlockStored {
					stored = append(stored, append([]uint64(nil), ev.Keys...))
					parents = append(parents, ev.HasParent)
				}
			}
		}
		return stored, parents
	}
	keys := eng.BlockKeys(nil, prompt, "", "")
	stored, _ := collect(false)
	assert.Equal(t, [][]uint64{keys}, stored)
	stored, _ = collect(false)
	assert.Empty(t, stored, "reuse is not reported by default")
	stored, parents := collect(true)
	assert.Equal(t, [][]uint64{keys}, stored)
	assert.Equal(t, []bool{false}, parents)
}
