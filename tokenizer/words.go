package tokenizer

import (
	"math/bits"
	"strings"
)

// wordTable maps whole words (pre-tokenized pieces, as the model sees them: raw bytes for
// byte-level models) to the single token that is their complete encoding. Most words of real
// text are single tokens, and one lookup here replaces the whole merge loop for them.
//
// A word is in the table only when that is exact: with ignore_merges every vocabulary entry is
// (HF returns a word found in the vocabulary as is), otherwise only the tokens whose own encoding,
// computed by the merge loop when the model is loaded, is that single token. The table never
// changes an answer; it only remembers answers the merge loop gives.
//
// It is open addressing with linear probing over 8-byte slots: id+1 (20 bits), the offset of the
// word's bytes in arena (24), its length (8) and a 12-bit tag from the hash, so a lookup of a
// word that is not a token usually touches one slot and no bytes, and a hit compares the bytes
// once. A Go map of strings costs two or three more cache misses per lookup. Entries that do not
// fit the packing (ids of 2^20-1 or more, words longer than 255 bytes, arenas over 16 MB) go to
// rest, a plain map.
type wordTable struct {
	slots []uint64
	shift uint8
	arena string
	rest  map[string]uint32
}

const (
	wordTagBits = 12
	wordLenBits = 8
	wordOffBits = 24
	wordIDBits  = 64 - wordTagBits - wordLenBits - wordOffBits
)

type wordEntry struct {
	word string
	id   uint32
}

// hashWord hashes a word for the word table and the piece cache. maphash.String cost ~70
// instructions per word (a fifth of the per-word overhead); this reads the word in at most two
// overlapping 8-byte loads for words up to 16 bytes, then mixes with murmur3's finalizer. Its
// quality only matters for speed: the word table's probe lengths are fixed by its contents, and
// the cache is direct-mapped, so no input can make either worse than a miss.
func hashWord(seed uint64, s string) uint64 {
	h := seed ^ uint64(len(s))*0x9E3779B97F4A7C15
	for len(s) > 16 {
		h = (h ^ load64(s)) * 0xff51afd7ed558ccd
		h ^= h >> 32
		s = s[8:]
	}
	var a, b uint64
	switch {
	case len(s) >= 8:
		a, b = load64(s), load64(s[len(s)-8:])
	case len(s) >= 4:
		a = uint64(load32(s))<<32 | uint64(load32(s[len(s)-4:]))
	case len(s) > 0:
		a = uint64(s[0])<<16 | uint64(s[len(s)/2])<<8 | uint64(s[len(s)-1])
	}
	h = (h ^ a) * 0xff51afd7ed558ccd
	h = (h ^ b ^ h>>33) * 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func load32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func newWordTable(seed uint64, ents []wordEntry) *wordTable {
	size := 1 << max(4, bits.Len(uint(len(ents)))+1) // load factor 1/4 to 1/2
	w := &wordTable{slots: make([]uint64, size), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
	var arena strings.Builder
	mask := uint64(size - 1)
	for _, e := range ents {
		off := arena.Len()
		if uint64(e.id)+1 >= 1<<wordIDBits || len(e.word) >= 1<<wordLenBits || off+len(e.word) > 1<<wordOffBits {
			if w.rest == nil {
				w.rest = make(map[string]uint32)
			}
			w.rest[e.word] = e.id
			continue
		}
		arena.WriteString(e.word)
		h := hashWord(seed, e.word)
		slot := uint64(e.id+1)<<(64-wordIDBits) | uint64(off)<<(wordTagBits+wordLenBits) |
			uint64(len(e.word))<<wordTagBits | h&(1<<wordTagBits-1)
		for i := h >> w.shift; ; i = (i + 1) & mask {
			if w.slots[i] == 0 {
				w.slots[i] = slot
				break
			}
		}
	}
	w.arena = arena.String()
	return w
}

// get returns the token of word, whose hashWord (with the model's seed) is h.
func (w *wordTable) get(h uint64, word string) (uint32, bool) {
	if len(word) < 1<<wordLenBits {
		want := uint64(len(word))<<wordTagBits | h&(1<<wordTagBits-1)
		mask := uint64(len(w.slots) - 1)
		for i := h >> w.shift; ; i = (i + 1) & mask {
			s := w.slots[i]
			if s == 0 {
				break
			}
			if s&(1<<(wordTagBits+wordLenBits)-1) == want {
				off := s >> (wordTagBits + wordLenBits) & (1<<wordOffBits - 1)
				if w.arena[off:off+uint64(len(word))] == word {
					return uint32(s>>(64-wordIDBits)) - 1, true
				}
			}
		}
	}
	if w.rest != nil {
		id, ok := w.rest[word]
		return id, ok
	}
	return 0, false
}
