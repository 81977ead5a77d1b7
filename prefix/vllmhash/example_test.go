package vllmhash_test

import (
	"fmt"

	"github.com/routekit/routekit/prefix/vllmhash"
)

func Example() {
	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
	if err != nil {
		panic(err)
	}
	tokens := []uint32{
		151644, 872, 198, 9064, 374, 279, 6722, 315, 5616, 30, 151645, 198, 151644, 77091, 198, 151667,
		1, 2, 3, // a partial block: not hashed
	}
	fmt.Println("NONE_HASH", h.NoneHash())
	for _, d := range h.AppendBlockHashes(nil, vllmhash.Digest{}, tokens, 16, nil) {
		fmt.Println(d, d.Uint64())
	}
	// Output:
	// NONE_HASH 4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e
	// 01d05b6f65e01869495b2fea10fc39faaf80fd6592bda930d20799bf0f09a40d 15134234118671934477
}

func ExampleRequest_ExtraKeys() {
	req := vllmhash.Request{
		LoRAName:  "my-lora",
		CacheSalt: "s3cr3t",
		MM:        []vllmhash.MMItem{{Identifier: "img", Offset: 20, Length: 20}},
	}
	for i, ks := range req.ExtraKeys(3, 16) {
		fmt.Println(i, len(ks))
	}
	// Output:
	// 0 2
	// 1 2
	// 2 2
}
