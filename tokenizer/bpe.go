package tokenizer

import (
	"fmt"
	"hash/maphash"
	"unicode/utf8"
)

// bpe is HF's BPE model: merges applied by rank (lowest first, leftmost on ties) to the
// characters of each pre-tokenized piece.
type bpe struct {
	vocab  map[string]uint32 // token string -> id, as in tokenizer.json
	merges *pairTable        // (left, right) -> rank; merges.merged[rank] = merged id
	nMerge int

	// Byte-level models (a ByteLevel pre-tokenizer): the model works on raw bytes; byteID maps
	// each byte to its id.
	byteLevel bool
	byteID    [256]int32
	bytePairs []uint32 // [left byte<<8|right byte] -> pair(byteID[left], byteID[right]), a rank

	asciiID      [utf8.RuneSelf]int32 // id of each ASCII character, -1 if absent (no prefix/suffix)
	unk          int64                // -1: none
	fuseUnk      bool
	byteFallback bool
	fallbackID   [256]int32 // <0xXX> tokens, -1 when missing
	ignoreMerges bool
	prefix       string // continuing_subword_prefix ("" = none)
	suffix       string // end_of_word_suffix ("" = none)

	// SentencePiece-style models BPE whole segments. A segment can be cut before a "▁" whenever no
	// merge can join across that point: no merge whose right side starts with "▁" has a left side
	// ending in the rune before it (the runes in noCut). Words then hit the piece cache.
	cutSP bool
	noCut map[rune]bool

	// seed hashes words for the piece caches and words, the words whose encoding is one token.
	seed  uint64
	words *wordTable

	mergeBuf []byte                          // scratch while loading
	addMerge func(a, b, rank, merged uint32) // while loading
}

// noMerge is the rank of a pair that has no merge; real ranks are smaller (newBPE checks).
const noMerge = ^uint32(0)

func (m *bpe) pair(a, b uint32) uint32 {
	return m.merges.get(a, b)
}

// encode appends the ids of one pre-tokenized piece.
func (m *bpe) encode(st *state, dst []uint32, piece string) []uint32 {
	if m.cutSP && len(piece) > cacheKeyMax {
		start := 0
		for i := 1; i+len(metaspace) <= len(piece); i++ {
			if piece[i] != metaspace[0] || piece[i:i+len(metaspace)] != metaspace {
				continue
			}
			prev, _ := utf8.DecodeLastRuneInString(piece[:i])
			if m.noCut[prev] {
				continue
			}
			dst = m.encodeWord(st, dst, piece[start:i])
			start = i
		}
		return m.encodeWord(st, dst, piece[start:])
	}
	return m.encodeWord(st, dst, piece)
}

const metaspace = "\u2581"

// encodeWord appends the ids of one word.
func (m *bpe) encodeWord(st *state, dst []uint32, piece string) []uint32 {
	h := hashWord(m.seed, piece)
	// Most words (80% of a mixed corpus) are single tokens; the word table answers them as
	// cheaply as the piece cache would, so they skip the cache and leave all its slots to the
	// words that need the merge loop.
	if m.words != nil {
		if id, ok := m.words.get(h, piece); ok {
			return append(dst, id)
		}
	}
	if ids, ok := st.cache.get(h, piece); ok {
		return append(dst, ids...)
	}
	syms := st.syms[:0]
	raw := "" // set when syms[i] is the token of byte raw[i]
	if m.byteLevel {
		raw = piece
		for i := 0; i < len(piece); i++ {
			id := m.byteID[piece[i]]
			if id < 0 {
				syms = m.symbolsSlow(st, syms[:0], byteLevelString(piece))
				raw = ""
				break
			}
			syms = append(syms, uint32(id))
		}
	} else {
		syms = m.symbolsSlow(st, syms, piece)
	}
	syms = m.merge(st, syms, raw)
	st.syms = syms
	st.cache.put(h, piece, syms)
	return append(dst, syms...)
}

