package kvevents

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Schema is a version of vLLM's KV-event wire format, for encoding. Decode
// needs none: it accepts them all.
// Schema values are immutable and safe for concurrent use.
type Schema uint8

// The wire schemas vLLM has shipped, oldest first (release ranges are
// approximate; see ../shared/reference/vllm-wire.md §1.1).
const (
	// ArrayV090 is vLLM v0.9.0: batch [ts, events]; BlockStored
	// [tag, block_hashes, parent_block_hash, token_ids, block_size,
	// lora_id]; BlockRemoved [tag, block_hashes].
	ArrayV090 Schema = iota + 1
	// ArrayMedium is ≈v0.9.1–v0.11: batch [ts, events, data_parallel_rank];
	// medium appended to BlockStored and BlockRemoved.
	ArrayMedium
	// ArrayLoRAName is ≈v0.12–v0.14: lora_name appended to BlockStored.
	ArrayLoRAName
	// ArrayLast is ≈v0.16–v0.23, the last positional releases: extra_keys,
	// group_idx, kv_cache_spec_kind and kv_cache_spec_sliding_window
	// appended to BlockStored, group_idx to BlockRemoved.
	ArrayLast
	// MapCurrent is vLLM after PR #42892 (v0.26.0 and later): events are
	// maps tagged "type", fields with a default are omitted when None; the
	// batch stays an array.
	MapCurrent
	// MapNewest is newer vLLM main: MapCurrent plus locality, ownership and
	// session_id on BlockStored, and locality and ownership on BlockRemoved.
	MapNewest
)

// String names the schema.
func (s Schema) String() string {
	switch s {
	case ArrayV090:
		return "array_v0_9_0"
	case ArrayMedium:
		return "array_medium"
	case ArrayLoRAName:
		return "array_lora_name"
	case ArrayLast:
		return "array_last"
	case MapCurrent:
		return "map_current"
	case MapNewest:
		return "map_newest"
	}
	return fmt.Sprintf("Schema(%d)", uint8(s))
}

// fieldSpec is one declared field: its id, wire name, and whether it has a
// default (None) that map encoding omits.
type fieldSpec struct {
	f          field
	name       string
	hasDefault bool
}

var (
	storedFields = []fieldSpec{
		{fBlockHashes, "block_hashes", false},
		{fParent, "parent_block_hash", false},
		{fTokenIDs, "token_ids", false},
		{fBlockSize, "block_size", false},
		{fLoRAID, "lora_id", false},
		{fMedium, "medium", false},
		{fLoRAName, "lora_name", false},
		{fExtraKeys, "extra_keys", true},
		{fGroupIdx, "group_idx", true},
		{fSpecKind, "kv_cache_spec_kind", true},
		{fSlidingWindow, "kv_cache_spec_sliding_window", true},
		{fLocality, "locality", true},
		{fOwnership, "ownership", true},
		{fSessionID, "session_id", true},
	}
	removedFields = []fieldSpec{
		{fBlockHashes, "block_hashes", false},
		{fMedium, "medium", false},
		{fGroupIdx, "group_idx", true},
		{fLocality, "locality", true},
		{fOwnership, "ownership", true},
	}
)

// storedCount and removedCount are how many leading fields of storedFields
// and removedFields each schema declares.
var (
	storedCount  = [...]int{ArrayV090: 5, ArrayMedium: 6, ArrayLoRAName: 7, ArrayLast: 11, MapCurrent: 11, MapNewest: 14}
	removedCount = [...]int{ArrayV090: 1, ArrayMedium: 2, ArrayLoRAName: 2, ArrayLast: 3, MapCurrent: 3, MapNewest: 5}
)

// declared returns the fields type t declares in schema s.
func (s Schema) declared(t EventType) []fieldSpec {
	switch t {
	case BlockStored:
		return storedFields[:storedCount[s]]
	case BlockRemoved:
		return removedFields[:removedCount[s]]
	}
	return nil
}

// AppendBatch appends b encoded exactly as vLLM's msgspec encoder writes a
// KVEventBatch of schema s: the bytes of the third ZeroMQ frame. Fields the
// schema does not declare are dropped; a batch without a valid
// DataParallelRank gets 0 in 3-element schemas, as vLLM's publisher fills
// in its rank. Block hashes keep the form they were built with (integer or
// bytes).
func AppendBatch(dst []byte, b *Batch, s Schema) ([]byte, error) {
	if s < ArrayV090 || s > MapNewest {
		return dst, fmt.Errorf("kvevents: unknown schema %d", uint8(s))
	}
	if s == ArrayV090 {
		dst = append(dst, 0x92)
	} else {
		dst = append(dst, 0x93)
	}
	dst = binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(b.TS))
	dst = appendArrayHeader(dst, len(b.Events))
	for i := range b.Events {
		var err error
		if dst, err = AppendEvent(dst, &b.Events[i], s); err != nil {
			return dst, err
		}
	}
	if s != ArrayV090 {
		dst = appendInt(dst, b.DataParallelRank.V)
	}
	return dst, nil
}

