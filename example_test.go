package routekit_test

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/scheduler"
)

// One routing decision through the leaves and the scheduler: the prompt's
// token IDs (package tokenizer would produce them from text) become block
// keys, the KV-cache index says which endpoint already holds them, and the
// scheduler weighs that against each endpoint's queue.
func Example() {
	const model = "meta-llama/Llama-3.1-8B-Instruct"
	hasher, err := prefix.NewHasher(model, prefix.WithBlockSize(4))
	if err != nil {
		panic(err)
	}
	idx, err := kvcache.New(hasher)
	if err != nil {
		panic(err)
	}
	p := pool.New()
	for id, waiting := range map[string]int{"a": 0, "b": 1} {
		_ = p.Store(pool.Endpoint{ID: id, Address: id + ".vllm:8000"})
		e, _ := p.Load(id)
		e.StoreMetrics(pool.Metrics{Engine: pool.EngineVLLM, Waiting: waiting})
	}
	s, err := scheduler.New(scheduler.DefaultProfile(rand.NewPCG(1, 2)),
		scheduler.WithPrefixIndex(scheduler.KVIndex(idx)))
	if err != nil {
		panic(err)
	}

	tokens := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	keys := hasher.AppendKeys(nil, tokens, prefix.Extra{})
	// KV events (package kvcache/kvevents) report that "b" holds the first
	// three blocks on GPU.
	_ = idx.Add("b", kvcache.TierGPU, keys[:3])

	req := &scheduler.Request{Model: model, Tokens: tokens, BlockKeys: keys,
		BlockSize: hasher.BlockSize(), PromptTokens: len(tokens)}
	d, err := s.Schedule(context.Background(), req, p.Snapshot().Endpoints())
	if err != nil {
		fmt.Println(err, scheduler.HTTPStatus(err))
		return
	}
	fmt.Println("to", d.Endpoint.ID, "uncached tokens", d.UncachedTokens)
	// Output:
	// to b uncached tokens 4
}
