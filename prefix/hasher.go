package prefix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unsafe"

	"github.com/zeebo/xxh3"
)

// DefaultBlockSize is the block size, in tokens, that a Hasher uses when no
// WithBlockSize option is given. It is vLLM's default (CacheConfig.DEFAULT_BLOCK_SIZE).
const DefaultBlockSize = 16

// MaxBlockSize is the largest block size, in tokens, that NewHasher accepts.
const MaxBlockSize = 1 << 16

// Hasher turns token IDs into chained block keys. Key i depends on every token of
// blocks 0..i, on the model name, on the LoRA adapter and, through block 0, on the
// cache salt, so equal keys mean equal prefixes (up to 64-bit collisions).
//
// A Hasher is immutable after NewHasher and safe for concurrent use.
type Hasher struct {
	blockSize int
	model     string
	root      uint64 // chain root of token keys
	textRoot  uint64 // chain root of byte-estimate keys
}

// Option configures a Hasher.
// Options are immutable values, safe to reuse.
type Option interface{ apply(*Hasher) }

type optionFunc func(*Hasher)

func (f optionFunc) apply(h *Hasher) { f(h) }

// WithBlockSize sets the block size in tokens (default DefaultBlockSize). It must
// equal the model server's KV block size (vLLM's --block-size, reported by the
// vllm:cache_config_info metric) for keys to line up with the server's cache.
func WithBlockSize(tokens int) Option {
	return optionFunc(func(h *Hasher) { h.blockSize = tokens })
}

// ErrBlockSize is returned by NewHasher for a block size outside [1, MaxBlockSize].
// Configure the model server's block size (vLLM's --block-size).
var ErrBlockSize = errors.New("prefix: block size out of range")

// NewHasher returns a Hasher whose chain is rooted in the model name. Two
// Hashers with the same model name and block size produce identical keys, in
// any process and on any platform.
func NewHasher(model string, opts ...Option) (*Hasher, error) {
	h := &Hasher{blockSize: DefaultBlockSize, model: model}
	for _, o := range opts {
		o.apply(h)
	}
	if h.blockSize < 1 || h.blockSize > MaxBlockSize {
		return nil, fmt.Errorf("%w: %d tokens (want 1..%d)", ErrBlockSize, h.blockSize, MaxBlockSize)
	}
	h.root = nonZero(xxh3.HashStringSeed(model, seedRoot))
	h.textRoot = nonZero(xxh3.HashStringSeed(model, seedText))
	return h, nil
}

// Extra holds the per-request inputs that change a request's keys besides its
// tokens, as vLLM's extra keys do. The zero value means no adapter and no salt.
// It is a plain value, safe to copy and to read from several goroutines.
type Extra struct {
	// LoRA is the LoRA adapter name (vLLM's lora_request.lora_name). It is
	// mixed into every block, so requests for different adapters never share keys.
	LoRA string
	// CacheSalt is the request's cache_salt. It is mixed into block 0 only and,
	// through the chain, into every later block.
	CacheSalt string
}

// BlockSize reports the block size in tokens.
func (h *Hasher) BlockSize() int { return h.blockSize }

// Model reports the model name the chain is rooted in.
func (h *Hasher) Model() string { return h.model }

// Root reports the chain root: the parent key of block 0. It is never zero.
func (h *Hasher) Root() uint64 { return h.root }

// NumBlocks reports how many full blocks n tokens make. Partial tail blocks are
// never hashed, as in vLLM.
func (h *Hasher) NumBlocks(n int) int {
	if n <= 0 {
		return 0
	}
	return n / h.blockSize
}

// AppendKeys appends to dst the keys of the full blocks of tokens, from block 0,
// and returns the extended slice. It allocates only if dst lacks capacity for
// NumBlocks(len(tokens)) more keys. Keys are never zero.
func (h *Hasher) AppendKeys(dst []uint64, tokens []uint32, x Extra) []uint64 {
	return h.AppendKeysFrom(dst, h.root, tokens, x.LoRA, x.CacheSalt)
}

