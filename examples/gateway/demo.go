package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/routekit/routekit/pool"
)

// demoTraffic sends streaming completions to the fleet at rate per second so
// that the live view moves: each goes to the endpoint with the least load
// (scraped waiting + running, plus the gateway's own in-flight requests),
// with in-flight accounting on dispatch, first token and end. Prompts share
// a few system prefixes, so the servers' prefix caches get hits.
func demoTraffic(ctx context.Context, p *pool.Pool, rate float64) error {
	if rate <= 0 {
		<-ctx.Done()
		return nil
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes := []string{
		strings.Repeat("You are a helpful assistant for a bank. ", 20),
		strings.Repeat("You translate English into French. ", 25),
		strings.Repeat("You write SQL for a retail schema. ", 30),
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ep := leastLoaded(p.Snapshot())
		if ep == nil {
			continue
		}
		prompt := prefixes[rng.IntN(len(prefixes))] + fmt.Sprintf("Question %d: %d?", n, rng.IntN(1000))
		maxTokens := 20 + rng.IntN(200)
		wg.Go(func() { complete(ctx, client, ep, prompt, maxTokens) })
	}
}

func leastLoaded(s *pool.Snapshot) *pool.Endpoint {
	var best *pool.Endpoint
	bestLoad := int64(1 << 62)
	for _, e := range s.Endpoints() {
		m := e.Metrics()
		load := int64(m.Waiting+m.Running) + e.Load().Requests
		if load < bestLoad {
			best, bestLoad = e, load
		}
	}
	return best
}

// complete sends one streaming completion and accounts for it in the pool.
// The demo does not know the cached prefix, so it counts every prompt byte
// as an uncached token (the simulated servers tokenize by bytes).
func complete(ctx context.Context, client *http.Client, ep *pool.Endpoint, prompt string, maxTokens int) {
	f := ep.Dispatch(len(prompt))
	defer f.End()
	body, _ := json.Marshal(map[string]any{
		"model": ep.Models[0], "prompt": prompt, "max_tokens": maxTokens, "stream": true, "ignore_eos": true,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ep.Address+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte("data:")) {
			f.FirstToken()
		}
	}
}
