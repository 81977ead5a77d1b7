package prefix_test

import (
	"fmt"

	"github.com/routekit/routekit/prefix"
)

func Example() {
	h, err := prefix.NewHasher("meta-llama/Llama-3.1-8B-Instruct", prefix.WithBlockSize(4))
	if err != nil {
		panic(err)
	}
	system := []uint32{128000, 9125, 25, 1472, 527, 264, 11190, 18328}     // 2 full blocks
	a := append(append([]uint32{}, system...), 3923, 374, 220, 17, 10, 17) // + 1 full block + 2 tokens
	b := append(append([]uint32{}, system...), 3923, 374, 279, 6864)

	keys := make([]uint64, 0, 16) // reused: no allocation per request
	ka := append([]uint64{}, h.AppendKeys(keys[:0], a, prefix.Extra{})...)
	kb := h.AppendKeys(keys[:0], b, prefix.Extra{})

	shared := 0
	for shared < min(len(ka), len(kb)) && ka[shared] == kb[shared] {
		shared++
	}
	fmt.Println("blocks:", len(ka), len(kb), "shared:", shared)

	salted := h.AppendKeys(nil, a, prefix.Extra{CacheSalt: "tenant-42"})
	fmt.Println("salted shares block 0:", salted[0] == ka[0])
	// Output:
	// blocks: 3 3 shared: 2
	// salted shares block 0: false
}

func ExampleHasher_AppendKeysFrom() {
	h, _ := prefix.NewHasher("m", prefix.WithBlockSize(2))
	tokens := []uint32{1, 2, 3, 4, 5, 6}
	all := h.AppendKeys(nil, tokens, prefix.Extra{LoRA: "sql-adapter"})

	// A KV event stores blocks 1 and 2 under the block-0 parent we already know.
	tail := h.AppendKeysFrom(nil, all[0], tokens[2:], "sql-adapter", "")
	fmt.Println(tail[0] == all[1], tail[1] == all[2])
	// Output: true true
}

func ExampleHasher_AppendTextKeys() {
	h, _ := prefix.NewHasher("m", prefix.WithBlockSize(4)) // 16 bytes per block
	a := h.AppendTextKeys(nil, "You are a helpful assistant. Answer in French: what is 2+2?", prefix.Extra{})
	b := h.AppendTextKeys(nil, "You are a helpful assistant. Answer in German: what is 3+3?", prefix.Extra{})
	fmt.Println(len(a), len(b), a[0] == b[0], a[1] == b[1], a[2] == b[2])
	// Output: 3 3 true true false
}
