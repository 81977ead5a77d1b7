package vllmsim_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

func TestDataParallelSizeValidation(t *testing.T) {
	tests := []struct {
		name    string
		give    int
		want    int // engines; 0: ErrBadConfig
		wantErr bool
	}{
		{name: "zero means one", give: 0, want: 1},
		{name: "one", give: 1, want: 1},
		{name: "three", give: 3, want: 3},
		{name: "negative", give: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := vllmsim.Fast()
			cfg.DataParallelSize = tt.give
			srv, err := vllmsim.NewServer(cfg)
			if tt.wantErr {
				require.ErrorIs(t, err, vllmsim.ErrBadConfig)
				_, err = vllmsim.NewEngine(cfg)
				require.ErrorIs(t, err, vllmsim.ErrBadConfig)
				return
			}
			require.NoError(t, err)
			for r := range tt.want {
				assert.Equal(t, cfg.NumBlocks, srv.RankStats(r).NumBlocks, "rank %d", r)
			}
			assert.Zero(t, srv.RankStats(tt.want).NumBlocks, "no rank %d", tt.want)
			assert.Nil(t, srv.KVRankEndpoints())
		})
	}
}

// frozenDP is Fast with 2 engine cores whose steps last an hour: a
// request's first step never ends, so the engines' queues stay as the
// requests left them (the first one running, later ones waiting).
func frozenDP() vllmsim.Config {
	cfg := vllmsim.Fast()
	cfg.DataParallelSize = 2
	cfg.StepOverhead = time.Hour
	return cfg
}

// queueLen is running + waiting over every rank of r.
func queueLen(r *vllmsim.Replica, ranks int) int {
	n := 0
	for i := range ranks {
		st := r.RankStats(i)
		n += st.Running + st.Waiting
	}
	return n
}

