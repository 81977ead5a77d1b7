package kvevents

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Batch is one vLLM KVEventBatch: the payload of one ZeroMQ message.
//
// A Batch is a plain value; it is not safe for concurrent use while being
// decoded into.
type Batch struct {
	// TS is the publisher's time.time() when the batch was published.
	TS float64
	// Events holds the known events in wire order. Events of types this
	// package does not know are not kept; Skipped counts them.
	Events []Event
	// DataParallelRank is the publishing engine's data-parallel rank; it is
	// not Valid for the 2-element batches of vLLM v0.9.0.
	DataParallelRank Null[int64]
	// Skipped counts events of unknown types that were skipped.
	Skipped int
}

// EventType says which vLLM event an Event is.
// EventType values are immutable and safe for concurrent use.
type EventType uint8

// The event types vLLM publishes. The zero EventType is invalid.
const (
	// BlockStored: blocks became cached (full) on the publisher.
	BlockStored EventType = iota + 1
	// BlockRemoved: blocks were evicted from the publisher's cache.
	BlockRemoved
	// AllBlocksCleared: the publisher's prefix cache was reset.
	AllBlocksCleared
)

// String returns vLLM's class name for t, which is also its wire tag.
func (t EventType) String() string {
	switch t {
	case BlockStored:
		return "BlockStored"
	case BlockRemoved:
		return "BlockRemoved"
	case AllBlocksCleared:
		return "AllBlocksCleared"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one BlockStored, BlockRemoved or AllBlocksCleared event with
// every field vLLM has ever declared. Fields that do not belong to the
// event's Type, or that its schema version lacks, are zero.
// It is plain data with no internal synchronisation: share it only read-only.
type Event struct {
	// Type is the event's class.
	Type EventType

	// BlockHashes are the stored or removed blocks (BlockStored,
	// BlockRemoved), in chain order.
	BlockHashes []Hash
	// ParentBlockHash is the hash of the block before BlockHashes[0], not
	// Valid when the event starts at block 0 or carries no tokens
	// (offloading events). BlockStored only.
	ParentBlockHash Null[Hash]
	// TokenIDs are the tokens of the stored blocks:
	// len(TokenIDs) == len(BlockHashes)*BlockSize, or empty for
	// location-only (offloading) events. BlockStored only.
	TokenIDs []uint32
	// BlockSize is the number of tokens per block (0 in some offloading
	// events). BlockStored only.
	BlockSize int
	// LoRAID is the server-local LoRA adapter id (deprecated by vLLM in
	// favour of LoRAName; not stable across servers). BlockStored only.
	LoRAID Null[int64]
	// Medium is where the blocks live: "GPU", "CPU", "STORAGE", or a
	// connector's own string. Not Valid in v0.9.0 or when None.
	Medium Null[string]
	// LoRAName is the LoRA adapter name (≈v0.12+). BlockStored only.
	LoRAName Null[string]
	// ExtraKeys is the raw msgpack of the extra_keys field (one entry per
	// block: None or a tuple of LoRA name, multimodal keys, cache salt,
	// prompt-embeds digest), nil when absent or None. It aliases the
	// decoded payload. Decode it with DecodeExtraKeys. BlockStored only.
	ExtraKeys []byte
	// GroupIdx is the KV-cache group (hybrid models) of the blocks.
	GroupIdx Null[int64]
	// KVCacheSpecKind is the group's attention kind, e.g. "full_attention".
	// BlockStored only.
	KVCacheSpecKind Null[string]
	// KVCacheSpecSlidingWindow is the group's sliding window, for
	// sliding-window kinds. BlockStored only.
	KVCacheSpecSlidingWindow Null[int64]
	// Locality is "LOCAL" or "REMOTE" relative to the publisher (newest
	// vLLM main).
	Locality Null[string]
	// Ownership is a secondary offloading tier's id (newest vLLM main).
	Ownership Null[string]
	// SessionID is the session the blocks belong to (newest vLLM main).
	// BlockStored only.
	SessionID Null[string]
}

// Null is a value that may be absent: Python None, or a field the
// publisher's schema version does not have. It mirrors database/sql.Null.
// It is a plain value, safe to share read-only.
type Null[T any] struct {
	// V is the value when Valid.
	V T
	// Valid reports whether V is set.
	Valid bool
}

// Some returns a valid Null holding v.
func Some[T any](v T) Null[T] { return Null[T]{V: v, Valid: true} }

// Hash is a block hash exactly as it appeared on the wire: an unsigned or
// signed msgpack integer (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1, the
// default), or the raw digest as msgpack bin (=0). Whatever the form, Uint64
// is the 64-bit key vLLM's integer form would carry, so an index can key on
// it in every mode.
//
// Hash is a comparable value.
// It is immutable and safe for concurrent use.
type Hash struct {
	v    uint64
	raw  [32]byte
	form hashForm
	n    uint8 // length of raw for hashBytes
}

type hashForm uint8

const (
	hashUint hashForm = iota
	hashInt
	hashBytes
)

// HashUint64 returns the Hash vLLM publishes as an unsigned integer.
func HashUint64(v uint64) Hash { return Hash{v: v, form: hashUint} }

// HashInt64 returns the Hash of a signed integer, the form of vLLM
// versions whose hashes were Python hash() values. Uint64 is its two's
// complement bit pattern.
func HashInt64(v int64) Hash { return Hash{v: uint64(v), form: hashInt} }

// HashBytes returns the Hash of a raw digest of 1 to 32 bytes (vLLM uses 32
// for sha256 and 16 for xxhash).
func HashBytes(b []byte) (Hash, error) {
	if len(b) == 0 || len(b) > 32 {
		return Hash{}, fmt.Errorf("kvevents: bytes block hash of %d bytes, want 1 to 32", len(b))
	}
	h := Hash{form: hashBytes, n: uint8(len(b))}
	copy(h.raw[:], b)
	h.v = low64(b)
	return h, nil
}

// low64 is vLLM's maybe_convert_block_hash: the last 8 bytes, big-endian.
func low64(b []byte) uint64 {
	if len(b) >= 8 {
		return binary.BigEndian.Uint64(b[len(b)-8:])
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// Uint64 returns the hash as vLLM's default integer form: the value itself
// for integer hashes, the last 8 bytes big-endian for bytes hashes.
func (h Hash) Uint64() uint64 { return h.v }

// Bytes returns the raw digest of a bytes hash, or nil for an integer one.
func (h Hash) Bytes() []byte {
	if h.form != hashBytes {
		return nil
	}
	return append([]byte(nil), h.raw[:h.n]...)
}

// IsBytes reports whether h was published as raw digest bytes.
func (h Hash) IsBytes() bool { return h.form == hashBytes }

// String formats h as a decimal integer, or as hex for bytes hashes.
func (h Hash) String() string {
	switch h.form {
	case hashBytes:
		return hex.EncodeToString(h.raw[:h.n])
	case hashInt:
		return fmt.Sprint(int64(h.v))
	}
	return fmt.Sprint(h.v)
}
