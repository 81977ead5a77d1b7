package kvevents_test

import (
	"context"
	"fmt"
	"time"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix"
)

// Decoding one vLLM v0.26 payload (the golden BlockRemoved + AllBlocksCleared
// part of the reference batch).
func ExampleDecode() {
	payload := []byte("\x93\xcb\x41\xda\x55\x6e\x40\x20\x00\x00\x92" +
		"\x84\xa4type\xacBlockRemoved\xacblock_hashes\x91\xcf\xd2\x07\x99\xbf\x0f\x09\xa4\x0d\xa6medium\xa3GPU\xa9group_idx\x00" +
		"\x81\xa4type\xb0AllBlocksCleared" +
		"\x00")
	var b kvevents.Batch
	if err := kvevents.Decode(payload, &b); err != nil {
		panic(err)
	}
	for _, e := range b.Events {
		fmt.Printf("%v %v %q\n", e.Type, e.BlockHashes, e.Medium.V)
	}
	fmt.Println("rank", b.DataParallelRank.V)
	// Output:
	// BlockRemoved [15134234118671934477] "GPU"
	// AllBlocksCleared [] ""
	// rank 0
}

// A vLLM-like publisher, a subscriber and the kvcache index, end to end.
func ExampleSubscriber() {
	hasher, _ := prefix.NewHasher("my-model", prefix.WithBlockSize(4))
	idx, _ := kvcache.New(hasher)

	pub, err := kvpublish.New(kvpublish.Config{
		Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind})
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)

	sub, _ := kvevents.NewSubscriber(kvevents.NewKVCacheIndex(idx))
	_ = sub.Add(kvevents.Source{ID: "pod-a", Endpoint: pub.Endpoint(), ReplayEndpoint: pub.ReplayEndpoint()})
	go sub.Run(ctx)

	// The engine caches 2 blocks. Published before the subscription is up,
	// the batch reaches the index through the replay socket.
	tokens := []uint32{1, 2, 3, 4, 5, 6, 7, 8}
	_, _ = pub.Publish(&kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{
		Type: kvevents.BlockStored, BlockHashes: []kvevents.Hash{kvevents.HashUint64(0xa1), kvevents.HashUint64(0xa2)},
		TokenIDs: tokens, BlockSize: 4, Medium: kvevents.Some("GPU"),
	}}}, kvevents.MapCurrent)

	keys := hasher.AppendKeys(nil, tokens, prefix.Extra{})
	m := make([]kvcache.Match, 1)
	for m[0].Total() < 2 {
		// Any later message reveals the gap before it.
		_, _ = pub.Publish(&kvevents.Batch{TS: 1767225601}, kvevents.MapCurrent)
		time.Sleep(10 * time.Millisecond)
		_, _ = idx.Lookup(keys, []string{"pod-a"}, m)
	}
	fmt.Println("pod-a holds", m[0].Blocks[kvcache.TierGPU], "blocks on GPU")
	// Output: pod-a holds 2 blocks on GPU
}