// hold sends a completion of prompt to r in the background, with the
// X-data-parallel-rank header unless rank is "", and returns once one
// more request is queued on one of r's 2 engines. It is cancelled (and
// aborted by the server) at cleanup.
func hold(t *testing.T, r *vllmsim.Replica, rank, prompt string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	before := queueLen(r, 2)
	go func() {
		defer close(done)
		body := `{"prompt":"` + prompt + `","max_tokens":4}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v1/completions", strings.NewReader(body))
		if rank != "" {
			req.Header.Set("X-data-parallel-rank", rank)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return queueLen(r, 2) > before }, 5*time.Second, time.Millisecond)
}

type queues struct{ running, waiting [2]int }

// settled waits until r's 2 engines' queues are want.
func settled(t *testing.T, r *vllmsim.Replica, want queues) {
	t.Helper()
	var got queues
	if !assert.Eventually(t, func() bool { got = rankQueues(r); return got == want }, 5*time.Second, time.Millisecond) {
		assert.Equal(t, want, got)
	}
}

func rankQueues(r *vllmsim.Replica) queues {
	var q queues
	for i := range 2 {
		st := r.RankStats(i)
		q.running[i], q.waiting[i] = st.Running, st.Waiting
	}
	return q
}

// TestDataParallelLoadBalancing: unpinned requests go where vLLM's DP
// client sends them (lowest 4 × waiting + running, ties to the lower
// rank, its own sends counted until the next refresh): 4 requests on 2
// frozen engines end as one running and one waiting on each, whatever the
// refresh timing.
func TestDataParallelLoadBalancing(t *testing.T) {
	f := startFleet(t, vllmsim.ReplicaSpec{Config: frozenDP()})
	r := f.Replicas[0]
	want := []queues{
		{running: [2]int{1, 0}},
		{running: [2]int{1, 1}},
		{running: [2]int{1, 1}, waiting: [2]int{1, 0}},
		{running: [2]int{1, 1}, waiting: [2]int{1, 1}},
	}
	for i, w := range want {
		hold(t, r, "", fmt.Sprintf("request %d", i))
		// A request is waiting until its engine's loop schedules it.
		settled(t, r, w)
	}
}

func TestDataParallelRankHeader(t *testing.T) {
	tests := []struct {
		name     string
		give     string // header value
		wantCode int
		wantRank int    // for 200
		wantErr  string // for 400
	}{
		{name: "rank 1", give: "1", wantCode: http.StatusOK, wantRank: 1},
		{name: "rank 0", give: "0", wantCode: http.StatusOK, wantRank: 0},
		{name: "rank 1 with spaces", give: " 1 ", wantCode: http.StatusOK, wantRank: 1},
		{name: "out of range", give: "2", wantCode: http.StatusBadRequest, wantErr: "data_parallel_rank 2 is out of range [0, 2)."},
		{name: "negative", give: "-1", wantCode: http.StatusBadRequest, wantErr: "data_parallel_rank -1 is out of range [0, 2)."},
	}
	cfg := vllmsim.Fast()
	cfg.DataParallelSize = 2
	f := startFleet(t, vllmsim.ReplicaSpec{Config: cfg})
	r := f.Replicas[0]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before [2]int64
			for i := range 2 {
				before[i] = r.RankStats(i).PromptTokens
			}
			req, err := http.NewRequest(http.MethodPost, r.URL+"/v1/completions", strings.NewReader(`{"prompt":"pinned","max_tokens":2}`))
			require.NoError(t, err)
			req.Header.Set("X-data-parallel-rank", tt.give)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tt.wantCode, resp.StatusCode, string(body))
			if tt.wantCode != http.StatusOK {
				assert.Contains(t, string(body), `"message":"`+tt.wantErr+`"`)
				assert.Contains(t, string(body), `"type":"BadRequestError"`)
				return
			}
			for i := range 2 {
				got := r.RankStats(i).PromptTokens - before[i]
				if i == tt.wantRank {
					assert.Equal(t, int64(len("pinned")), got, "rank %d", i)
				} else {
					assert.Zero(t, got, "rank %d", i)
				}
			}
		})
	}
}

// TestDataParallelMetrics: every per-engine family has one sample per
// engine (engine="0" and "1", cache_config_info included), and
// pool.ParseMetrics, reading the name[]-filtered page, sums them.
func TestDataParallelMetrics(t *testing.T) {
	cfg := frozenDP()
	f := startFleet(t, vllmsim.ReplicaSpec{Config: cfg})
	r := f.Replicas[0]
	hold(t, r, "0", "short")
	settled(t, r, queues{running: [2]int{1, 0}})
	hold(t, r, "1", strings.Repeat("a long prompt on rank one. ", 12)) // 324 tokens
	settled(t, r, queues{running: [2]int{1, 1}})
	hold(t, r, "1", "waits") // rank 1 is in its hour-long step
	settled(t, r, queues{running: [2]int{1, 1}, waiting: [2]int{0, 1}})
	st0, st1 := r.RankStats(0), r.RankStats(1)
	require.Greater(t, st1.KVUsage, st0.KVUsage)

	q := url.Values{"name[]": pool.SeriesNames()}
	resp, err := http.Get(r.URL + "/metrics?" + q.Encode())
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m, err := pool.ParseMetrics(page)
	require.NoError(t, err, string(page))
	assert.Equal(t, 2, m.Engines)
	assert.Equal(t, 2, m.Running)
	assert.Equal(t, 1, m.Waiting)
	assert.InDelta(t, (st0.KVUsage+st1.KVUsage)/2, m.KVCacheUsage, 1e-12)
	assert.InDelta(t, st1.KVUsage, m.KVCacheUsageMax, 1e-12)
	assert.Equal(t, int64(2*cfg.NumBlocks), int64(m.NumGPUBlocks))
	assert.Equal(t, cfg.BlockSize, m.BlockSize)

	resp, err = http.Get(r.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	require.Contains(t, fams, "vllm:cache_config_info")
	for name, fam := range fams {
		perEngine := map[string]int{}
		for _, mt := range fam.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "engine" {
					perEngine[l.GetValue()]++
				}
			}
		}
		if len(perEngine) == 0 {
			continue // vllm:lora_requests_info has no engine label
		}
		assert.Len(t, perEngine, 2, name)
		assert.Equal(t, perEngine["0"], perEngine["1"], name)
	}
	assert.Contains(t, string(page), `vllm:num_requests_running{engine="1",model_name="sim-model"} 1.0`)
	assert.Contains(t, string(page), `vllm:num_requests_waiting{engine="1",model_name="sim-model"} 1.0`)

	// prometheus_client's order: a family's children in creation order
	// (engine by engine; request_success reason by reason, then engine),
	// its _created gauge after all of them.
	resp, err = http.Get(r.URL + "/metrics")
	require.NoError(t, err)
	full, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	inOrder := []string{
		`vllm:prompt_tokens_total{engine="0",model_name="sim-model"} `,
		`vllm:prompt_tokens_total{engine="1",model_name="sim-model"} `,
		"# HELP vllm:prompt_tokens_created ",
		`vllm:prompt_tokens_created{engine="0",model_name="sim-model"} `,
		`vllm:prompt_tokens_created{engine="1",model_name="sim-model"} `,
		`vllm:request_success_total{engine="0",finished_reason="stop",model_name="sim-model"} `,
		`vllm:request_success_total{engine="1",finished_reason="stop",model_name="sim-model"} `,
		`vllm:request_success_total{engine="0",finished_reason="length",model_name="sim-model"} `,
		`vllm:time_to_first_token_seconds_sum{engine="0",model_name="sim-model"} `,
		`vllm:time_to_first_token_seconds_bucket{engine="1",le="0.001",model_name="sim-model"} `,
		`vllm:time_to_first_token_seconds_created{engine="0",model_name="sim-model"} `,
		`vllm:cache_config_info{block_size="16",`,
		`,engine="0",`,
		`vllm:cache_config_info{block_size="16",`,
		`,engine="1",`,
	}
	rest := string(full)
	for _, want := range inOrder {
		i := strings.Index(rest, want)
		require.GreaterOrEqual(t, i, 0, "%q missing or out of order", want)
		rest = rest[i+len(want):]
	}
}

func portOf(t *testing.T, endpoint string) int {
	t.Helper()
	i := strings.LastIndexByte(endpoint, ':')
	require.Positive(t, i, endpoint)
	p, err := strconv.Atoi(endpoint[i+1:])
	require.NoError(t, err, endpoint)
	return p
}

// replayAll asks a replay socket for everything from seq 0 and returns
// the batches in order with their sequence numbers.
func replayAll(t *testing.T, endpoint string) ([]uint64, []kvevents.Batch) {
	t.Helper()
	d := zmq4.NewDealer(context.Background())
	defer d.Close()
	require.NoError(t, d.Dial(endpoint))
	require.NoError(t, d.Send(zmq4.NewMsgFrom([]byte{}, binary.BigEndian.AppendUint64(nil, 0))))
	var seqs []uint64
	var batches []kvevents.Batch
	for {
		m, err := d.Recv()
		require.NoError(t, err)
		require.Len(t, m.Frames, 4)
		seq := binary.BigEndian.Uint64(m.Frames[2])
		if seq == kvevents.EndSeq {
			return seqs, batches
		}
		var b kvevents.Batch
		require.NoError(t, kvevents.Decode(bytes.Clone(m.Frames[3]), &b))
		seqs = append(seqs, seq)
		batches = append(batches, b)
	}
}

// TestDataParallelKVEvents: rank 1 publishes on rank 0's ports + 1, with
// its own sequence numbers from 0 and 1 as every batch's rank; a
// kvevents.Subscriber following a pool of (endpoint, rank) entries puts
// the blocks in a kvcache index under rank 1's entry only.
func TestDataParallelKVEvents(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.DataParallelSize = 2
	f := startFleet(t, vllmsim.ReplicaSpec{Config: cfg, KVEvents: true})
	r := f.Replicas[0]
	require.Len(t, r.KVRanks, 2)
	assert.Equal(t, vllmsim.KVRank{Endpoint: r.KVEndpoint, ReplayEndpoint: r.KVReplayEndpoint}, r.KVRanks[0])
	assert.Equal(t, portOf(t, r.KVEndpoint)+1, portOf(t, r.KVRanks[1].Endpoint))
	assert.Equal(t, portOf(t, r.KVReplayEndpoint)+1, portOf(t, r.KVRanks[1].ReplayEndpoint))

	// Live: a subscriber on port + 1 gets rank 1's batches.
	sub := zmq4.NewSub(context.Background(), zmq4.WithAutomaticReconnect(true))
	defer sub.Close()
	require.NoError(t, sub.Dial(r.KVRanks[1].Endpoint))
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, r.KVTopic))
	msgs := make(chan zmq4.Msg, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := sub.Recv()
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	pinned := func(prompt string) {
		code, m := postHeader(t, r.URL+"/v1/completions", `{"prompt":"`+prompt+`","max_tokens":1}`,
			http.Header{"X-Data-Parallel-Rank": {"1"}})
		require.Equal(t, http.StatusOK, code, m)
	}
	var live zmq4.Msg
	prompts := []string{}
	for i := 0; live.Frames == nil; i++ {
		require.Less(t, i, 200, "no KV event received on rank 1's port")
		p := fmt.Sprintf("%03d", i) + strings.Repeat("0123456789abcdef", 3)[3:]
		prompts = append(prompts, p)
		pinned(p)
		select {
		case live = <-msgs:
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.Len(t, live.Frames, 3)
	var b kvevents.Batch
	require.NoError(t, kvevents.Decode(live.Frames[2], &b))
	assert.Equal(t, kvevents.Some[int64](1), b.DataParallelRank)

	// Replay: rank 1's numbering starts at 0; rank 0 published nothing.
	seqs, batches := replayAll(t, r.KVRanks[1].ReplayEndpoint)
	require.NotEmpty(t, seqs)
	for i, s := range seqs {
		assert.Equal(t, uint64(i), s)
		assert.Equal(t, kvevents.Some[int64](1), batches[i].DataParallelRank)
	}
	seqs, _ = replayAll(t, r.KVReplayEndpoint)
	assert.Empty(t, seqs)

	// A kvcache index fed through kvevents' subscriber following a pool
	// with one endpoint per (replica, rank), whose sources PoolSource puts
	// at rank 0's ports + the rank: the blocks land under rank 1's.
	hasher, err := prefix.NewHasher(cfg.Model, prefix.WithBlockSize(cfg.BlockSize))
	require.NoError(t, err)
	idx, err := kvcache.New(hasher)
	require.NoError(t, err)
	pl := pool.New()
	s, err := kvevents.NewSubscriber(kvevents.NewKVCacheIndex(idx),
		kvevents.WithPool(pl, kvevents.PoolSource(portOf(t, r.KVEndpoint), portOf(t, r.KVReplayEndpoint))))
	require.NoError(t, err)
	ids := []string{"pod@dp0", "pod@dp1"}
	for rank, id := range ids {
		require.NoError(t, pl.Store(pool.Endpoint{ID: id, Address: r.Addr, DPRank: rank}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			assert.ErrorIs(t, err, context.Canceled)
		}
	}()
	keys := hasher.AppendKeys(nil, promptTokens(prompts[0]), prefix.Extra{})
	require.Len(t, keys, 3)
	matches := make([]kvcache.Match, len(ids))
	require.Eventually(t, func() bool {
		_, err := idx.Lookup(keys, ids, matches)
		return err == nil && matches[1].Blocks[kvcache.TierGPU] == 3
	}, 10*time.Second, 5*time.Millisecond, "rank 1's blocks in the index")
	assert.Zero(t, matches[0].Total(), "rank 0 holds none of them")
}

// TestDataParallelPrefillDecode: each engine core of a P/D prefill server
// is its own NIXL engine (engine id + "_dp<rank>", side-channel port +
// rank; unchanged without data parallelism), and a decode server given a
// core's kv_transfer_params frees the blocks on exactly that core, even
// when every core holds the same request id.
func TestDataParallelPrefillDecode(t *testing.T) {
	tests := []struct {
		name   string
		dp     int
		rank   int    // the prefill core the decode leg pulls from
		wantID string // suffix of the server's engine id
	}{
		{name: "one core keeps the server's id", dp: 1, rank: 0, wantID: ""},
		{name: "rank 0 of 2", dp: 2, rank: 0, wantID: "_dp0"},
		{name: "rank 1 of 2", dp: 2, rank: 1, wantID: "_dp1"},
	}
	prompt := jsonStr(strings.Repeat("shared context ", 20)) // 300 tokens, 19 blocks
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcfg := vllmsim.Fast()
			pcfg.DataParallelSize = tt.dp
			pcfg.KVLease = time.Hour // only the decode side's notification frees P's blocks
			f := startFleet(t, vllmsim.ReplicaSpec{Config: pcfg, Role: "prefill"}, vllmsim.ReplicaSpec{Role: "decode"})
			p, d := f.Replicas[0], f.Replicas[1]
			var wantIDs []string
			for r := range tt.dp {
				id := p.EngineID()
				if tt.dp > 1 {
					id += "_dp" + strconv.Itoa(r)
				}
				wantIDs = append(wantIDs, id)
			}
			require.Equal(t, wantIDs, p.EngineIDs())

			// The prefill leg on every core, under one request id.
			params := make([]map[string]any, tt.dp)
			for r := range tt.dp {
				code, pr := postHeader(t, p.URL+"/v1/completions",
					`{"prompt":`+prompt+`,"max_tokens":1,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false}}`,
					http.Header{"X-Request-Id": {"pd"}, "X-Data-Parallel-Rank": {strconv.Itoa(r)}})
				require.Equal(t, http.StatusOK, code, pr)
				params[r] = pr["kv_transfer_params"].(map[string]any)
				assert.Equal(t, wantIDs[r], params[r]["remote_engine_id"], "rank %d", r)
				assert.Equal(t, p.Port()+r, num(params[r]["remote_port"]), "rank %d", r)
				assert.Equal(t, "cmpl-pd-0", params[r]["remote_request_id"], "rank %d", r)
				assert.Equal(t, 1, p.RankStats(r).Held, "rank %d", r)
			}
			assert.Equal(t, p.EngineID()+tt.wantID, params[tt.rank]["remote_engine_id"])

			kvJSON, err := json.Marshal(params[tt.rank])
			require.NoError(t, err)
			code, dr := post(t, d.URL+"/v1/completions", `{"prompt":`+prompt+`,"max_tokens":4,"ignore_eos":true,"kv_transfer_params":`+string(kvJSON)+`}`)
			require.Equal(t, http.StatusOK, code, dr)
			assert.Equal(t, int64(300), d.Stats().ExternalHits)
			for r := range tt.dp {
				want := 1
				if r == tt.rank {
					want = 0
				}
				assert.Equal(t, want, p.RankStats(r).Held, "rank %d", r)
			}
		})
	}
}

// TestReleaseRemoteAnyRank: ReleaseRemote, naming no engine, frees the
// first rank holding the request id.
func TestReleaseRemoteAnyRank(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.DataParallelSize = 2
	cfg.KVLease = time.Hour
	p := startFleet(t, vllmsim.ReplicaSpec{Config: cfg}).Replicas[0]
	code, m := postHeader(t, p.URL+"/v1/completions",
		`{"prompt":"held on rank 1","max_tokens":1,"kv_transfer_params":{"do_remote_decode":true}}`,
		http.Header{"X-Request-Id": {"any"}, "X-Data-Parallel-Rank": {"1"}})
	require.Equal(t, http.StatusOK, code, m)
	require.Equal(t, 1, p.RankStats(1).Held)
	assert.True(t, p.ReleaseRemote("cmpl-any-0"))
	assert.Zero(t, p.RankStats(1).Held)
	assert.False(t, p.ReleaseRemote("cmpl-any-0"))
}

// TestDataParallelRejectedRequestNotCounted: a request the engine refuses
// (here too large for the KV cache) never reaches an engine core, so the
// DP client must not count it as waiting there: the next request still
// goes to rank 0, the least loaded (before, rank 0 looked one request
// busier until the next 100 ms refresh and rank 1 got it).
func TestDataParallelRejectedRequestNotCounted(t *testing.T) {
	cfg := frozenDP()
	cfg.NumBlocks = 4 // 64 tokens of KV cache, MaxModelLen 8192
	r := startFleet(t, vllmsim.ReplicaSpec{Config: cfg}).Replicas[0]
	code, body := post(t, r.URL+"/v1/completions", `{"prompt":"`+strings.Repeat("x", 100)+`","max_tokens":1}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, fmt.Sprint(body), "more KV blocks than the cache has")
	hold(t, r, "", "fits")
	settled(t, r, queues{running: [2]int{1, 0}})
}