// AppendEvent appends one event encoded as schema s declares it.
func AppendEvent(dst []byte, e *Event, s Schema) ([]byte, error) {
	if e.Type < BlockStored || e.Type > AllBlocksCleared {
		return dst, fmt.Errorf("kvevents: cannot encode event type %v", e.Type)
	}
	fields := s.declared(e.Type)
	tag := e.Type.String()
	if s < MapCurrent {
		dst = appendArrayHeader(dst, 1+len(fields))
		dst = appendStr(dst, tag)
		for _, f := range fields {
			dst = appendField(dst, e, f.f)
		}
		return dst, nil
	}
	// msgspec map structs: header width from the declared field count,
	// value from the fields actually written.
	count := 1
	for _, f := range fields {
		if !f.hasDefault || !isNone(e, f.f) {
			count++
		}
	}
	dst = appendMapHeader(dst, 1+len(fields), count)
	dst = appendStr(appendStr(dst, "type"), tag)
	for _, f := range fields {
		if f.hasDefault && isNone(e, f.f) {
			continue
		}
		dst = appendField(appendStr(dst, f.name), e, f.f)
	}
	return dst, nil
}

func isNone(e *Event, f field) bool {
	switch f {
	case fExtraKeys:
		return e.ExtraKeys == nil
	case fGroupIdx:
		return !e.GroupIdx.Valid
	case fSpecKind:
		return !e.KVCacheSpecKind.Valid
	case fSlidingWindow:
		return !e.KVCacheSpecSlidingWindow.Valid
	case fLocality:
		return !e.Locality.Valid
	case fOwnership:
		return !e.Ownership.Valid
	case fSessionID:
		return !e.SessionID.Valid
	}
	return false
}

func appendField(dst []byte, e *Event, f field) []byte {
	switch f {
	case fBlockHashes:
		dst = appendArrayHeader(dst, len(e.BlockHashes))
		for _, h := range e.BlockHashes {
			dst = appendHash(dst, h)
		}
		return dst
	case fParent:
		if !e.ParentBlockHash.Valid {
			return append(dst, 0xc0)
		}
		return appendHash(dst, e.ParentBlockHash.V)
	case fTokenIDs:
		dst = appendArrayHeader(dst, len(e.TokenIDs))
		for _, t := range e.TokenIDs {
			dst = appendUint(dst, uint64(t))
		}
		return dst
	case fBlockSize:
		return appendInt(dst, int64(e.BlockSize))
	case fLoRAID:
		return appendNullInt(dst, e.LoRAID)
	case fMedium:
		return appendNullStr(dst, e.Medium)
	case fLoRAName:
		return appendNullStr(dst, e.LoRAName)
	case fExtraKeys:
		if e.ExtraKeys == nil {
			return append(dst, 0xc0)
		}
		return append(dst, e.ExtraKeys...)
	case fGroupIdx:
		return appendNullInt(dst, e.GroupIdx)
	case fSpecKind:
		return appendNullStr(dst, e.KVCacheSpecKind)
	case fSlidingWindow:
		return appendNullInt(dst, e.KVCacheSpecSlidingWindow)
	case fLocality:
		return appendNullStr(dst, e.Locality)
	case fOwnership:
		return appendNullStr(dst, e.Ownership)
	case fSessionID:
		return appendNullStr(dst, e.SessionID)
	}
	return append(dst, 0xc0)
}

func appendHash(dst []byte, h Hash) []byte {
	switch h.form {
	case hashBytes:
		return appendBin(dst, h.raw[:h.n])
	case hashInt:
		return appendInt(dst, int64(h.v))
	}
	return appendUint(dst, h.v)
}

func appendNullInt(dst []byte, v Null[int64]) []byte {
	if !v.Valid {
		return append(dst, 0xc0)
	}
	return appendInt(dst, v.V)
}

func appendNullStr(dst []byte, v Null[string]) []byte {
	if !v.Valid {
		return append(dst, 0xc0)
	}
	return appendStr(dst, v.V)
}

// appendUint writes v in msgpack's smallest unsigned form, as msgspec does.
func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

// appendInt writes v in msgpack's smallest form: unsigned forms for
// non-negative values, signed forms for negative ones.
func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(dst, uint64(v))
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	switch n := len(b); {
	case n <= math.MaxUint8:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
	}
	return append(dst, b...)
}

func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
}

// appendMapHeader writes msgspec's struct map header: the width chosen from
// the declared entry count, the value the written count.
func appendMapHeader(dst []byte, declared, count int) []byte {
	switch {
	case declared < 16:
		return append(dst, 0x80|byte(count))
	case declared <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xde), uint16(count))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), uint32(count))
}
