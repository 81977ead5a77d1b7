package kvcache_test

import (
	"fmt"

	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/prefix"
)

// prefix.Hasher is the Keyer the index is meant to be used with.
var _ kvcache.Keyer = (*prefix.Hasher)(nil)

func Example() {
	hasher, err := prefix.NewHasher("meta-llama/Llama-3.1-8B-Instruct", prefix.WithBlockSize(4))
	if err != nil {
		panic(err)
	}
	idx, err := kvcache.New(hasher)
	if err != nil {
		panic(err)
	}
	tokens := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

	// Endpoint 10.0.0.1 reports, through KV events, blocks 0-1 on GPU and
	// offloads block 0 to CPU; 10.0.0.2 holds block 0 on CPU only.
	_ = idx.Stored("10.0.0.1:8000", kvcache.TierGPU, &kvcache.BlockStored{
		EngineHashes: []uint64{0xa1, 0xa2}, Tokens: tokens[:8]})
	_ = idx.Stored("10.0.0.1:8000", kvcache.TierCPU, &kvcache.BlockStored{EngineHashes: []uint64{0xa1}})
	_ = idx.Stored("10.0.0.2:8000", kvcache.TierCPU, &kvcache.BlockStored{
		EngineHashes: []uint64{0xb1}, Tokens: tokens[:4]})

	// A request arrives: hash its tokens and look up the candidates.
	keys := hasher.AppendKeys(nil, tokens, prefix.Extra{})
	candidates := []string{"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
	matches := make([]kvcache.Match, len(candidates))
	longest, _ := idx.Lookup(keys, candidates, matches)
	for i, m := range matches {
		fmt.Printf("%s gpu=%d cpu=%d total=%d\n", candidates[i],
			m.Blocks[kvcache.TierGPU], m.Blocks[kvcache.TierCPU], m.Total())
	}
	fmt.Println("longest:", longest, "of", len(keys))
	// Output:
	// 10.0.0.1:8000 gpu=2 cpu=0 total=2
	// 10.0.0.2:8000 gpu=0 cpu=1 total=1
	// 10.0.0.3:8000 gpu=0 cpu=0 total=0
	// longest: 2 of 3
}

func ExampleIndex_Attach() {
	idx, _ := kvcache.New(nil)
	_ = idx.Attach("pod-a", "lmcache-redis")
	_ = idx.Attach("pod-b", "lmcache-redis")
	keys := []uint64{101, 102, 103}

	// pod-a's connector saved the blocks to the shared store: pod-b can load them.
	_ = idx.Add("pod-a", kvcache.TierShared, keys)
	_ = idx.Add("pod-b", kvcache.TierGPU, keys[:1])

	m := make([]kvcache.Match, 2)
	_, _ = idx.Lookup(keys, []string{"pod-a", "pod-b"}, m)
	fmt.Println(m[0].Blocks[kvcache.TierShared], m[1].Blocks[kvcache.TierGPU], m[1].Blocks[kvcache.TierShared])
	// Output: 3 1 2
}

func ExampleIndex_Learn() {
	// Approximate mode: no KV events, the router's own decisions are the truth.
	idx, _ := kvcache.New(nil, kvcache.WithLearnedTTL(0))
	_ = idx.SetLearnedCapacity("pod-a", 8192) // the server's num_gpu_blocks
	keys := []uint64{7, 8, 9}
	_ = idx.Learn("pod-a", keys)

	m := make([]kvcache.Match, 1)
	_, _ = idx.Lookup(keys, []string{"pod-a"}, m)
	fmt.Println(m[0].Blocks[kvcache.TierLearned])
	// Output: 3
}
