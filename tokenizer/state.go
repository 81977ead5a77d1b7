package tokenizer

import "unicode/utf8"

// state is the per-call scratch space of an encoder; the Tokenizer keeps a sync.Pool of them,
// so steady-state encoding does not allocate.
type state struct {
	syms  []uint32
	ranks []uint32
	links []symbol
	heap  heap
	buf   []byte
	valid []byte
	spans [][]span
	cache pieceCache
}

func newState(cacheSize int) *state {
	return &state{cache: newPieceCache(cacheSize)}
}

// pieceCache is a direct-mapped cache of short pieces and their ids, stored inline so that
// neither lookups nor inserts allocate. A collision simply overwrites the slot. Callers pass the
// piece's hashWord (with the model's seed), which the word table uses too.
type pieceCache struct {
	entries []cacheEntry
}

const (
	cacheKeyMax = 23
	cacheIDsMax = 7
)

type cacheEntry struct {
	keyLen uint8
	nIDs   uint8
	key    [cacheKeyMax]byte
	ids    [cacheIDsMax]uint32
}

func newPieceCache(size int) pieceCache {
	if size <= 0 {
		return pieceCache{}
	}
	n := 1
	for n < size {
		n <<= 1
	}
	return pieceCache{entries: make([]cacheEntry, n)}
}

func (c *pieceCache) get(h uint64, piece string) ([]uint32, bool) {
	if len(c.entries) == 0 || len(piece) > cacheKeyMax {
		return nil, false
	}
	e := &c.entries[h&uint64(len(c.entries)-1)]
	if e.nIDs == 0 || int(e.keyLen) != len(piece) || string(e.key[:e.keyLen]) != piece {
		return nil, false
	}
	return e.ids[:e.nIDs], true
}

func (c *pieceCache) put(h uint64, piece string, ids []uint32) {
	if len(c.entries) == 0 || len(piece) > cacheKeyMax || len(ids) > cacheIDsMax || len(ids) == 0 {
		return
	}
	e := &c.entries[h&uint64(len(c.entries)-1)]
	e.keyLen = uint8(copy(e.key[:], piece))
	e.nIDs = uint8(copy(e.ids[:], ids))
}

// appendLossy appends s to b with every maximal invalid UTF-8 subsequence replaced by U+FFFD,
// the way Rust's String::from_utf8_lossy (and Python's errors="replace") does.
func appendLossy(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || n > 1 {
			b = append(b, s[i:i+n]...)
			i += n
			continue
		}
		b = append(b, "\uFFFD"...)
		i += invalidLen(s[i:])
	}
	return b
}

// invalidLen returns the length of the maximal subpart of an ill-formed sequence at s[0].
func invalidLen(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	k := 1
	for ; k <= need && k < len(s); k++ {
		x := s[k]
		if k == 1 {
			if x < lo || x > hi {
				break
			}
		} else if x < 0x80 || x > 0xBF {
			break
		}
	}
	return k
}
