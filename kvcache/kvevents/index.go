package kvevents

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/routekit/routekit/kvcache"
)

// Index is what the Subscriber writes to: the consumer-side view of a
// KV-block index. The Subscriber calls it for one endpoint from one
// goroutine at a time, in wire order; calls for different endpoints run
// concurrently. Every decoded event is applied once, duplicates included:
// a hash stored twice is followed by two BlockRemoveds, and an Index must
// count the copies itself to keep the block until the last one (kvcache.Index
// does). *KVCacheIndex adapts a *kvcache.Index; tests use fakes.
type Index interface {
	// Apply applies one event published by endpoint. An error wrapping
	// ErrNotIndexed means the event was deliberately not indexed; other
	// errors are counted as apply errors. Neither stops the subscriber.
	Apply(endpoint string, e *Event) error
	// Clear forgets every block of endpoint (sequence reset, unrecoverable
	// gap); the endpoint stays known.
	Clear(endpoint string) error
	// Drop forgets endpoint entirely (it left the pool).
	Drop(endpoint string) error
}

// ErrNotIndexed is wrapped by Index.Apply errors for events an index
// chooses not to index (a non-full-attention KV-cache group, multimodal
// blocks, a LoRA identified only by its server-local id). The Subscriber
// counts them as skipped.
var ErrNotIndexed = errors.New("kvevents: event not indexed")

// KVCacheIndex applies events to a *kvcache.Index: BlockStored through
// Index.Stored (our keys computed from the event's tokens, chained from
// the parent's), location-only stores (offloading, no tokens) and
// BlockRemoved through the engine-hash mapping, AllBlocksCleared through
// Index.Clear. It is safe for concurrent use.
//
// Stores it deliberately skips (ErrNotIndexed): groups whose
// kv_cache_spec_kind is not a full-attention kind (sliding-window or Mamba
// groups of hybrid models, whose blocks are not a prefix cache), blocks
// with multimodal extra keys (our keys do not cover image content, so
// different images would collide), and LoRA blocks that carry only the
// server-local lora_id (vLLM before ≈v0.12), which requests cannot name.
// A hybrid model publishes each block hash once per KV-cache group, so the
// adapter remembers, per endpoint, the group_idx values whose stores it
// skipped for their kind, and skips their BlockRemoved events too: a
// sliding window's removals must not remove the full-attention copy.
type KVCacheIndex struct {
	x *kvcache.Index
	// Tier maps an event's medium to a tier. Nil means MediumTier.
	Tier func(medium Null[string]) kvcache.Tier

	bufs sync.Pool // *[]uint64

	anySkip atomic.Bool           // skip is not empty: removals must check it
	mu      sync.Mutex            // guards skip
	skip    map[groupKey]struct{} // groups whose stores are not indexed
}

// groupKey is one KV-cache group of one endpoint.
type groupKey struct {
	endpoint string
	group    int64
}

var _ Index = (*KVCacheIndex)(nil)

// NewKVCacheIndex returns the adapter for x.
func NewKVCacheIndex(x *kvcache.Index) *KVCacheIndex { return &KVCacheIndex{x: x} }

// MediumTier is the default medium → tier mapping: None and "GPU" are
// kvcache.TierGPU, other media as kvcache.ParseMedium maps them ("CPU" →
// TierCPU, "STORAGE" and connector stores → TierShared), and media it does
// not know, such as a third-party connector's own name, TierCPU: a local
// offload is the most common case and is never preferred over GPU.
func MediumTier(medium Null[string]) kvcache.Tier {
	if !medium.Valid {
		return kvcache.TierGPU
	}
	t, err := kvcache.ParseMedium(medium.V)
	if err != nil {
		return kvcache.TierCPU
	}
	return t
}

func (a *KVCacheIndex) tier(m Null[string]) kvcache.Tier {
	if a.Tier != nil {
		return a.Tier(m)
	}
	return MediumTier(m)
}

