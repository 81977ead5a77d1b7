package vllmsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
)

// Drive one engine by hand: a cold prompt, then the same prompt again, which
// hits the prefix cache.
func ExampleEngine() {
	eng, err := vllmsim.NewEngine(vllmsim.Qwen3_32B_H100x2())
	if err != nil {
		fmt.Println(err)
		return
	}
	prompt := make([]uint32, 8000)
	for i := range prompt {
		prompt[i] = uint32(1000 + i)
	}
	now := time.Duration(0)
	for i := range 2 {
		seq, err := eng.Add(&vllmsim.Request{ID: fmt.Sprint(i), Prompt: prompt, MaxTokens: 10, IgnoreEOS: true}, now)
		if err != nil {
			fmt.Println(err)
			return
		}
		start := now
		for seq.Finish() == vllmsim.NotFinished {
			d, ok := eng.Schedule(now)
			if !ok {
				break
			}
			now += d
			eng.Complete(now)
		}
		fmt.Printf("request %d: ttft=%v cached=%d output=%d finish=%v\n",
			i, (seq.FirstToken - start).Round(time.Millisecond), seq.CachedTokens(), len(seq.Output()), seq.Finish())
	}
	// Output:
	// request 0: ttft=514ms cached=0 output=10 finish=length
	// request 1: ttft=15ms cached=7984 output=10 finish=length
}

// Start an in-process replica and call it like a vLLM server: the second
// identical request hits the prefix cache.
func ExampleStartFleet() {
	f, err := vllmsim.StartFleet(context.Background(), vllmsim.ReplicaSpec{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	body := `{"model":"sim-model","prompt":"` + strings.Repeat("Tell me about KV caches. ", 8) + `","max_tokens":8,"ignore_eos":true}`
	for range 2 {
		resp, err := http.Post(f.Replicas[0].URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		var out struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage struct {
				PromptTokens        int `json:"prompt_tokens"`
				CompletionTokens    int `json:"completion_tokens"`
				PromptTokensDetails struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("prompt=%d cached=%d completion=%d finish=%s\n", out.Usage.PromptTokens,
			out.Usage.PromptTokensDetails.CachedTokens, out.Usage.CompletionTokens, out.Choices[0].FinishReason)
	}
	// Output:
	// prompt=200 cached=0 completion=8 finish=length
	// prompt=200 cached=192 completion=8 finish=length
}

// Run one replica with two data-parallel engine cores. Each core has its
// own prefix cache: the X-data-parallel-rank header pins a request to a
// core, and a prompt cached on rank 1 is cold on rank 0.
func ExampleConfig_dataParallel() {
	cfg := vllmsim.Fast()
	cfg.DataParallelSize = 2
	f, err := vllmsim.StartFleet(context.Background(), vllmsim.ReplicaSpec{Config: cfg})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	body := `{"prompt":"` + strings.Repeat("Tell me about KV caches. ", 8) + `","max_tokens":4}`
	for _, rank := range []string{"1", "1", "0"} {
		req, err := http.NewRequest(http.MethodPost, f.Replicas[0].URL+"/v1/completions", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		req.Header.Set("X-data-parallel-rank", rank)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		var out struct {
			Usage struct {
				PromptTokensDetails struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("rank %s: cached=%d\n", rank, out.Usage.PromptTokensDetails.CachedTokens)
	}
	// Output:
	// rank 1: cached=0
	// rank 1: cached=192
	// rank 0: cached=0
}