// AppendKeysFrom appends the keys of the full blocks of tokens, chaining from
// parent, the key of the block just before tokens (Root for block 0). The cache
// salt is mixed in only when parent is Root, that is when tokens start at block
// 0; the LoRA name is mixed into every block. Keys are never zero.
//
// AppendKeysFrom is what a KV-event consumer calls on BlockStored: the parent is
// the key it recorded for the event's parent block hash.
func (h *Hasher) AppendKeysFrom(dst []uint64, parent uint64, tokens []uint32, lora, cacheSalt string) []uint64 {
	n := h.NumBlocks(len(tokens))
	if n == 0 {
		return dst
	}
	dst = grow(dst, n)
	var loraKey, saltKey uint64
	if lora != "" {
		loraKey = xxh3.HashStringSeed(lora, seedLoRA)
	}
	if cacheSalt != "" && parent == h.root {
		saltKey = xxh3.HashStringSeed(cacheSalt, seedSalt)
	}
	bs := h.blockSize
	if !littleEndian {
		return h.appendPortable(dst, parent, tokens[:n*bs], loraKey, saltKey)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(tokens))), n*bs*4)
	step := bs * 4
	k := parent
	for i := 0; i < n; i++ {
		seed := k
		if loraKey != 0 {
			seed = mix(seed, loraKey)
		}
		if i == 0 && saltKey != 0 {
			seed = mix(seed, saltKey)
		}
		k = nonZero(xxh3.HashSeed(raw[i*step:(i+1)*step:(i+1)*step], seed))
		dst = append(dst, k)
	}
	return dst
}

// appendPortable is AppendKeysFrom for big-endian machines: it copies each block
// into little-endian order first, so keys are identical on every platform.
func (h *Hasher) appendPortable(dst []uint64, parent uint64, tokens []uint32, loraKey, saltKey uint64) []uint64 {
	bs := h.blockSize
	buf := make([]byte, bs*4)
	k := parent
	for i := 0; i+bs <= len(tokens); i += bs {
		for j, t := range tokens[i : i+bs] {
			binary.LittleEndian.PutUint32(buf[j*4:], t)
		}
		seed := k
		if loraKey != 0 {
			seed = mix(seed, loraKey)
		}
		if i == 0 && saltKey != 0 {
			seed = mix(seed, saltKey)
		}
		k = nonZero(xxh3.HashSeed(buf, seed))
		dst = append(dst, k)
	}
	return dst
}

// AppendTextKeys appends estimated keys for a prompt whose tokens are unknown
// (no tokenizer for the model, or the fleet publishes no KV events). The text's
// bytes are packed into pseudo-tokens of 4 bytes each, and every BlockSize
// pseudo-tokens (4·BlockSize bytes) make one block; the tail that does not fill
// a block is ignored. The keys come from a separate chain root, so they never
// equal token keys.
//
// Limits: the estimate only relates requests to each other. It never matches
// the keys of a model server's KV events, a block boundary in bytes is not a
// block boundary in tokens, and one differing byte (a timestamp in a system
// prompt) breaks the chain from its block on, just as a differing token would.
// Use it with learned entries (kvcache's approximate mode), where the router's
// own decisions are the only source of truth.
func (h *Hasher) AppendTextKeys(dst []uint64, text string, x Extra) []uint64 {
	step := h.blockSize * 4
	n := len(text) / step
	if n == 0 {
		return dst
	}
	dst = grow(dst, n)
	var loraKey, saltKey uint64
	if x.LoRA != "" {
		loraKey = xxh3.HashStringSeed(x.LoRA, seedLoRA)
	}
	if x.CacheSalt != "" {
		saltKey = xxh3.HashStringSeed(x.CacheSalt, seedSalt)
	}
	k := h.textRoot
	for i := 0; i < n; i++ {
		seed := k
		if loraKey != 0 {
			seed = mix(seed, loraKey)
		}
		if i == 0 && saltKey != 0 {
			seed = mix(seed, saltKey)
		}
		k = nonZero(xxh3.HashStringSeed(text[i*step:(i+1)*step], seed))
		dst = append(dst, k)
	}
	return dst
}

// Domain separators for the different inputs hashed into the chain.
const (
	seedRoot = 0x726f75746b69742f // "routkit/"
	seedText = 0x74657874726f6f74 // "textroot"
	seedLoRA = 0x6c6f72612d6b6579 // "lora-key"
	seedSalt = 0x73616c742d6b6579 // "salt-key"
)

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// mix folds an extra key into a chain seed. It is xxh3's 128-bit multiply-fold
// followed by its avalanche, so it is not symmetric and never cancels.
func mix(seed, extra uint64) uint64 {
	hi, lo := bits.Mul64(seed^0x9e3779b185ebca87, extra^0xc2b2ae3d27d4eb4f)
	x := hi ^ lo ^ seed
	x ^= x >> 37
	x *= 0x165667919e3779f9
	x ^= x >> 32
	return x
}

// nonZero maps the one hash value 0 to 1, so that 0 can mean "no key".
func nonZero(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

func grow(dst []uint64, n int) []uint64 {
	if cap(dst)-len(dst) < n {
		d := make([]uint64, len(dst), len(dst)+n)
		copy(d, dst)
		dst = d
	}
	return dst
}
