// Package vllmhash reproduces vLLM's own prefix-cache block hashes, byte for
// byte: the "sha256" (pickle protocol 5), "sha256_cbor" (canonical CBOR),
// "xxhash" and "xxhash_cbor" (XXH3-128) algorithms, the NONE_HASH root
// derived from PYTHONHASHSEED, the per-block extra keys (LoRA name,
// multimodal items, cache_salt, prompt-embeds digests), and the 64-bit tail
// that vLLM's KV events publish (Digest.Uint64).
//
// vLLM hashes block i as hash(serialize((parent, tuple(tokens_i), extra_i)))
// where parent is block i-1's full digest, or NONE_HASH for block 0, and
// extra_i is None or a tuple. Only full blocks are hashed.
//
// Usage:
//
//	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0") // algorithm, PYTHONHASHSEED
//	if err != nil {
//		return err
//	}
//	req := vllmhash.Request{LoRAName: "my-lora", CacheSalt: "s3cr3t"}
//	extra := req.ExtraKeys(len(tokens)/16, 16)
//	digests := h.AppendBlockHashes(nil, vllmhash.Digest{}, tokens, 16, extra)
//	for _, d := range digests {
//		fmt.Println(d, d.Uint64()) // full digest, and the hash a KV event carries
//	}
//
// Concurrency: Hasher, Digest and Key are immutable and safe for concurrent
// use.
//
// What it does not do: routekit's index does not need these hashes (it maps
// engine hashes to its own xxh3 keys, see package prefix); they serve the
// vLLM stand-in (internal/vllmsim) and debugging tools. It implements neither
// the pre-v0.10.2 algorithms ("builtin", "sha256_cbor_64bit") nor the
// unmerged "*_msgpack" ones. Pickle memoizes by object identity: a str or
// bytes object seen twice in one block tuple is written the second time as
// a back-reference. This package reproduces that for the objects CPython
// shares by construction (empty and one-Latin-1-character str, empty and
// one-byte bytes); it cannot know whether two longer equal strings are one
// object, and writes them twice, which is what vLLM produces for LoRA names,
// salts and multimodal identifiers parsed from a request. A server that runs without
// PYTHONHASHSEED uses a random NONE_HASH that cannot be reproduced. vLLM's
// hash_block_size (hashing at a finer granularity than the physical block)
// is the caller's concern: hash at that granularity.
package vllmhash
