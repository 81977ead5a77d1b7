package vllmhash

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/xxh3"
)

// Hasher computes vLLM prefix-cache block hashes for one algorithm and one
// NONE_HASH (the root parent derived from PYTHONHASHSEED).
//
// A Hasher is immutable and safe for concurrent use.
type Hasher struct {
	algo Algorithm
	none Digest
}

// Algorithm is a vLLM prefix_caching_hash_algo.
// It is a plain value, safe to copy and to read from several goroutines.
type Algorithm uint8

// The algorithms vLLM offers for --prefix-caching-hash-algo.
const (
	// SHA256 is "sha256": pickle protocol 5 serialization, SHA-256 digest
	// (32 bytes). vLLM's default since v0.10.2.
	SHA256 Algorithm = iota + 1
	// SHA256CBOR is "sha256_cbor": canonical CBOR serialization, SHA-256
	// digest (32 bytes). The portable choice.
	SHA256CBOR
	// XXHash is "xxhash": pickle protocol 5 serialization, XXH3-128 digest
	// (16 bytes, canonical big-endian form).
	XXHash
	// XXHashCBOR is "xxhash_cbor": canonical CBOR serialization, XXH3-128
	// digest (16 bytes).
	XXHashCBOR
)

// ErrUnknownAlgorithm is returned for an algorithm name or value this
// package does not implement (for example "builtin" or
// "sha256_cbor_64bit", which vLLM removed in v0.10.2).
var ErrUnknownAlgorithm = errors.New("vllmhash: unknown hash algorithm")

// ParseAlgorithm returns the Algorithm for vLLM's name of it, as found in
// --prefix-caching-hash-algo or the prefix_caching_hash_algo label of
// vllm:cache_config_info.
func ParseAlgorithm(name string) (Algorithm, error) {
	switch name {
	case "sha256":
		return SHA256, nil
	case "sha256_cbor":
		return SHA256CBOR, nil
	case "xxhash":
		return XXHash, nil
	case "xxhash_cbor":
		return XXHashCBOR, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownAlgorithm, name)
}

// String returns vLLM's name for a.
func (a Algorithm) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case SHA256CBOR:
		return "sha256_cbor"
	case XXHash:
		return "xxhash"
	case XXHashCBOR:
		return "xxhash_cbor"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// DigestSize is the number of bytes of a's digests: 32 for the SHA-256
// algorithms, 16 for the XXH3-128 ones, 0 for an invalid Algorithm.
func (a Algorithm) DigestSize() int {
	switch a {
	case SHA256, SHA256CBOR:
		return 32
	case XXHash, XXHashCBOR:
		return 16
	}
	return 0
}

func (a Algorithm) cbor() bool { return a == SHA256CBOR || a == XXHashCBOR }

// Digest is a full vLLM block hash: the raw digest bytes vLLM keeps
// internally and chains as the parent of the next block. The zero Digest
// stands for "no parent" (Python None).
// A Digest is a comparable value, safe for concurrent use.
type Digest struct {
	n uint8
	b [32]byte
}

// DigestFromBytes returns the Digest whose bytes are b, which must be 16 or
// 32 bytes long (the form KV events carry with
// VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0).
func DigestFromBytes(b []byte) (Digest, error) {
	var d Digest
	if len(b) != 16 && len(b) != 32 {
		return d, fmt.Errorf("vllmhash: digest must be 16 or 32 bytes, got %d", len(b))
	}
	d.n = uint8(copy(d.b[:], b))
	return d, nil
}

// ParseDigest parses a hex digest of 16 or 32 bytes.
func ParseDigest(s string) (Digest, error) {
	var buf [32]byte
	if len(s) > 2*len(buf) || len(s)%2 != 0 {
		return Digest{}, fmt.Errorf("vllmhash: bad hex digest length %d", len(s))
	}
	n, err := hex.Decode(buf[:], []byte(s))
	if err != nil {
		return Digest{}, fmt.Errorf("vllmhash: parse digest: %w", err)
	}
	return DigestFromBytes(buf[:n])
}

// Len is the digest length in bytes: 0 (the zero Digest), 16 or 32.
func (d Digest) Len() int { return int(d.n) }

// IsZero reports whether d is the zero Digest ("no parent").
func (d Digest) IsZero() bool { return d.n == 0 }

// Bytes returns a copy of the digest bytes.
func (d Digest) Bytes() []byte { return append([]byte(nil), d.b[:d.n]...) }

// AppendBytes appends the digest bytes to dst.
func (d Digest) AppendBytes(dst []byte) []byte { return append(dst, d.b[:d.n]...) }

