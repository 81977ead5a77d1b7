package vllmhash

// Key is one Python value inside a block's extra-keys tuple: a str, an int,
// a bytes or a nested tuple. The zero Key is Python None.
//
// Keys are immutable values and safe for concurrent use.
type Key struct {
	kind  keyKind
	i     int64
	s     string // str or bytes content
	items []Key
}

type keyKind uint8

const (
	kindNone keyKind = iota
	kindStr
	kindInt
	kindBytes
	kindTuple
)

// Str returns the Key for a Python str (a LoRA name, a cache salt, a
// multimodal identifier).
func Str(s string) Key { return Key{kind: kindStr, s: s} }

// Int returns the Key for a Python int (a multimodal offset, or a LoRA int
// id in vLLM before v0.12).
func Int(i int64) Key { return Key{kind: kindInt, i: i} }

// Bytes returns the Key for a Python bytes value (a prompt-embeds digest).
func Bytes(b []byte) Key { return Key{kind: kindBytes, s: string(b)} }

// Tuple returns the Key for a Python tuple of items.
func Tuple(items ...Key) Key { return Key{kind: kindTuple, items: items} }

// MMItem is one multimodal input's placeholder range in the prompt, as in
// vLLM's PlaceholderRange, with its content identifier.
// It is a plain value, safe to copy and to read from several goroutines.
type MMItem struct {
	// Identifier is the item's content hash (mm_feature.identifier).
	Identifier string
	// Offset is the index of the item's first placeholder token.
	Offset int
	// Length is the number of placeholder tokens.
	Length int
}

// Request holds the per-request inputs of vLLM's
// generate_block_hash_extra_keys. The zero Request yields no extra keys.
// ExtraKeys only reads it, so a Request may be shared between goroutines.
type Request struct {
	// LoRAName is the adapter name (lora_request.lora_name); it is an
	// extra key of every block. Empty means no LoRA.
	LoRAName string
	// MM lists multimodal items sorted by Offset. A block overlapping an
	// item gets the key (identifier, offset - block_start), the form used
	// since vLLM ≈v0.19.
	MM []MMItem
	// CacheSalt is the request's cache_salt; it is an extra key of block 0
	// only. Empty means none.
	CacheSalt string
	// PromptEmbeds, when the request carries prompt embeddings, holds for
	// each block the SHA-256 digest of that block's embedding tensor bytes
	// (vLLM hashes the tensor; this package does not see it).
	PromptEmbeds [][32]byte
}

// ExtraKeys returns the extra keys of each of the first numBlocks blocks of
// blockSize tokens, in vLLM's order: LoRA name, multimodal keys, cache salt,
// prompt-embeds digest. A block with none gets nil (Python None). The result
// is meant for Hasher.AppendBlockHashes. A numBlocks or blockSize below 1
// yields nil.
func (r *Request) ExtraKeys(numBlocks, blockSize int) [][]Key {
	if numBlocks < 1 || blockSize < 1 {
		return nil
	}
	out := make([][]Key, numBlocks)
	mmIdx := 0
	for b := range numBlocks {
		start, end := b*blockSize, (b+1)*blockSize
		var ks []Key
		if r.LoRAName != "" {
			ks = append(ks, Str(r.LoRAName))
		}
		// Mirrors vLLM's _gen_mm_extra_hash_keys, including its cursor that
		// carries over from block to block.
		for mmIdx < len(r.MM) {
			it := r.MM[mmIdx]
			if end <= it.Offset {
				break
			}
			if start > it.Offset+it.Length {
				mmIdx++
				continue
			}
			ks = append(ks, Tuple(Str(it.Identifier), Int(int64(it.Offset-start))))
			if end >= it.Offset+it.Length {
				mmIdx++
			} else {
				break
			}
		}
		if start == 0 && r.CacheSalt != "" {
			ks = append(ks, Str(r.CacheSalt))
		}
		if b < len(r.PromptEmbeds) {
			ks = append(ks, Bytes(r.PromptEmbeds[b][:]))
		}
		out[b] = ks
	}
	return out
}
