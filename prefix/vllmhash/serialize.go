package vllmhash

import "encoding/binary"

// This file holds the two serializers vLLM hashes with, written for the
// handful of Python types a block tuple contains: bytes, int, str, tuple and
// None. They produce exactly what CPython's pickle (protocol 5, the C
// accelerator) and cbor2.dumps(canonical=True) produce for those types.

// appendPickleBlock appends pickle.dumps((parent, tuple(tokens), extra), 5).
func appendPickleBlock(dst []byte, parent Digest, tokens []uint32, extra []Key) []byte {
	p := newPickler(dst)
	p.bytes(parent.b[:parent.n])
	p.boundary()
	switch len(tokens) {
	case 0:
		p.op(opEmptyTuple)
	case 1, 2, 3:
		for _, t := range tokens {
			p.int(int64(t))
			p.boundary()
		}
		p.op(opTuple1 + byte(len(tokens)-1))
		p.memoize()
	default:
		p.op(opMark)
		for _, t := range tokens {
			p.int(int64(t))
			p.boundary()
		}
		p.op(opTuple)
		p.memoize()
	}
	p.boundary()
	p.keys(extra)
	p.boundary()
	p.op(opTuple3)
	p.memoize()
	p.boundary()
	return p.finish()
}

const (
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opProto          = 0x80
	opFrame          = 0x95
	opStop           = '.'
	opMark           = '('
	opTuple          = 't'
	opEmptyTuple     = ')'
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opMemoize        = 0x94
	opNone           = 'N'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opLong1          = 0x8a
	opShortBinUnicod = 0x8c
	opBinUnicode     = 'X'
	opBinUnicode8    = 0x8d
	opShortBinBytes  = 'C'
	opBinBytes       = 'B'
	opBinBytes8      = 0x8e

	frameHeaderSize = 9
	frameSizeMin    = 4
	frameSizeTarget = 64 * 1024
)

// pickler writes protocol-5 opcodes with CPython's framing: frames start
// lazily on the first write, are committed at an opcode boundary once they
// reach 64 KiB, and a final frame shorter than 4 bytes gets no header.
// A str or bytes of 64 KiB or more is written outside any frame.
type pickler struct {
	buf        []byte
	frameStart int // index of the reserved frame header, or -1
	memoLen    int // objects memoized so far (the next memo index)
	// singles remembers where CPython's singleton objects (the empty and
	// one-character Latin-1 str, the empty and one-byte bytes) were
	// memoized: the same object again is written as a memo reference.
	singles  [8]single
	nsingles int
	more     []single // beyond 8, rare
}

type single struct {
	kind keyKind
	val  string
	idx  int
}

func newPickler(dst []byte) pickler {
	return pickler{buf: append(dst, opProto, 5), frameStart: -1}
}

func (p *pickler) reserve() {
	if p.frameStart < 0 {
		p.frameStart = len(p.buf)
		p.buf = append(p.buf, make([]byte, frameHeaderSize)...)
	}
}

func (p *pickler) op(ops ...byte) {
	p.reserve()
	p.buf = append(p.buf, ops...)
}

func (p *pickler) commit() {
	if p.frameStart < 0 {
		return
	}
	n := len(p.buf) - p.frameStart - frameHeaderSize
	if n >= frameSizeMin {
		p.buf[p.frameStart] = opFrame
		binary.LittleEndian.PutUint64(p.buf[p.frameStart+1:], uint64(n))
	} else {
		copy(p.buf[p.frameStart:], p.buf[p.frameStart+frameHeaderSize:])
		p.buf = p.buf[:len(p.buf)-frameHeaderSize]
	}
	p.frameStart = -1
}

// boundary is CPython's _Pickler_OpcodeBoundary, run after each save().
func (p *pickler) boundary() {
	if p.frameStart >= 0 && len(p.buf)-p.frameStart-frameHeaderSize >= frameSizeTarget {
		p.commit()
	}
}

func (p *pickler) finish() []byte {
	p.op(opStop)
	p.commit()
	return p.buf
}

func (p *pickler) memoize() {
	p.op(opMemoize)
	p.memoLen++
}

// isSingleton reports whether CPython returns one shared object for every
// str or bytes equal to v: empty, or one Latin-1 character or byte.
func isSingleton(kind keyKind, v string) bool {
	if kind == kindBytes {
		return len(v) <= 1
	}
	if len(v) == 0 || len(v) == 1 {
		return true // ASCII
	}
	return len(v) == 2 && (v[0] == 0xc2 || v[0] == 0xc3) // U+0080..U+00FF in UTF-8
}

// memoRef writes a reference to an already memoized singleton equal to v
// and reports whether there was one; otherwise it records that the object
// about to be saved will get the next memo index.
func (p *pickler) memoRef(kind keyKind, v string) bool {
	if !isSingleton(kind, v) {
		return false
	}
	n := p.nsingles + len(p.more)
	for i := range n {
		var e *single
		if i < p.nsingles {
			e = &p.singles[i]
		} else {
			e = &p.more[i-p.nsingles]
		}
		if e.kind == kind && e.val == v {
			p.reserve()
			if e.idx < 256 {
				p.buf = append(p.buf, opBinGet, byte(e.idx))
			} else {
				p.buf = binary.LittleEndian.AppendUint32(append(p.buf, opLongBinGet), uint32(e.idx))
			}
			return true
		}
	}
	if p.nsingles < len(p.singles) {
		p.singles[p.nsingles] = single{kind, v, p.memoLen}
		p.nsingles++
	} else {
		p.more = append(p.more, single{kind, v, p.memoLen})
	}
	return false
}

