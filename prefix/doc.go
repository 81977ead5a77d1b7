// Package prefix turns a request's token IDs into chained KV-block keys: one
// uint64 per full block, where key i depends on every token of blocks 0..i.
// Two requests share the first n keys exactly when they share the first n
// blocks of tokens, so the keys are what a prefix-cache index stores and looks up.
//
// A key is xxh3-64 over the block's tokens as little-endian uint32 bytes, seeded
// with the parent block's key; the chain root is derived from the model name.
// Like vLLM's own extra keys, the LoRA adapter name is mixed into every block and
// the cache_salt into block 0 only. Keys are never zero.
//
//	h, err := prefix.NewHasher("meta-llama/Llama-3.1-8B-Instruct", prefix.WithBlockSize(16))
//	if err != nil {
//		return err
//	}
//	keys := make([]uint64, 0, 8192/16) // reuse across requests: zero allocations
//	keys = h.AppendKeys(keys[:0], tokens, prefix.Extra{LoRA: adapter, CacheSalt: salt})
//
//	// On a KV event's BlockStored, chain from the parent's key instead of block 0:
//	more := h.AppendKeysFrom(nil, parentKey, eventTokens, loraName, "")
//
//	// No tokenizer? Estimate from the prompt's bytes (4 bytes per pseudo-token):
//	est := h.AppendTextKeys(nil, prompt, prefix.Extra{})
//
// Only full blocks are hashed; a partial tail block has no key, as in vLLM. The
// block size must be the model server's (vllm:cache_config_info reports it) for
// keys built from KV events and from requests to line up.
//
// Concurrency: a Hasher is immutable and safe for concurrent use.
//
// What it does not do: it does not reproduce vLLM's own block hashes (sha256,
// sha256_cbor, xxhash); package prefix/vllmhash does. Our keys are cheaper
// (about 10 ns per block) and independent of PYTHONHASHSEED, and an index maps
// the engine's hashes onto them. Multimodal inputs are not mixed in: two requests
// whose placeholder tokens are equal but whose images differ get equal keys.
package prefix
