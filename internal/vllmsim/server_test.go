package vllmsim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
)

func startFleet(t *testing.T, specs ...vllmsim.ReplicaSpec) *vllmsim.Fleet {
	t.Helper()
	if len(specs) == 0 {
		specs = []vllmsim.ReplicaSpec{{}}
	}
	f, err := vllmsim.StartFleet(context.Background(), specs...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, f.Close()) })
	return f
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	return postHeader(t, url, body, nil)
}

// postHeader is post with request headers (X-Request-Id, X-data-parallel-rank).
func postHeader(t *testing.T, url, body string, header http.Header) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var m map[string]any
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &m), string(b))
	}
	return resp.StatusCode, m
}

func num(v any) int { f, _ := v.(float64); return int(f) }

func TestCompletionNonStreamingAndCacheHit(t *testing.T) {
	f := startFleet(t)
	url := f.Replicas[0].URL + "/v1/completions"
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 4) // 180 bytes = tokens
	body := `{"model":"sim-model","prompt":` + jsonStr(prompt) + `,"max_tokens":5,"ignore_eos":true}`
	code, m := post(t, url, body)
	require.Equal(t, http.StatusOK, code, m)
	assert.Equal(t, "text_completion", m["object"])
	assert.True(t, strings.HasPrefix(m["id"].(string), "cmpl-"))
	ch := m["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, "length", ch["finish_reason"])
	assert.Len(t, ch["text"], 5)
	u := m["usage"].(map[string]any)
	assert.Equal(t, 180, num(u["prompt_tokens"]))
	assert.Equal(t, 5, num(u["completion_tokens"]))
	assert.Equal(t, 185, num(u["total_tokens"]))
	assert.Equal(t, 0, num(u["prompt_tokens_details"].(map[string]any)["cached_tokens"]))
	assert.Nil(t, m["kv_transfer_params"])

	code, m2 := post(t, url, body)
	require.Equal(t, http.StatusOK, code)
	u2 := m2["usage"].(map[string]any)
	assert.Equal(t, 176, num(u2["prompt_tokens_details"].(map[string]any)["cached_tokens"])) // 11 full blocks of 16
	// Same prompt, same seed: same output.
	assert.Equal(t, ch["text"], m2["choices"].([]any)[0].(map[string]any)["text"])
}

func jsonStr(s string) string { b, _ := json.Marshal(s); return string(b) }

// readSSE returns the data payloads of an SSE response, "[DONE]" included.
func readSSE(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "data: "), line)
		out = append(out, strings.TrimPrefix(line, "data: "))
	}
	require.NoError(t, sc.Err())
	return out
}

func TestStreamingCompletionsAndChat(t *testing.T) {
	f := startFleet(t)
	tests := []struct {
		name, path, body string
		chunks           int // token chunks
		roleChunk        bool
		usage            bool
	}{
		{"completion with usage", "/v1/completions", `{"prompt":"hello world","max_tokens":7,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`, 7, false, true},
		{"completion without usage", "/v1/completions", `{"prompt":"hello world","max_tokens":3,"ignore_eos":true,"stream":true}`, 3, false, false},
		{"chat with usage", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi there"}],"max_completion_tokens":4,"ignore_eos":true,"stream":true,"stream_options":{}}`, 4, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(f.Replicas[0].URL+tt.path, "application/json", strings.NewReader(tt.body))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("Content-Type"), "text/event-stream")
			data := readSSE(t, resp.Body)
			require.NotEmpty(t, data)
			assert.Equal(t, "[DONE]", data[len(data)-1])
			data = data[:len(data)-1]
			want := tt.chunks
			if tt.roleChunk {
				want++
			}
			if tt.usage {
				want++
			}
			require.Len(t, data, want)
			var chunks []map[string]any
			for _, d := range data {
				var c map[string]any
				require.NoError(t, json.Unmarshal([]byte(d), &c))
				chunks = append(chunks, c)
			}
			if tt.roleChunk {
				assert.Equal(t, "chat.completion.chunk", chunks[0]["object"])
				delta := chunks[0]["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)
				assert.Equal(t, "assistant", delta["role"])
				chunks = chunks[1:]
			}
			if tt.usage {
				last := chunks[len(chunks)-1]
				assert.Empty(t, last["choices"])
				u := last["usage"].(map[string]any)
				assert.Equal(t, tt.chunks, num(u["completion_tokens"]))
				chunks = chunks[:len(chunks)-1]
			}
			for i, c := range chunks {
				ch := c["choices"].([]any)[0].(map[string]any)
				if i == len(chunks)-1 {
					assert.Equal(t, "length", ch["finish_reason"])
				} else {
					assert.Nil(t, ch["finish_reason"])
				}
				assert.NotContains(t, c, "usage")
			}
		})
	}
}