// Apply implements Index.
func (a *KVCacheIndex) Apply(endpoint string, e *Event) error {
	switch e.Type {
	case AllBlocksCleared:
		return a.x.Clear(endpoint)
	case BlockRemoved:
		if e.GroupIdx.Valid && a.skippedGroup(endpoint, e.GroupIdx.V) {
			return fmt.Errorf("%w: removal from KV-cache group %d, whose stores are not indexed", ErrNotIndexed, e.GroupIdx.V)
		}
		bp := a.hashes(e.BlockHashes)
		err := a.x.Removed(endpoint, a.tier(e.Medium), *bp)
		a.bufs.Put(bp)
		return err
	case BlockStored:
		return a.stored(endpoint, e)
	}
	return fmt.Errorf("%w: event type %v", ErrNotIndexed, e.Type)
}

func (a *KVCacheIndex) stored(endpoint string, e *Event) error {
	if k := e.KVCacheSpecKind; k.Valid && k.V != "full_attention" && k.V != "mla_attention" && k.V != "sink_full_attention" {
		if e.GroupIdx.Valid {
			a.skipGroup(endpoint, e.GroupIdx.V)
		}
		return fmt.Errorf("%w: kv_cache_spec_kind %q", ErrNotIndexed, k.V)
	}
	if e.LoRAID.Valid && !e.LoRAName.Valid {
		return fmt.Errorf("%w: LoRA id %d without a name", ErrNotIndexed, e.LoRAID.V)
	}
	var salt string
	if len(e.TokenIDs) > 0 && e.ExtraKeys != nil {
		var mm bool
		var err error
		salt, mm, err = scanExtraKeys(e.ExtraKeys, e.LoRAName.V, !e.ParentBlockHash.Valid)
		if err != nil {
			return err
		}
		if mm {
			return fmt.Errorf("%w: multimodal blocks", ErrNotIndexed)
		}
	}
	bp := a.hashes(e.BlockHashes)
	ev := kvcache.BlockStored{
		EngineHashes: *bp,
		Parent:       e.ParentBlockHash.V.Uint64(),
		HasParent:    e.ParentBlockHash.Valid,
		Tokens:       e.TokenIDs,
		BlockSize:    e.BlockSize,
		LoRA:         e.LoRAName.V,
		CacheSalt:    salt,
	}
	err := a.x.Stored(endpoint, a.tier(e.Medium), &ev)
	a.bufs.Put(bp)
	return err
}

func (a *KVCacheIndex) hashes(hs []Hash) *[]uint64 {
	bp, _ := a.bufs.Get().(*[]uint64)
	if bp == nil {
		bp = new([]uint64)
	}
	b := (*bp)[:0]
	for _, h := range hs {
		b = append(b, h.Uint64())
	}
	*bp = b
	return bp
}

// Clear implements Index.
func (a *KVCacheIndex) Clear(endpoint string) error { return a.x.Clear(endpoint) }

// Drop implements Index.
func (a *KVCacheIndex) Drop(endpoint string) error {
	if a.anySkip.Load() {
		a.mu.Lock()
		for k := range a.skip {
			if k.endpoint == endpoint {
				delete(a.skip, k)
			}
		}
		a.anySkip.Store(len(a.skip) > 0)
		a.mu.Unlock()
	}
	return a.x.DropEndpoint(endpoint)
}

// skipGroup records that endpoint's group's stores are not indexed.
func (a *KVCacheIndex) skipGroup(endpoint string, group int64) {
	k := groupKey{endpoint, group}
	a.mu.Lock()
	if _, ok := a.skip[k]; !ok {
		if a.skip == nil {
			a.skip = map[groupKey]struct{}{}
		}
		a.skip[k] = struct{}{}
		a.anySkip.Store(true)
	}
	a.mu.Unlock()
}