// symbolsSlow maps each character of w to its id, with continuing_subword_prefix,
// end_of_word_suffix, byte_fallback and unk handling exactly as HF's BPE::merge_word.
func (m *bpe) symbolsSlow(st *state, syms []uint32, w string) []uint32 {
	unkPending := false
	for i := 0; i < len(w); {
		if c := w[i]; c < utf8.RuneSelf && m.asciiID[c] >= 0 {
			if unkPending {
				syms = append(syms, uint32(m.unk))
				unkPending = false
			}
			syms = append(syms, uint32(m.asciiID[c]))
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(w[i:])
		ch := w[i : i+n]
		key := ch
		if (m.prefix != "" && i > 0) || (m.suffix != "" && i+n == len(w)) {
			b := st.buf[:0]
			if i > 0 {
				b = append(b, m.prefix...)
			}
			b = append(b, ch...)
			if i+n == len(w) {
				b = append(b, m.suffix...)
			}
			st.buf = b
			key = string(b)
		}
		i += n
		if id, ok := m.vocab[key]; ok {
			if unkPending {
				syms = append(syms, uint32(m.unk))
				unkPending = false
			}
			syms = append(syms, id)
			continue
		}
		if m.byteFallback {
			ok := true
			for k := 0; k < len(key); k++ {
				if m.fallbackID[key[k]] < 0 {
					ok = false
					break
				}
			}
			if ok {
				for k := 0; k < len(key); k++ {
					syms = append(syms, uint32(m.fallbackID[key[k]]))
				}
				continue
			}
		}
		if m.unk >= 0 {
			if unkPending && !m.fuseUnk {
				syms = append(syms, uint32(m.unk))
			}
			unkPending = true
		}
		// Without an unk token HF drops the character.
	}
	if unkPending {
		syms = append(syms, uint32(m.unk))
	}
	return syms
}

// merge applies the merges to syms in place. Words of up to 16 symbols use a quadratic scan,
// longer ones (CJK runs of byte-level models, whole segments of SentencePiece-style models) a
// heap; both pick the lowest rank, leftmost first, which is the order of HF's priority queue.
// Above 16 symbols the scans cost more instructions than the heap (callgrind, mixed corpus).
func (m *bpe) merge(st *state, syms []uint32, raw string) []uint32 {
	if len(syms) < 2 {
		return syms
	}
	if len(syms) <= 16 {
		return m.mergeSmall(st, syms, raw)
	}
	return m.mergeHeap(st, syms, raw)
}

// firstPair returns the merge of syms[i] and syms[i+1] before any merge happened, from the dense
// byte-pair table when the symbols are the bytes of raw.
func (m *bpe) firstPair(syms []uint32, i int, raw string) uint32 {
	if raw != "" {
		return m.bytePairs[uint16(raw[i])<<8|uint16(raw[i+1])]
	}
	return m.pair(syms[i], syms[i+1])
}

// mergeSmall keeps ranks[i], the rank of the pair (syms[i], syms[i+1]), next to the symbols:
// a merge only changes the pairs on either side of it, so it costs two table lookups.
func (m *bpe) mergeSmall(st *state, syms []uint32, raw string) []uint32 {
	ranks := st.ranks[:0]
	if raw != "" {
		for i := 0; i+1 < len(raw); i++ {
			ranks = append(ranks, m.bytePairs[uint16(raw[i])<<8|uint16(raw[i+1])])
		}
	} else {
		for i := 0; i+1 < len(syms); i++ {
			ranks = append(ranks, m.pair(syms[i], syms[i+1]))
		}
	}
	for {
		best, bestRank := -1, noMerge
		for i, r := range ranks {
			if r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		syms[best] = m.merges.merged[bestRank]
		// Drop syms[best+1] and ranks[best] in one short loop (copy costs a call each).
		n := len(syms)
		for j := best + 1; j < n-1; j++ {
			syms[j] = syms[j+1]
			ranks[j-1] = ranks[j]
		}
		syms, ranks = syms[:n-1], ranks[:n-2]
		if best > 0 {
			ranks[best-1] = m.pair(syms[best-1], syms[best])
		}
		if best < len(ranks) {
			ranks[best] = m.pair(syms[best], syms[best+1])
		}
	}
	st.ranks = ranks
	return syms
}

// symbol is a node of mergeHeap's linked list. rank is the rank of the pair it starts (with the
// next live symbol), noMerge when there is none or the symbol is dead; it is kept up to date
// after every merge, so a heap entry is current exactly when its rank equals its symbol's, and
// popping needs no table lookup to discard stale entries.
type symbol struct {
	id         uint32
	rank       uint32
	prev, next int32
}

func (m *bpe) mergeHeap(st *state, syms []uint32, raw string) []uint32 {
	sy := st.links[:0]
	for i, id := range syms {
		sy = append(sy, symbol{id: id, rank: noMerge, prev: int32(i - 1), next: int32(i + 1)})
	}
	sy[len(sy)-1].next = -1
	h := heap(st.heap[:0])
	for i := 0; i+1 < len(sy); i++ {
		if r := m.firstPair(syms, i, raw); r != noMerge {
			sy[i].rank = r
			h = append(h, uint64(r)<<32|uint64(i))
		}
	}
	h.init()
	for len(h) > 0 {
		top := h[0]
		rank, pos := uint32(top>>32), int32(uint32(top))
		s := &sy[pos]
		if s.rank != rank {
			h.pop() // stale entry: the pair at pos changed since the push
			continue
		}
		nx := s.next
		s.id = m.merges.merged[rank]
		sy[nx].rank = noMerge // dead
		s.next = sy[nx].next
		s.rank = noMerge
		// The new pair at pos takes the applied entry's place at the top: one sift instead of
		// a pop and a push.
		replaced := false
		if s.next >= 0 {
			sy[s.next].prev = pos
			if r := m.pair(s.id, sy[s.next].id); r != noMerge {
				s.rank = r
				h.replaceTop(uint64(r)<<32 | uint64(pos))
				replaced = true
			}
		}
		if !replaced {
			h.pop()
		}
		if s.prev >= 0 {
			p := &sy[s.prev]
			p.rank = m.pair(p.id, s.id)
			if p.rank != noMerge {
				h.push(uint64(p.rank)<<32 | uint64(s.prev))
			}
		}
	}
	out := syms[:0]
	for i := int32(0); i >= 0; i = sy[i].next {
		out = append(out, sy[i].id)
	}
	st.links, st.heap = sy, h
	return out
}

// heap is a binary min-heap of rank<<32|position. Keys are compared as whole values, so the
// order in which entries leave the heap depends only on which keys it holds.
type heap []uint64

// init orders the heap in place (Floyd's bottom-up construction, linear time).
func (h heap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i, h[i])
	}
}

