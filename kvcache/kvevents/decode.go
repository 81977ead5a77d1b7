package kvevents

import (
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every decoding error: the payload is not a
// KVEventBatch this package understands (truncated, garbage, a known field
// of the wrong type). Callers count it and move on to the next message.
var ErrMalformed = errors.New("kvevents: malformed event batch")

// Decode decodes one KVEventBatch payload into b, reusing b's slices so
// that steady-state decoding does not allocate.
//
// It accepts every schema vLLM has published: the batch as a 2- or
// 3-element array (or a map with ts/events/data_parallel_rank keys); events
// as tagged arrays ["BlockStored", field...] (vLLM ≤ 0.23) or tagged maps
// {"type": "BlockStored", ...} (newer); block hashes as unsigned or signed
// integers, bin, or str (decimal or hex). Unknown event types, unknown map
// keys and surplus array elements are skipped. Length prefixes are checked
// against the bytes that remain, so a hostile prefix cannot make Decode
// allocate more than a bounded multiple of len(payload): at most 48 bytes
// per payload byte (a one-byte hash becomes a 48-byte Hash).
//
// Event.ExtraKeys aliases payload; the rest of b does not. On error b holds
// a partial batch and must not be applied.
func Decode(payload []byte, b *Batch) error {
	r := reader{b: payload}
	b.TS = 0
	b.Events = b.Events[:0]
	b.DataParallelRank = Null[int64]{}
	b.Skipped = 0
	if err := r.batch(b); err != nil {
		return err
	}
	if r.i != len(r.b) {
		return r.errf("%d trailing bytes", len(r.b)-r.i)
	}
	return nil
}

type reader struct {
	b []byte
	i int
}

func (r *reader) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.i, fmt.Sprintf(format, args...))
}

func (r *reader) eof() error { return r.errf("unexpected end of payload") }