// skippedGroup reports whether endpoint's group's stores are not indexed.
func (a *KVCacheIndex) skippedGroup(endpoint string, group int64) bool {
	if !a.anySkip.Load() {
		return false
	}
	a.mu.Lock()
	_, ok := a.skip[groupKey{endpoint, group}]
	a.mu.Unlock()
	return ok
}

// scanExtraKeys reads a BlockStored's raw extra_keys: whether any block has
// a multimodal key (a tuple), and, when first is set (the event starts at
// block 0), block 0's cache salt: the string key that is not the LoRA
// name. vLLM's order is LoRA name, multimodal keys, cache salt, prompt
// embeds digest.
func scanExtraKeys(raw []byte, lora string, first bool) (salt string, mm bool, err error) {
	r := reader{b: raw}
	n, err := r.arrayLen()
	if err != nil {
		return "", false, err
	}
	for blk := range n {
		if r.null() {
			continue
		}
		m, err := r.arrayLen()
		if err != nil {
			return "", false, err
		}
		seenLoRA := false
		for range m {
			if r.i >= len(r.b) {
				return "", false, r.eof()
			}
			c := r.b[r.i]
			switch {
			case isStr(c):
				s, err := r.str()
				if err != nil {
					return "", false, err
				}
				switch {
				case !seenLoRA && lora != "" && string(s) == lora:
					seenLoRA = true
				case isHexDigest(s):
					// A bare multimodal content hash: vLLM before ≈0.19 sent
					// the identifier without its offset.
					mm = true
				case blk == 0 && first && salt == "":
					salt = string(s)
				}
			case c&0xf0 == 0x90 || c == 0xdc || c == 0xdd:
				mm = true
				if err := r.skip(); err != nil {
					return "", false, err
				}
			default:
				if err := r.skip(); err != nil {
					return "", false, err
				}
			}
		}
	}
	return salt, mm, nil
}

// isHexDigest reports whether s looks like a multimodal content hash: 64
// lowercase hex digits.
func isHexDigest(s []byte) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// DecodeExtraKeys decodes an Event's raw extra_keys into one entry per
// block: nil for None, or the block's keys as Go values (string, []byte,
// int64, uint64, float64, bool, nil, []any for tuples).
func DecodeExtraKeys(raw []byte) ([][]any, error) {
	if raw == nil {
		return nil, nil
	}
	r := reader{b: raw}
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	out := make([][]any, n)
	for i := range n {
		if r.null() {
			continue
		}
		v, err := r.value(0)
		if err != nil {
			return nil, err
		}
		items, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: extra keys of block %d are not a tuple", ErrMalformed, i)
		}
		out[i] = items
	}
	if r.i != len(r.b) {
		return nil, r.errf("trailing bytes after extra keys")
	}
	return out, nil
}

// value decodes one generic msgpack value, at most 32 levels deep.
func (r *reader) value(depth int) (any, error) {
	if depth > 32 {
		return nil, r.errf("nesting deeper than 32")
	}
	if r.i >= len(r.b) {
		return nil, r.eof()
	}
	c := r.b[r.i]
	switch {
	case c == 0xc0:
		r.i++
		return nil, nil
	case c == 0xc2 || c == 0xc3:
		r.i++
		return c == 0xc3, nil
	case isStr(c):
		s, err := r.str()
		return string(s), err
	case c == 0xc4 || c == 0xc5 || c == 0xc6:
		b, err := r.bin()
		return append([]byte(nil), b...), err
	case c == 0xcb:
		if len(r.b)-r.i < 9 {
			return nil, r.eof()
		}
		f := math.Float64frombits(be64(r.b[r.i+1:]))
		r.i += 9
		return f, nil
	case c&0xf0 == 0x90 || c == 0xdc || c == 0xdd:
		n, err := r.arrayLen()
		if err != nil {
			return nil, err
		}
		out := make([]any, n)
		for i := range n {
			if out[i], err = r.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	v, neg, err := r.intBits()
	if err != nil {
		return nil, err
	}
	if neg || v <= 1<<63-1 {
		return int64(v), nil
	}
	return v, nil
}