func (h *heap) push(v uint64) {
	*h = append(*h, v)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p] <= v {
			break
		}
		a[i] = a[p]
		i = p
	}
	a[i] = v
}

// pop removes the smallest key.
func (h *heap) pop() {
	a := *h
	last := a[len(a)-1]
	a = a[:len(a)-1]
	*h = a
	if len(a) > 0 {
		a.down(0, last)
	}
}

// replaceTop replaces the smallest key by v.
func (h heap) replaceTop(v uint64) { h.down(0, v) }

// down places v at position i or below it.
func (h heap) down(i int, v uint64) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r] < h[l] {
			l = r
		}
		if v <= h[l] {
			break
		}
		h[i] = h[l]
		i = l
	}
	h[i] = v
}

// Byte-level alphabet: GPT-2 maps every byte to a printable rune.
var byteToRune, runeToByte = func() (b2r [256]rune, r2b map[rune]byte) {
	r2b = make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

//go:norace
func byteLevelString(s string) string {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = utf8.AppendRune(b, byteToRune[s[i]])
	}
	return string(b)
}

// fromByteLevel maps a byte-level token string to raw bytes; ok is false when it holds a rune
// outside the byte alphabet.
//
//go:norace
func fromByteLevel(tok string) (raw string, ok bool) {
	b := make([]byte, 0, len(tok))
	for _, r := range tok {
		c, ok := runeToByte[r]
		if !ok {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), true
}

// newBPE checks the model settings and builds the merge table.
func newBPE(vocab map[string]uint32, mergesRaw []byte, mj *modelJSON, byteLevel bool) (*bpe, error) {
	m := &bpe{
		vocab:        vocab,
		byteLevel:    byteLevel,
		unk:          -1,
		fuseUnk:      mj.FuseUnk,
		byteFallback: mj.ByteFallback,
		ignoreMerges: mj.IgnoreMerges,
	}
	if mj.ContinuingSubwordPrefix != nil {
		m.prefix = *mj.ContinuingSubwordPrefix
	}
	if mj.EndOfWordSuffix != nil {
		m.suffix = *mj.EndOfWordSuffix
	}
	if mj.Dropout != nil && *mj.Dropout > 0 {
		return nil, fmt.Errorf("%w: BPE dropout %v (non-deterministic)", ErrUnsupported, *mj.Dropout)
	}
	if mj.UnkToken != nil {
		id, ok := vocab[*mj.UnkToken]
		if !ok {
			return nil, fmt.Errorf("tokenizer: unk_token %q is not in the vocabulary", *mj.UnkToken)
		}
		m.unk = int64(id)
	}
	for c := range m.asciiID {
		m.asciiID[c] = -1
		if id, ok := vocab[string(rune(c))]; ok && m.prefix == "" && m.suffix == "" {
			m.asciiID[c] = int32(id)
		}
	}
	for b := 0; b < 256; b++ {
		m.fallbackID[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallbackID[b] = int32(id)
		}
	}
	if byteLevel {
		for b := 0; b < 256; b++ {
			m.byteID[b] = -1
			if id, ok := vocab[string(byteToRune[b])]; ok {
				m.byteID[b] = int32(id)
			}
		}
	}
	m.noCut = make(map[rune]bool)
	type merge struct{ a, b, rank, merged uint32 }
	var all []merge
	m.addMerge = func(a, b, rank, merged uint32) { all = append(all, merge{a, b, rank, merged}) }
	if err := parseMerges(mergesRaw, m.parseMerge); err != nil {
		return nil, err
	}
	var maxID uint32
	for _, id := range vocab {
		maxID = max(maxID, id)
	}
	nRank := 0
	for _, x := range all {
		nRank = max(nRank, int(x.rank)+1)
	}
	if uint64(nRank) >= uint64(noMerge) {
		return nil, fmt.Errorf("tokenizer: %d merges, want fewer than %d", nRank, noMerge)
	}
	m.merges = newPairTable(nRank, maxID)
	for _, x := range all {
		m.merges.put(x.a, x.b, x.rank, x.merged)
	}
	m.addMerge = nil
	_, hasMetaspace := vocab[metaspace]
	m.cutSP = !byteLevel && hasMetaspace && m.prefix == "" && m.suffix == ""
	if byteLevel {
		m.bytePairs = make([]uint32, 1<<16)
		for i := range m.bytePairs {
			a, b := m.byteID[i>>8], m.byteID[i&0xff]
			m.bytePairs[i] = noMerge
			if a >= 0 && b >= 0 {
				m.bytePairs[i] = m.pair(uint32(a), uint32(b))
			}
		}
	}
	m.seed = maphash.String(maphash.MakeSeed(), "") // a random seed per model
	if byteLevel || m.ignoreMerges {
		// With ignore_merges the table is HF's vocabulary lookup, whatever the model. Otherwise
		// only byte-level models get one: on SentencePiece-style files (Mistral, Gemma) it gains
		// little (~5% on Gemma-3) for the load time of checking every token through symbolsSlow
		// (+0.24 s on Gemma-3).
		m.words = newWordTable(m.seed, m.wholeWords())
	}
	return m, nil
}

// wholeWords lists the words whose encoding is a single token: with ignore_merges every
// vocabulary entry, otherwise each token that the merge loop turns back into itself (nearly all
// of them; the exceptions are tokens no sequence of merges reaches first). It runs the merge loop
// once per token, before m.words is set, so the answers are the loop's own.
func (m *bpe) wholeWords() []wordEntry {
	ents := make([]wordEntry, 0, len(m.vocab))
	for tok, id := range m.vocab {
		word := tok
		if m.byteLevel {
			raw, ok := fromByteLevel(tok)
			if !ok {
				continue // not a string of the byte alphabet: no piece can equal it
			}
			word = raw
		}
		ents = append(ents, wordEntry{word, id})
	}
	if m.ignoreMerges {
		return ents
	}
	st := newState(0)
	var ids []uint32
	out := ents[:0]
	for _, e := range ents {
		ids = m.encodeWord(st, ids[:0], e.word)
		if len(ids) == 1 && ids[0] == e.id {
			out = append(out, e)
		}
	}
	return out
}

// parseMerge records one merge. Like fromByteLevel and the JSON readers it only touches data being
// built by one goroutine, so it is excluded from race instrumentation (see jsonlite.go).
//
//go:norace
func (m *bpe) parseMerge(rank int, a, b []byte) error {
	ida, ok := m.vocab[string(a)]
	if !ok {
		return fmt.Errorf("tokenizer: merge %d (%q, %q): %q is not in the vocabulary", rank, a, b, a)
	}
	idb, ok := m.vocab[string(b)]
	if !ok {
		return fmt.Errorf("tokenizer: merge %d (%q, %q): %q is not in the vocabulary", rank, a, b, b)
	}
	prefixLen := len(m.prefix)
	if len(b) < prefixLen {
		return fmt.Errorf("tokenizer: merge %d (%q, %q): right side shorter than continuing_subword_prefix", rank, a, b)
	}
	if len(b) >= len(metaspace) && string(b[:len(metaspace)]) == metaspace && len(a) > 0 {
		r, _ := utf8.DecodeLastRune(a)
		m.noCut[r] = true
	}
	m.mergeBuf = append(append(m.mergeBuf[:0], a...), b[prefixLen:]...)
	idm, ok := m.vocab[string(m.mergeBuf)]
	if !ok {
		return fmt.Errorf("tokenizer: merge %d (%q, %q): merged token %q is not in the vocabulary", rank, a, b, m.mergeBuf)
	}
	m.addMerge(ida, idb, uint32(rank), idm)
	return nil
}