func (p *pickler) int(v int64) {
	p.reserve()
	switch {
	case v >= 0 && v <= 0xff:
		p.buf = append(p.buf, opBinInt1, byte(v))
	case v >= 0 && v <= 0xffff:
		p.buf = append(p.buf, opBinInt2, byte(v), byte(v>>8))
	case v >= -1<<31 && v < 1<<31:
		p.buf = binary.LittleEndian.AppendUint32(append(p.buf, opBinInt), uint32(int32(v)))
	default:
		// LONG1: minimal little-endian two's complement.
		var le [8]byte
		binary.LittleEndian.PutUint64(le[:], uint64(v))
		n := 8
		for n > 1 {
			top, next := le[n-1], le[n-2]
			if (top == 0 && next&0x80 == 0) || (top == 0xff && next&0x80 != 0) {
				n--
				continue
			}
			break
		}
		if v > 0 && le[n-1]&0x80 != 0 { // cannot happen for int64, kept for clarity
			n++
		}
		p.buf = append(append(p.buf, opLong1, byte(n)), le[:n]...)
	}
}

func (p *pickler) str(s string) {
	if p.memoRef(kindStr, s) {
		return
	}
	p.beginLarge(len(s))
	switch n := len(s); {
	case n <= 0xff:
		p.buf = append(p.buf, opShortBinUnicod, byte(n))
	case uint64(n) <= 0xffffffff:
		p.buf = binary.LittleEndian.AppendUint32(append(p.buf, opBinUnicode), uint32(n))
	default:
		p.buf = binary.LittleEndian.AppendUint64(append(p.buf, opBinUnicode8), uint64(n))
	}
	p.buf = append(p.buf, s...)
	p.memoize()
}

// beginLarge starts writing a str or bytes object of n bytes. CPython writes
// objects of 64 KiB or more outside any frame: it commits the current frame
// and reopens one lazily after the data.
func (p *pickler) beginLarge(n int) {
	if n >= frameSizeTarget {
		p.commit()
		return
	}
	p.reserve()
}

func (p *pickler) bytes(b []byte) {
	if len(b) <= 1 && p.memoRef(kindBytes, string(b)) {
		return
	}
	p.beginLarge(len(b))
	switch n := len(b); {
	case n <= 0xff:
		p.buf = append(p.buf, opShortBinBytes, byte(n))
	case uint64(n) <= 0xffffffff:
		p.buf = binary.LittleEndian.AppendUint32(append(p.buf, opBinBytes), uint32(n))
	default:
		p.buf = binary.LittleEndian.AppendUint64(append(p.buf, opBinBytes8), uint64(n))
	}
	p.buf = append(p.buf, b...)
	p.memoize()
}

// keys saves the extra-keys tuple, or None when ks is nil.
func (p *pickler) keys(ks []Key) {
	if ks == nil {
		p.op(opNone)
		return
	}
	p.tuple(ks)
}

func (p *pickler) tuple(items []Key) {
	switch len(items) {
	case 0:
		p.op(opEmptyTuple)
		return
	case 1, 2, 3:
		for _, k := range items {
			p.key(k)
			p.boundary()
		}
		p.op(opTuple1 + byte(len(items)-1))
		p.memoize()
	default:
		p.op(opMark)
		for _, k := range items {
			p.key(k)
			p.boundary()
		}
		p.op(opTuple)
		p.memoize()
	}
}

func (p *pickler) key(k Key) {
	switch k.kind {
	case kindStr:
		p.str(k.s)
	case kindInt:
		p.int(k.i)
	case kindBytes:
		p.bytes([]byte(k.s))
	case kindTuple:
		p.tuple(k.items)
	default:
		p.op(opNone)
	}
}

// CBOR major types.
const (
	cborUint   = 0 << 5
	cborNegInt = 1 << 5
	cborBytes  = 2 << 5
	cborText   = 3 << 5
	cborArray  = 4 << 5
	cborNull   = 0xf6
)

// appendCBORBlock appends cbor2.dumps((parent, tuple(tokens), extra),
// canonical=True).
func appendCBORBlock(dst []byte, parent Digest, tokens []uint32, extra []Key) []byte {
	dst = append(dst, cborArray|3)
	dst = appendCBORHead(dst, cborBytes, uint64(parent.n))
	dst = append(dst, parent.b[:parent.n]...)
	dst = appendCBORHead(dst, cborArray, uint64(len(tokens)))
	for _, t := range tokens {
		dst = appendCBORHead(dst, cborUint, uint64(t))
	}
	if extra == nil {
		return append(dst, cborNull)
	}
	return appendCBORKey(dst, Tuple(extra...))
}

func appendCBORKey(dst []byte, k Key) []byte {
	switch k.kind {
	case kindStr:
		return appendCBORString(dst, k.s)
	case kindInt:
		if k.i >= 0 {
			return appendCBORHead(dst, cborUint, uint64(k.i))
		}
		return appendCBORHead(dst, cborNegInt, uint64(-1-k.i))
	case kindBytes:
		return append(appendCBORHead(dst, cborBytes, uint64(len(k.s))), k.s...)
	case kindTuple:
		dst = appendCBORHead(dst, cborArray, uint64(len(k.items)))
		for _, it := range k.items {
			dst = appendCBORKey(dst, it)
		}
		return dst
	}
	return append(dst, cborNull)
}

func appendCBORString(dst []byte, s string) []byte {
	return append(appendCBORHead(dst, cborText, uint64(len(s))), s...)
}

func appendCBORHead(dst []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= 0xff:
		return append(dst, major|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, major|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(dst, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, major|27), n)
}