func (r *reader) batch(b *Batch) error {
	n, isMap, err := r.container()
	if err != nil {
		return err
	}
	if isMap {
		for range n {
			key, err := r.str()
			if err != nil {
				return err
			}
			switch string(key) {
			case "ts":
				err = r.ts(b)
			case "events":
				err = r.events(b)
			case "data_parallel_rank":
				b.DataParallelRank, err = r.nullInt()
			default:
				err = r.skip()
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if n < 2 {
		return r.errf("batch array of %d elements, want 2 or 3", n)
	}
	if err := r.ts(b); err != nil {
		return err
	}
	if err := r.events(b); err != nil {
		return err
	}
	if n >= 3 {
		if b.DataParallelRank, err = r.nullInt(); err != nil {
			return err
		}
	}
	for range n - 3 {
		if err := r.skip(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) ts(b *Batch) error {
	if r.i >= len(r.b) {
		return r.eof()
	}
	switch c := r.b[r.i]; c {
	case 0xcb:
		if len(r.b)-r.i < 9 {
			return r.eof()
		}
		b.TS = math.Float64frombits(be64(r.b[r.i+1:]))
		r.i += 9
	case 0xca:
		if len(r.b)-r.i < 5 {
			return r.eof()
		}
		b.TS = float64(math.Float32frombits(be32(r.b[r.i+1:])))
		r.i += 5
	default:
		v, neg, err := r.intBits()
		if err != nil {
			return err
		}
		if neg {
			b.TS = float64(int64(v))
		} else {
			b.TS = float64(v)
		}
	}
	return nil
}

func (r *reader) events(b *Batch) error {
	n, err := r.arrayLen()
	if err != nil {
		return err
	}
	// Size the slice once when n is plausible: no known event is shorter
	// than 14 bytes (["BlockRemoved"]), so this costs at most 336/14 = 24
	// bytes of Event per payload byte.
	if cap(b.Events) < n && n <= (len(r.b)-r.i)/14 {
		b.Events = append(make([]Event, 0, n), b.Events...)
	}
	for range n {
		var e *Event
		if len(b.Events) < cap(b.Events) {
			b.Events = b.Events[:len(b.Events)+1]
			e = &b.Events[len(b.Events)-1]
			*e = Event{BlockHashes: e.BlockHashes[:0], TokenIDs: e.TokenIDs[:0]}
		} else {
			b.Events = append(b.Events, Event{})
			e = &b.Events[len(b.Events)-1]
		}
		known, err := r.event(e)
		if err != nil {
			return err
		}
		if !known {
			b.Events = b.Events[:len(b.Events)-1]
			b.Skipped++
		}
	}
	return nil
}

// field identifies an event field, in vLLM's declaration order.
type field uint8

const (
	fUnknown field = iota
	fBlockHashes
	fParent
	fTokenIDs
	fBlockSize
	fLoRAID
	fMedium
	fLoRAName
	fExtraKeys
	fGroupIdx
	fSpecKind
	fSlidingWindow
	fLocality
	fOwnership
	fSessionID
)

// arrayFields lists each event type's fields by array position (after the
// tag). Positions past the list are skipped.
var arrayFields = [...][]field{
	BlockStored: {fBlockHashes, fParent, fTokenIDs, fBlockSize, fLoRAID, fMedium, fLoRAName,
		fExtraKeys, fGroupIdx, fSpecKind, fSlidingWindow, fLocality, fOwnership, fSessionID},
	BlockRemoved:     {fBlockHashes, fMedium, fGroupIdx, fLocality, fOwnership},
	AllBlocksCleared: {},
}

func fieldByName(k []byte) field {
	// Dispatch on length first: one short comparison per candidate.
	switch len(k) {
	case 6:
		if string(k) == "medium" {
			return fMedium
		}
	case 7:
		if string(k) == "lora_id" {
			return fLoRAID
		}
	case 8:
		if string(k) == "locality" {
			return fLocality
		}
	case 9:
		switch string(k) {
		case "token_ids":
			return fTokenIDs
		case "lora_name":
			return fLoRAName
		case "group_idx":
			return fGroupIdx
		case "ownership":
			return fOwnership
		}
	case 10:
		switch string(k) {
		case "block_size":
			return fBlockSize
		case "extra_keys":
			return fExtraKeys
		case "session_id":
			return fSessionID
		}
	case 12:
		if string(k) == "block_hashes" {
			return fBlockHashes
		}
	case 17:
		if string(k) == "parent_block_hash" {
			return fParent
		}
	case 18:
		if string(k) == "kv_cache_spec_kind" {
			return fSpecKind
		}
	case 28:
		if string(k) == "kv_cache_spec_sliding_window" {
			return fSlidingWindow
		}
	}
	return fUnknown
}

func typeByName(k []byte) EventType {
	switch string(k) {
	case "BlockStored":
		return BlockStored
	case "BlockRemoved":
		return BlockRemoved
	case "AllBlocksCleared":
		return AllBlocksCleared
	}
	return 0
}

// event decodes one tagged event into e. It reports false for an event of
// an unknown type (or an untagged one), which it skips.
func (r *reader) event(e *Event) (bool, error) {
	n, isMap, err := r.container()
	if err != nil {
		return false, err
	}
	if !isMap {
		if n == 0 {
			return false, nil
		}
		if r.i < len(r.b) && !isStr(r.b[r.i]) {
			// Not a tagged event: skip it whole.
			return false, r.skipN(n)
		}
		tag, err := r.str()
		if err != nil {
			return false, err
		}
		e.Type = typeByName(tag)
		if e.Type == 0 {
			return false, r.skipN(n - 1)
		}
		fields := arrayFields[e.Type]
		for pos := range n - 1 {
			f := fUnknown
			if pos < len(fields) {
				f = fields[pos]
			}
			if err := r.field(f, e); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	for range n {
		key, err := r.str()
		if err != nil {
			return false, err
		}
		if string(key) == "type" {
			tag, err := r.str()
			if err != nil {
				return false, err
			}
			e.Type = typeByName(tag)
			continue
		}
		if err := r.field(fieldByName(key), e); err != nil {
			return false, err
		}
	}
	return e.Type != 0, nil
}

func (r *reader) field(f field, e *Event) error {
	var err error
	switch f {
	case fBlockHashes:
		e.BlockHashes, err = r.hashes(e.BlockHashes[:0])
	case fParent:
		if r.null() {
			return nil
		}
		var h Hash
		h, err = r.hash()
		e.ParentBlockHash = Some(h)
	case fTokenIDs:
		e.TokenIDs, err = r.tokens(e.TokenIDs[:0])
	case fBlockSize:
		var v Null[int64]
		v, err = r.nullInt()
		if err == nil && (v.V < 0 || v.V > math.MaxInt32) {
			err = r.errf("block_size %d out of range", v.V)
		}
		e.BlockSize = int(v.V)
	case fLoRAID:
		e.LoRAID, err = r.nullInt()
	case fMedium:
		e.Medium, err = r.nullStr()
	case fLoRAName:
		e.LoRAName, err = r.nullStr()
	case fExtraKeys:
		if r.null() {
			return nil
		}
		start := r.i
		err = r.skip()
		e.ExtraKeys = r.b[start:r.i:r.i]
	case fGroupIdx:
		e.GroupIdx, err = r.nullInt()
	case fSpecKind:
		e.KVCacheSpecKind, err = r.nullStr()
	case fSlidingWindow:
		e.KVCacheSpecSlidingWindow, err = r.nullInt()
	case fLocality:
		e.Locality, err = r.nullStr()
	case fOwnership:
		e.Ownership, err = r.nullStr()
	case fSessionID:
		e.SessionID, err = r.nullStr()
	default:
		err = r.skip()
	}
	return err
}

func (r *reader) hashes(dst []Hash) ([]Hash, error) {
	n, err := r.arrayLen()
	if err != nil {
		return dst, err
	}
	if cap(dst) < n {
		dst = make([]Hash, n)
	} else {
		dst = dst[:n]
	}
	for k := range dst {
		// Fast path: vLLM's default integer hashes.
		if r.i+9 <= len(r.b) && r.b[r.i] == 0xcf {
			dst[k] = Hash{v: be64(r.b[r.i+1:])}
			r.i += 9
			continue
		}
		h, err := r.hash()
		if err != nil {
			return dst[:0], err
		}
		dst[k] = h
	}
	return dst, nil
}

func (r *reader) hash() (Hash, error) {
	if r.i >= len(r.b) {
		return Hash{}, r.eof()
	}
	c := r.b[r.i]
	switch {
	case c <= 0x7f:
		r.i++
		return Hash{v: uint64(c)}, nil
	case c == 0xcf:
		if len(r.b)-r.i < 9 {
			return Hash{}, r.eof()
		}
		v := be64(r.b[r.i+1:])
		r.i += 9
		return Hash{v: v}, nil
	case c == 0xc4 || c == 0xc5 || c == 0xc6:
		b, err := r.bin()
		if err != nil {
			return Hash{}, err
		}
		h, err := HashBytes(b)
		if err != nil {
			return Hash{}, r.errf("%v", err)
		}
		return h, nil
	case isStr(c):
		s, err := r.str()
		if err != nil {
			return Hash{}, err
		}
		return r.strHash(s)
	}
	v, neg, err := r.intBits()
	if err != nil {
		return Hash{}, err
	}
	if neg {
		return HashInt64(int64(v)), nil
	}
	return HashUint64(v), nil
}

// strHash accepts a hash sent as text: decimal, or hex of 1 to 32 bytes.
func (r *reader) strHash(s []byte) (Hash, error) {
	if len(s) > 0 && len(s) <= 20 {
		var v uint64
		ok := true
		for _, c := range s {
			d := uint64(c - '0')
			if c < '0' || c > '9' || v > (math.MaxUint64-d)/10 {
				ok = false
				break
			}
			v = v*10 + d
		}
		if ok {
			return HashUint64(v), nil
		}
	}
	if len(s) > 0 && len(s) <= 64 && len(s)%2 == 0 {
		var buf [32]byte
		ok := true
		for i := 0; i < len(s); i += 2 {
			hi, ok1 := unhex(s[i])
			lo, ok2 := unhex(s[i+1])
			if !ok1 || !ok2 {
				ok = false
				break
			}
			buf[i/2] = hi<<4 | lo
		}
		if ok {
			return HashBytes(buf[:len(s)/2])
		}
	}
	return Hash{}, r.errf("block hash string %q is neither decimal nor hex", s)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// tokens decodes a list of token ids; the hot loop of decoding.
func (r *reader) tokens(dst []uint32) ([]uint32, error) {
	n, err := r.arrayLen()
	if err != nil {
		return dst, err
	}
	if cap(dst) < n {
		dst = make([]uint32, n)
	} else {
		dst = dst[:n]
	}
	b := r.b[r.i:]
	j := 0
	for k := range dst {
		if j >= len(b) {
			r.i += j
			return dst[:0], r.eof()
		}
		c := b[j]
		if c <= 0x7f {
			dst[k] = uint32(c)
			j++
			continue
		}
		switch c {
		case 0xcd:
			if len(b)-j < 3 {
				r.i += j
				return dst[:0], r.eof()
			}
			dst[k] = uint32(b[j+1])<<8 | uint32(b[j+2])
			j += 3
		case 0xce:
			if len(b)-j < 5 {
				r.i += j
				return dst[:0], r.eof()
			}
			dst[k] = uint32(b[j+1])<<24 | uint32(b[j+2])<<16 | uint32(b[j+3])<<8 | uint32(b[j+4])
			j += 5
		case 0xcc:
			if len(b)-j < 2 {
				r.i += j
				return dst[:0], r.eof()
			}
			dst[k] = uint32(b[j+1])
			j += 2
		default:
			r.i += j
			v, neg, err := r.intBits()
			if err != nil {
				return dst[:0], err
			}
			if neg || v > math.MaxUint32 {
				return dst[:0], r.errf("token id out of range")
			}
			dst[k] = uint32(v)
			j = 0
			b = r.b[r.i:]
		}
	}
	r.i += j
	return dst, nil
}

// intBits reads any msgpack integer. neg reports a negative value, whose
// two's complement is v.
func (r *reader) intBits() (v uint64, neg bool, err error) {
	if r.i >= len(r.b) {
		return 0, false, r.eof()
	}
	c := r.b[r.i]
	size := 0
	switch {
	case c <= 0x7f:
		r.i++
		return uint64(c), false, nil
	case c >= 0xe0:
		r.i++
		return uint64(int64(int8(c))), true, nil
	case c == 0xcc || c == 0xd0:
		size = 1
	case c == 0xcd || c == 0xd1:
		size = 2
	case c == 0xce || c == 0xd2:
		size = 4
	case c == 0xcf || c == 0xd3:
		size = 8
	default:
		return 0, false, r.errf("want an integer, got type byte 0x%02x", c)
	}
	if len(r.b)-r.i < 1+size {
		return 0, false, r.eof()
	}
	p := r.b[r.i+1:]
	r.i += 1 + size
	switch c {
	case 0xcc:
		return uint64(p[0]), false, nil
	case 0xcd:
		return uint64(be16(p)), false, nil
	case 0xce:
		return uint64(be32(p)), false, nil
	case 0xcf:
		return be64(p), false, nil
	case 0xd0:
		x := int64(int8(p[0]))
		return uint64(x), x < 0, nil
	case 0xd1:
		x := int64(int16(be16(p)))
		return uint64(x), x < 0, nil
	case 0xd2:
		x := int64(int32(be32(p)))
		return uint64(x), x < 0, nil
	default:
		x := int64(be64(p))
		return uint64(x), x < 0, nil
	}
}

func (r *reader) nullInt() (Null[int64], error) {
	if r.null() {
		return Null[int64]{}, nil
	}
	v, neg, err := r.intBits()
	if err != nil {
		return Null[int64]{}, err
	}
	if !neg && v > math.MaxInt64 {
		return Null[int64]{}, r.errf("integer %d overflows int64", v)
	}
	return Some(int64(v)), nil
}

func (r *reader) nullStr() (Null[string], error) {
	if r.null() {
		return Null[string]{}, nil
	}
	s, err := r.str()
	if err != nil {
		return Null[string]{}, err
	}
	return Some(intern(s)), nil
}

// intern returns well-known strings without allocating.
func intern(b []byte) string {
	switch len(b) {
	case 3:
		switch string(b) {
		case "GPU":
			return "GPU"
		case "CPU":
			return "CPU"
		}
	case 5:
		if string(b) == "LOCAL" {
			return "LOCAL"
		}
	case 6:
		if string(b) == "REMOTE" {
			return "REMOTE"
		}
	case 7:
		if string(b) == "STORAGE" {
			return "STORAGE"
		}
	case 14:
		switch string(b) {
		case "full_attention":
			return "full_attention"
		case "sliding_window":
			return "sliding_window"
		}
	}
	return string(b)
}

func (r *reader) null() bool {
	if r.i < len(r.b) && r.b[r.i] == 0xc0 {
		r.i++
		return true
	}
	return false
}

func isStr(c byte) bool { return c&0xe0 == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb }

func (r *reader) str() ([]byte, error) {
	// Fast path: fixstr, which every key and tag vLLM sends is.
	if r.i < len(r.b) {
		if c := r.b[r.i]; c&0xe0 == 0xa0 {
			if n := int(c & 0x1f); n < len(r.b)-r.i {
				s := r.b[r.i+1 : r.i+1+n]
				r.i += 1 + n
				return s, nil
			}
		}
	}
	return r.strSlow()
}

func (r *reader) strSlow() ([]byte, error) {
	if r.i >= len(r.b) {
		return nil, r.eof()
	}
	c := r.b[r.i]
	var n, hdr int
	switch {
	case c&0xe0 == 0xa0:
		n, hdr = int(c&0x1f), 1
	case c == 0xd9:
		if len(r.b)-r.i < 2 {
			return nil, r.eof()
		}
		n, hdr = int(r.b[r.i+1]), 2
	case c == 0xda:
		if len(r.b)-r.i < 3 {
			return nil, r.eof()
		}
		n, hdr = int(be16(r.b[r.i+1:])), 3
	case c == 0xdb:
		if len(r.b)-r.i < 5 {
			return nil, r.eof()
		}
		n, hdr = len32(r.b[r.i+1:]), 5
	default:
		return nil, r.errf("want a string, got type byte 0x%02x", c)
	}
	if n > len(r.b)-r.i-hdr {
		return nil, r.errf("string of %d bytes exceeds the payload", n)
	}
	s := r.b[r.i+hdr : r.i+hdr+n]
	r.i += hdr + n
	return s, nil
}

func (r *reader) bin() ([]byte, error) {
	if r.i >= len(r.b) {
		return nil, r.eof()
	}
	var n, hdr int
	switch c := r.b[r.i]; c {
	case 0xc4:
		if len(r.b)-r.i < 2 {
			return nil, r.eof()
		}
		n, hdr = int(r.b[r.i+1]), 2
	case 0xc5:
		if len(r.b)-r.i < 3 {
			return nil, r.eof()
		}
		n, hdr = int(be16(r.b[r.i+1:])), 3
	case 0xc6:
		if len(r.b)-r.i < 5 {
			return nil, r.eof()
		}
		n, hdr = len32(r.b[r.i+1:]), 5
	default:
		return nil, r.errf("want bin, got type byte 0x%02x", c)
	}
	if n > len(r.b)-r.i-hdr {
		return nil, r.errf("bin of %d bytes exceeds the payload", n)
	}
	s := r.b[r.i+hdr : r.i+hdr+n]
	r.i += hdr + n
	return s, nil
}

// container reads an array or map header. Its length is checked against
// the remaining bytes (every element takes at least one byte).
func (r *reader) container() (n int, isMap bool, err error) {
	if r.i >= len(r.b) {
		return 0, false, r.eof()
	}
	c := r.b[r.i]
	hdr := 1
	switch {
	case c&0xf0 == 0x90:
		n = int(c & 0x0f)
	case c&0xf0 == 0x80:
		n, isMap = int(c&0x0f), true
	case c == 0xdc || c == 0xde:
		if len(r.b)-r.i < 3 {
			return 0, false, r.eof()
		}
		n, isMap, hdr = int(be16(r.b[r.i+1:])), c == 0xde, 3
	case c == 0xdd || c == 0xdf:
		if len(r.b)-r.i < 5 {
			return 0, false, r.eof()
		}
		n, isMap, hdr = len32(r.b[r.i+1:]), c == 0xdf, 5
	default:
		return 0, false, r.errf("want an array or map, got type byte 0x%02x", c)
	}
	r.i += hdr
	if rem := len(r.b) - r.i; n > rem || (isMap && n > rem/2) {
		return 0, false, r.errf("container of %d elements exceeds the payload", n)
	}
	return n, isMap, nil
}

func (r *reader) arrayLen() (int, error) {
	n, isMap, err := r.container()
	if err == nil && isMap {
		return 0, r.errf("want an array, got a map")
	}
	return n, err
}

// skip skips one value of any type, iteratively: nesting depth costs no
// stack and no memory.
func (r *reader) skip() error { return r.skipN(1) }

func (r *reader) skipN(pending int) error {
	for ; pending > 0; pending-- {
		if r.i >= len(r.b) {
			return r.eof()
		}
		c := r.b[r.i]
		var size int // bytes after the type byte, for scalars
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c&0xe0 == 0xa0: // fixstr
			size = int(c & 0x1f)
		case c&0xf0 == 0x90 || c&0xf0 == 0x80 || c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf:
			n, isMap, err := r.container()
			if err != nil {
				return err
			}
			if isMap {
				n *= 2
			}
			pending += n
			continue
		case c == 0xcc || c == 0xd0:
			size = 1
		case c == 0xcd || c == 0xd1:
			size = 2
		case c == 0xce || c == 0xd2 || c == 0xca:
			size = 4
		case c == 0xcf || c == 0xd3 || c == 0xcb:
			size = 8
		case c == 0xd4:
			size = 2
		case c == 0xd5:
			size = 3
		case c == 0xd6:
			size = 5
		case c == 0xd7:
			size = 9
		case c == 0xd8:
			size = 17
		case c == 0xc4 || c == 0xd9:
			if len(r.b)-r.i < 2 {
				return r.eof()
			}
			size = 1 + int(r.b[r.i+1])
		case c == 0xc5 || c == 0xda:
			if len(r.b)-r.i < 3 {
				return r.eof()
			}
			size = 2 + int(be16(r.b[r.i+1:]))
		case c == 0xc6 || c == 0xdb:
			if len(r.b)-r.i < 5 {
				return r.eof()
			}
			size = 4 + len32(r.b[r.i+1:])
		case c == 0xc7:
			if len(r.b)-r.i < 2 {
				return r.eof()
			}
			size = 2 + int(r.b[r.i+1])
		case c == 0xc8:
			if len(r.b)-r.i < 3 {
				return r.eof()
			}
			size = 3 + int(be16(r.b[r.i+1:]))
		case c == 0xc9:
			if len(r.b)-r.i < 5 {
				return r.eof()
			}
			size = 5 + len32(r.b[r.i+1:])
		default: // 0xc1, never used
			return r.errf("invalid type byte 0x%02x", c)
		}
		if size > len(r.b)-r.i-1 {
			return r.eof()
		}
		r.i += 1 + size
	}
	return nil
}

// len32 reads a 32-bit length prefix. It saturates below math.MaxInt32, so
// that neither the int conversion nor adding a header size can overflow on
// 32-bit platforms (where no payload that long exists).
func len32(b []byte) int { return int(min(be32(b), math.MaxInt32-16)) }

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }
