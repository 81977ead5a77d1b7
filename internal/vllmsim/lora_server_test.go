package vllmsim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/scheduler"
)

// busy starts a long streamed completion for model on r and returns once
// its first token arrived (the request is running); the request is
// cancelled (aborted by the server) at cleanup.
func busy(t *testing.T, r *vllmsim.Replica, model string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	body := `{"model":"` + model + `","prompt":"hold the batch","max_tokens":5000,"ignore_eos":true,"stream":true}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v1/completions", strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "data: "), line)
}

// queued sends a completion for model to r in the background and returns
// once r has a waiting request; it is cancelled at cleanup.
func queued(t *testing.T, r *vllmsim.Replica, model string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	waiting := r.Stats().Waiting
	go func() {
		defer close(done)
		body := `{"model":"` + model + `","prompt":"queued","max_tokens":4}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v1/completions", strings.NewReader(body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return r.Stats().Waiting > waiting }, 5*time.Second, time.Millisecond)
}

// scrapeLoRA fetches r's metrics with the name[] filter pool.Scraper uses
// and parses them.
func scrapeLoRA(t *testing.T, r *vllmsim.Replica) (pool.Metrics, string) {
	t.Helper()
	q := url.Values{"name[]": pool.SeriesNames()}
	resp, err := http.Get(r.URL + "/metrics?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m, err := pool.ParseMetrics(page)
	require.NoError(t, err, string(page))
	return m, string(page)
}

func TestLoRAServer(t *testing.T) {
	f := startFleet(t, vllmsim.ReplicaSpec{Config: loraConfig(1)})
	r := f.Replicas[0]

	t.Run("models", func(t *testing.T) {
		resp, err := http.Get(r.URL + "/v1/models")
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			Data []struct {
				ID, Root    string
				Parent      *string
				MaxModelLen *int `json:"max_model_len"`
			}
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Len(t, body.Data, 3)
		assert.Equal(t, "sim-model", body.Data[0].ID)
		assert.Nil(t, body.Data[0].Parent)
		for i, want := range []struct{ id, root string }{{"a", "/adapters/a"}, {"b", "b"}} {
			c := body.Data[i+1]
			assert.Equal(t, want.id, c.ID)
			assert.Equal(t, want.root, c.Root)
			require.NotNil(t, c.Parent)
			assert.Equal(t, "sim-model", *c.Parent)
			assert.Nil(t, c.MaxModelLen)
		}
	})

	t.Run("requests", func(t *testing.T) {
		tests := []struct {
			path, model string
			wantCode    int
		}{
			{"/v1/completions", "a", 200},
			{"/v1/chat/completions", "b", 200},
			{"/v1/completions", "sim-model", 200},
			{"/v1/completions", "c", 404},
		}
		for _, tt := range tests {
			body := `{"model":"` + tt.model + `","prompt":"hello","max_tokens":2}`
			if strings.Contains(tt.path, "chat") {
				body = `{"model":"` + tt.model + `","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
			}
			code, resp := post(t, r.URL+tt.path, body)
			require.Equal(t, tt.wantCode, code, tt.model)
			if code == 200 {
				assert.Equal(t, tt.model, resp["model"])
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m, _ := scrapeLoRA(t, r)
		require.True(t, m.Has(pool.FieldLoRA))
		assert.Equal(t, 1, m.MaxLoRA)
		assert.Empty(t, m.RunningLoRAs)

		busy(t, r, "a")
		queued(t, r, "b")
		require.Eventually(t, func() bool {
			m, _ = scrapeLoRA(t, r)
			return len(m.WaitingLoRAs) > 0
		}, 5*time.Second, time.Millisecond)
		assert.Equal(t, []string{"a"}, m.RunningLoRAs)
		assert.Equal(t, []string{"b"}, m.WaitingLoRAs)
		assert.Equal(t, 1, m.MaxLoRA)

		_, page := scrapeLoRA(t, r)
		assert.Contains(t, page, "# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n")
		assert.Contains(t, page, `vllm:lora_requests_info{max_lora="1",running_lora_adapters="",waiting_lora_adapters=""} `)
		assert.Contains(t, page, `vllm:lora_requests_info{max_lora="1",running_lora_adapters="a",waiting_lora_adapters="b"} `)
		assert.NotContains(t, page, "vllm:time_to_first_token_seconds", "name[] filters the other series out")
	})
}

func TestLoRAMetricsOffWithoutAdapters(t *testing.T) {
	r := startFleet(t).Replicas[0]
	resp, err := http.Get(r.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.NotContains(t, string(page), "lora")
}

// TestLoRAAffinityAgainstFleet is the end-to-end check: two replicas each
// running a different adapter, scraped by pool.Scraper, and
// scheduler.LoRAAffinity scoring a request for adapter a to the replica
// that runs a.
func TestLoRAAffinityAgainstFleet(t *testing.T) {
	f := startFleet(t, vllmsim.ReplicaSpec{Config: loraConfig(1)}, vllmsim.ReplicaSpec{Config: loraConfig(1)})
	busy(t, f.Replicas[0], "b")
	busy(t, f.Replicas[1], "a")

	p := pool.New()
	for i, r := range f.Replicas {
		require.NoError(t, p.Store(pool.Endpoint{
			ID: "r" + string(rune('0'+i)), Address: r.Addr,
			Models: []string{"sim-model"}, LoRAAdapters: []string{"a", "b"},
		}))
	}
	sc, err := pool.NewScraper(p)
	require.NoError(t, err)
	sc.Scrape(context.Background())

	eps := p.Snapshot().Endpoints()
	cands := make([]scheduler.Candidate, len(eps))
	for i, ep := range eps {
		cands[i] = scheduler.Candidate{Endpoint: ep}
		require.True(t, ep.Metrics().Has(pool.FieldLoRA), ep.ID)
	}
	out := make([]float64, len(cands))
	req := &scheduler.Request{Model: "a", LoRA: "a"}
	require.NoError(t, scheduler.LoRAAffinity().Score(context.Background(), req, cands, out))
	got := map[string]float64{}
	for i, c := range cands {
		got[c.ID] = out[i]
	}
	assert.Equal(t, map[string]float64{"r0": 0, "r1": 1}, got)
}