func TestChatNonStreaming(t *testing.T) {
	f := startFleet(t)
	code, m := post(t, f.Replicas[0].URL+"/v1/chat/completions",
		`{"model":"sim-model","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":3,"ignore_eos":true}`)
	require.Equal(t, http.StatusOK, code, m)
	assert.Equal(t, "chat.completion", m["object"])
	msg := m["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	assert.Equal(t, "assistant", msg["role"])
	assert.Len(t, msg["content"], 3)
	// The prompt is the ChatML rendering with the generation prompt.
	rendered := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	assert.Equal(t, len(rendered), num(m["usage"].(map[string]any)["prompt_tokens"]))
}

func TestNaturalStopWithoutIgnoreEOS(t *testing.T) {
	f := startFleet(t)
	var stops int
	for i := range 20 {
		code, m := post(t, f.Replicas[0].URL+"/v1/completions", `{"prompt":"request `+strings.Repeat("x", i)+`","max_tokens":50}`)
		require.Equal(t, http.StatusOK, code)
		ch := m["choices"].([]any)[0].(map[string]any)
		n := num(m["usage"].(map[string]any)["completion_tokens"])
		assert.LessOrEqual(t, n, 50)
		if ch["finish_reason"] == "stop" {
			stops++
			assert.Less(t, n, 50)
		}
	}
	assert.Positive(t, stops)
}

func TestErrors(t *testing.T) {
	f := startFleet(t)
	base := f.Replicas[0].URL
	long := strings.Repeat("a", 8200)
	tests := []struct {
		name, path, body string
		code             int
		typ, contains    string
	}{
		{"bad json", "/v1/completions", `{"prompt": "x",`, 400, "BadRequestError", "JSON"},
		{"truncated json", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"`, 400, "BadRequestError", ""},
		{"not json", "/v1/completions", `hello`, 400, "BadRequestError", ""},
		{"wrong type max_tokens", "/v1/completions", `{"prompt":"x","max_tokens":"ten"}`, 400, "BadRequestError", "max_tokens"},
		{"wrong type prompt", "/v1/completions", `{"prompt":{"a":1}}`, 400, "BadRequestError", "prompt"},
		{"wrong type stream", "/v1/completions", `{"prompt":"x","stream":"yes"}`, 400, "BadRequestError", "stream"},
		{"negative max_tokens", "/v1/completions", `{"prompt":"x","max_tokens":-1}`, 400, "BadRequestError", "max_tokens must be at least 1, got -1"},
		{"zero max_completion_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}`, 400, "BadRequestError", "max_completion_tokens"},
		{"missing prompt", "/v1/completions", `{"max_tokens":3}`, 400, "BadRequestError", "prompt"},
		{"empty prompt", "/v1/completions", `{"prompt":""}`, 400, "BadRequestError", "empty"},
		{"empty messages", "/v1/chat/completions", `{"messages":[]}`, 400, "BadRequestError", "messages"},
		{"unknown model", "/v1/completions", `{"model":"gpt-5","prompt":"x"}`, 404, "NotFoundError", "gpt-5"},
		{"prompt too long", "/v1/completions", `{"prompt":"` + long + `"}`, 400, "BadRequestError", "maximum context length is 8192"},
		{"too long with output", "/v1/completions", `{"prompt":"abc","max_tokens":8190}`, 400, "BadRequestError", "maximum context length"},
		{"max_tokens that overflows int", "/v1/completions", `{"prompt":"abc","max_tokens":9223372036854775807,"ignore_eos":true}`, 400, "BadRequestError", "you requested 9223372036854775810 tokens"},
		{"stream_options without stream", "/v1/completions", `{"prompt":"x","stream_options":{"include_usage":true}}`, 400, "BadRequestError", "stream"},
		{"n=2", "/v1/completions", `{"prompt":"x","n":2}`, 400, "BadRequestError", "n must be 1"},
		{"token id out of range", "/v1/completions", `{"prompt":[1,-5]}`, 400, "BadRequestError", "out of range"},
		{"batched prompts", "/v1/completions", `{"prompt":["a","b"]}`, 400, "BadRequestError", "batched"},
		{"kv params not object", "/v1/completions", `{"prompt":"x","kv_transfer_params":[1]}`, 400, "BadRequestError", "kv_transfer_params"},
		{"generation and continue", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"add_generation_prompt":true,"continue_final_message":true}`, 400, "BadRequestError", "continue_final_message"},
		{"tokenize nothing", "/tokenize", `{}`, 400, "BadRequestError", "prompt or messages"},
		{"detokenize negative", "/detokenize", `{"tokens":[-1]}`, 400, "BadRequestError", "out of range"},
		{"detokenize bad id", "/detokenize", `{"tokens":[70000]}`, 400, "BadRequestError", "vocabulary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, m := post(t, base+tt.path, tt.body)
			assert.Equal(t, tt.code, code)
			require.Contains(t, m, "error")
			e := m["error"].(map[string]any)
			assert.Equal(t, tt.typ, e["type"])
			assert.Equal(t, tt.code, num(e["code"]))
			assert.Contains(t, e["message"], tt.contains)
		})
	}
	// Unknown fields are ignored, as vLLM does.
	code, _ := post(t, base+"/v1/completions", `{"prompt":"x","max_tokens":1,"frobnicate":{"deep":[1,2]},"temperature":0.7,"top_k":5}`)
	assert.Equal(t, http.StatusOK, code)
}

func TestModelsHealthTokenize(t *testing.T) {
	f := startFleet(t)
	base := f.Replicas[0].URL
	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(base + "/v1/models")
	require.NoError(t, err)
	var models map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&models))
	resp.Body.Close()
	card := models["data"].([]any)[0].(map[string]any)
	assert.Equal(t, "sim-model", card["id"])
	assert.Equal(t, "vllm", card["owned_by"])
	assert.Equal(t, 8192, num(card["max_model_len"]))

	code, tok := post(t, base+"/tokenize", `{"prompt":"héllo","return_token_strs":true}`)
	require.Equal(t, 200, code)
	assert.Equal(t, 6, num(tok["count"]))
	assert.Equal(t, 8192, num(tok["max_model_len"]))
	ids, _ := json.Marshal(tok["tokens"])
	code, detok := post(t, base+"/detokenize", `{"tokens":`+string(ids)+`}`)
	require.Equal(t, 200, code)
	assert.Equal(t, "héllo", detok["prompt"])

	// The chat form gives exactly the prompt tokens the engine hashes.
	chat := `{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":true}`
	code, tok = post(t, base+"/tokenize", chat)
	require.Equal(t, 200, code)
	_, gen := post(t, base+"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}`)
	assert.Equal(t, num(tok["count"]), num(gen["usage"].(map[string]any)["prompt_tokens"]))
	code, tok2 := post(t, base+"/tokenize", `{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false}`)
	require.Equal(t, 200, code)
	assert.Equal(t, num(tok["count"])-len("<|im_start|>assistant\n"), num(tok2["count"]))
}

func TestMetricsMatchVLLMNamesTypesLabels(t *testing.T) {
	f := startFleet(t)
	base := f.Replicas[0].URL
	for range 3 {
		code, _ := post(t, base+"/v1/completions", `{"prompt":"`+strings.Repeat("abcd", 20)+`","max_tokens":4,"ignore_eos":true}`)
		require.Equal(t, 200, code)
	}
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	got, err := p.TextToMetricFamilies(bytes.NewReader(page))
	require.NoError(t, err)

	goldenPage, err := os.ReadFile("testdata/metrics-sample.txt")
	require.NoError(t, err)
	p = expfmt.NewTextParser(model.UTF8Validation)
	want, err := p.TextToMetricFamilies(bytes.NewReader(goldenPage))
	require.NoError(t, err)
	// Every HELP and TYPE line of the golden page appears verbatim, in the
	// same order (prometheus_client's rendering, _created gauges included).
	var ours []string
	for _, l := range strings.Split(string(page), "\n") {
		if strings.HasPrefix(l, "# ") {
			ours = append(ours, l)
		}
	}
	i := 0
	for _, l := range strings.Split(string(goldenPage), "\n") {
		if !strings.HasPrefix(l, "# ") || strings.Contains(l, "lora_requests_info") {
			continue
		}
		for i < len(ours) && ours[i] != l {
			i++
		}
		if !assert.Less(t, i, len(ours), "missing or out of order: %s", l) {
			break
		}
	}
	for name, wf := range want {
		if name == "vllm:lora_requests_info" {
			continue // only with --enable-lora
		}
		gf, ok := got[name]
		if !assert.True(t, ok, "missing %s", name) {
			continue
		}
		assert.Equal(t, wf.GetType(), gf.GetType(), name)
		assert.Equal(t, wf.GetHelp(), gf.GetHelp(), name)
		assert.Len(t, gf.GetMetric(), len(wf.GetMetric()), name)
		for i := range min(len(gf.GetMetric()), len(wf.GetMetric())) {
			var wn, gn []string
			for _, l := range wf.GetMetric()[i].GetLabel() {
				wn = append(wn, l.GetName())
			}
			for _, l := range gf.GetMetric()[i].GetLabel() {
				gn = append(gn, l.GetName())
			}
			assert.Equal(t, wn, gn, name)
		}
		if wf.GetType().String() == "HISTOGRAM" && name != "vllm:request_prompt_tokens" {
			var wb, gb []float64
			for _, b := range wf.GetMetric()[0].GetHistogram().GetBucket() {
				wb = append(wb, b.GetUpperBound())
			}
			for _, b := range gf.GetMetric()[0].GetHistogram().GetBucket() {
				gb = append(gb, b.GetUpperBound())
			}
			assert.Equal(t, wb, gb, name)
		}
	}
	val := func(name string) float64 {
		m := got[name].GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	assert.InDelta(t, 240.0, val("vllm:prefix_cache_queries_total"), 0)
	assert.InDelta(t, 2*64.0, val("vllm:prefix_cache_hits_total"), 0) // 79/16 = 4 full blocks hit, twice
	assert.InDelta(t, 12.0, val("vllm:generation_tokens_total"), 0)
	assert.InDelta(t, 3.0, got["vllm:time_to_first_token_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(), 0)
	assert.InDelta(t, 9.0, got["vllm:inter_token_latency_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(), 0)
	for _, m := range got["vllm:request_success_total"].GetMetric() {
		if m.GetLabel()[1].GetValue() == "length" {
			assert.InDelta(t, 3.0, m.GetCounter().GetValue(), 0)
		}
	}
	info := got["vllm:cache_config_info"].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range info.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	assert.Equal(t, "16", labels["block_size"])
	assert.Equal(t, "4096", labels["num_gpu_blocks"])
	assert.Equal(t, "65536", labels["kv_cache_size_tokens"])
	assert.Equal(t, "sha256_cbor", labels["prefix_caching_hash_algo"])
}

func TestClientDisconnectFreesBlocks(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.StepOverhead = 5 * time.Millisecond // slow enough that the request is mid-stream when we leave
	f := startFleet(t, vllmsim.ReplicaSpec{Config: cfg})
	r := f.Replicas[0]
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v1/completions",
		strings.NewReader(`{"prompt":"`+strings.Repeat("z", 500)+`","max_tokens":4000,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "data: "))
	st := r.Stats()
	assert.Equal(t, 1, st.Running)
	assert.Positive(t, st.KVUsage)
	cancel()
	resp.Body.Close()
	require.Eventually(t, func() bool {
		st := r.Stats()
		return st.Running == 0 && st.Waiting == 0 && st.KVUsage == 0
	}, 10*time.Second, 5*time.Millisecond)
	st = r.Stats()
	assert.Equal(t, int64(1), st.Finished[vllmsim.FinishAbort])
	assert.Equal(t, st.NumBlocks, st.FreeBlocks)
	// The prompt's blocks stay cached (unreferenced): a retry hits them.
	code, m := post(t, r.URL+"/v1/completions", `{"prompt":"`+strings.Repeat("z", 500)+`","max_tokens":1}`)
	require.Equal(t, 200, code)
	assert.Equal(t, 496, num(m["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)["cached_tokens"]))
}

func TestShutdownAnswers503(t *testing.T) {
	f := startFleet(t)
	r := f.Replicas[0]
	r.Shutdown()
	code, m := post(t, r.URL+"/v1/completions", `{"prompt":"x"}`)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "ServiceUnavailableError", m["error"].(map[string]any)["type"])
	resp, err := http.Get(r.URL + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestPrefillDecodeDisaggregation(t *testing.T) {
	cfg := vllmsim.Fast()
	cfg.KVLease = time.Hour // only the decode side's notification frees P's blocks
	f := startFleet(t, vllmsim.ReplicaSpec{Config: cfg, Role: "prefill"}, vllmsim.ReplicaSpec{Config: cfg, Role: "decode"})
	p, d := f.Replicas[0], f.Replicas[1]
	prompt := jsonStr(strings.Repeat("shared context ", 40)) // 600 tokens
	// Prefill leg, as vLLM's toy proxy sends it.
	code, pr := postHeader(t, p.URL+"/v1/completions",
		`{"prompt":`+prompt+`,"max_tokens":1,"stream":false,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,"remote_host":null,"remote_port":null}}`,
		http.Header{"X-Request-Id": {"pd-1"}})
	require.Equal(t, http.StatusOK, code, pr)
	assert.Equal(t, "length", pr["choices"].([]any)[0].(map[string]any)["finish_reason"])
	kv := pr["kv_transfer_params"].(map[string]any)
	assert.Equal(t, true, kv["do_remote_prefill"])
	assert.Equal(t, false, kv["do_remote_decode"])
	assert.Equal(t, p.EngineID(), kv["remote_engine_id"])
	assert.Equal(t, "cmpl-pd-1-0", kv["remote_request_id"])
	assert.Equal(t, "127.0.0.1", kv["remote_host"])
	assert.Equal(t, p.Port(), num(kv["remote_port"]))
	assert.Len(t, kv["remote_block_ids"], 38) // ceil(600/16)
	assert.Equal(t, 1, p.Stats().Held)

	// Decode leg: the original body plus P's params, verbatim.
	kvJSON, err := json.Marshal(kv)
	require.NoError(t, err)
	code, dr := post(t, d.URL+"/v1/completions", `{"prompt":`+prompt+`,"max_tokens":20,"ignore_eos":true,"kv_transfer_params":`+string(kvJSON)+`}`)
	require.Equal(t, http.StatusOK, code, dr)
	assert.Equal(t, 20, num(dr["usage"].(map[string]any)["completion_tokens"]))
	dst := d.Stats()
	assert.Equal(t, int64(600), dst.ExternalHits)
	assert.Equal(t, int64(600), dst.PromptTokens)
	assert.Equal(t, 0, p.Stats().Held, "the decode side's notification frees P's blocks")

	// Invalid params (no remote_engine_id): vLLM silently recomputes.
	code, dr = post(t, d.URL+"/v1/completions", `{"prompt":"fresh prompt here, long enough","max_tokens":2,"kv_transfer_params":{"do_remote_prefill":true}}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, int64(600), d.Stats().ExternalHits)
}

func TestFleetRolesLabelsAndClose(t *testing.T) {
	f, err := vllmsim.StartFleet(context.Background(),
		vllmsim.ReplicaSpec{Role: "prefill", Labels: map[string]string{"zone": "a"}},
		vllmsim.ReplicaSpec{Role: "decode", Labels: map[string]string{"zone": "b"}},
		vllmsim.ReplicaSpec{Config: vllmsim.Config{Model: "bad"}})
	require.ErrorIs(t, err, vllmsim.ErrBadConfig)
	assert.Nil(t, f)

	f, err = vllmsim.StartFleet(context.Background(),
		vllmsim.ReplicaSpec{Role: "prefill", Labels: map[string]string{"zone": "a"}},
		vllmsim.ReplicaSpec{Role: "decode", Labels: map[string]string{"zone": "b"}})
	require.NoError(t, err)
	require.Len(t, f.Replicas, 2)
	assert.Equal(t, "decode", f.Replicas[1].Role)
	assert.Equal(t, "b", f.Replicas[1].Labels["zone"])
	assert.NotEqual(t, f.Replicas[0].URL, f.Replicas[1].URL)
	assert.NotEqual(t, f.Replicas[0].EngineID(), f.Replicas[1].EngineID())

	// A stream in flight when the fleet closes ends instead of hanging.
	resp, err := http.Post(f.Replicas[0].URL+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"x","max_tokens":8000,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	require.NoError(t, f.Close())
	<-done
	require.NoError(t, f.Close()) // idempotent
	_, err = http.Post(f.Replicas[0].URL+"/v1/completions", "application/json", bytes.NewReader([]byte(`{}`)))
	assert.Error(t, err)
}

func TestFleetKillOneReplica(t *testing.T) {
	f := startFleet(t, vllmsim.ReplicaSpec{}, vllmsim.ReplicaSpec{})
	dead, alive := f.Replicas[0], f.Replicas[1]
	dead.Kill()
	_, err := http.Post(dead.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x"}`))
	assert.Error(t, err, "a killed replica refuses connections")
	code, _ := post(t, alive.URL+"/v1/completions", `{"prompt":"x","max_tokens":2}`)
	assert.Equal(t, http.StatusOK, code)
}