// Uint64 returns the 64-bit form KV events publish by default
// (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1): the last 8 bytes of the digest
// read as a big-endian unsigned integer. It is 0 for the zero Digest.
func (d Digest) Uint64() uint64 {
	if d.n < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(d.b[d.n-8 : d.n])
}

// String returns the digest in lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d.b[:d.n]) }

// New returns a Hasher for algo whose NONE_HASH is derived, as vLLM does,
// from the PYTHONHASHSEED string (for example "0"): NONE_HASH =
// hash(serialize(pythonHashSeed)). vLLM uses 32 random bytes when
// PYTHONHASHSEED is unset; such a server's hashes cannot be reproduced, but
// NewWithNoneHash accepts a NONE_HASH learned some other way.
func New(algo Algorithm, pythonHashSeed string) (*Hasher, error) {
	if algo.DigestSize() == 0 {
		return nil, fmt.Errorf("%w: %d", ErrUnknownAlgorithm, uint8(algo))
	}
	h := &Hasher{algo: algo}
	var in []byte
	if algo.cbor() {
		in = appendCBORString(nil, pythonHashSeed)
	} else {
		p := newPickler(nil)
		p.str(pythonHashSeed)
		in = p.finish()
	}
	h.none = h.sum(in)
	return h, nil
}

// NewWithNoneHash returns a Hasher for algo with an explicit NONE_HASH,
// whose length must match algo's digest size.
func NewWithNoneHash(algo Algorithm, none Digest) (*Hasher, error) {
	if algo.DigestSize() == 0 {
		return nil, fmt.Errorf("%w: %d", ErrUnknownAlgorithm, uint8(algo))
	}
	if none.Len() != algo.DigestSize() {
		return nil, fmt.Errorf("vllmhash: NONE_HASH of %d bytes for %v, want %d", none.Len(), algo, algo.DigestSize())
	}
	return &Hasher{algo: algo, none: none}, nil
}

// Algorithm returns the Hasher's algorithm.
func (h *Hasher) Algorithm() Algorithm { return h.algo }

// NoneHash returns the root parent used for block 0.
func (h *Hasher) NoneHash() Digest { return h.none }

// HashBlock returns hash((parent or NONE_HASH, tuple(tokens), extra)) for one
// full block. A zero parent means block 0; a nil extra is Python None (no
// extra keys), which vLLM distinguishes from an empty tuple.
func (h *Hasher) HashBlock(parent Digest, tokens []uint32, extra []Key) Digest {
	bp := bufPool.Get().(*[]byte)
	*bp = h.AppendInput((*bp)[:0], parent, tokens, extra)
	d := h.sum(*bp)
	bufPool.Put(bp)
	return d
}

// bufPool holds serialization buffers so that hashing does not allocate.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// AppendInput appends the exact bytes vLLM feeds to the digest function for
// one block (pickle protocol 5 or canonical CBOR of the 3-tuple) to dst.
// It is exposed for debugging and golden tests.
func (h *Hasher) AppendInput(dst []byte, parent Digest, tokens []uint32, extra []Key) []byte {
	if parent.IsZero() {
		parent = h.none
	}
	if h.algo.cbor() {
		return appendCBORBlock(dst, parent, tokens, extra)
	}
	return appendPickleBlock(dst, parent, tokens, extra)
}

// AppendBlockHashes hashes every full block of tokens (a trailing partial
// block is ignored, as in vLLM), chaining from parent (zero for a request
// that starts at token 0), and appends the digests to dst. extra[i] holds
// block i's extra keys; extra may be shorter than the number of blocks, and
// a missing or nil entry means None. It panics if blockSize < 1.
func (h *Hasher) AppendBlockHashes(dst []Digest, parent Digest, tokens []uint32, blockSize int, extra [][]Key) []Digest {
	if blockSize < 1 {
		panic("vllmhash: block size must be positive")
	}
	bp := bufPool.Get().(*[]byte)
	for i := 0; (i+1)*blockSize <= len(tokens); i++ {
		var ek []Key
		if i < len(extra) {
			ek = extra[i]
		}
		*bp = h.AppendInput((*bp)[:0], parent, tokens[i*blockSize:(i+1)*blockSize], ek)
		d := h.sum(*bp)
		dst = append(dst, d)
		parent = d
	}
	bufPool.Put(bp)
	return dst
}

func (h *Hasher) sum(in []byte) Digest {
	var d Digest
	switch h.algo {
	case SHA256, SHA256CBOR:
		d.b = sha256.Sum256(in)
		d.n = 32
	default:
		b := xxh3.Hash128(in).Bytes()
		copy(d.b[:], b[:])
		d.n = 16
	}
	return d
}
