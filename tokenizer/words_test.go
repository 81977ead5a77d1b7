package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWordTable checks lookups against a map, including the entries that do not fit the packed
// slots (long words, large ids) and words that differ from an entry only in their last byte.
func TestWordTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	want := map[string]uint32{}
	var ents []wordEntry
	add := func(w string, id uint32) {
		if _, ok := want[w]; ok {
			return
		}
		want[w] = id
		ents = append(ents, wordEntry{w, id})
	}
	for i := range 20000 {
		b := make([]byte, 1+rng.IntN(12))
		for k := range b {
			b[k] = byte('a' + rng.IntN(4))
		}
		add(string(b), uint32(i))
	}
	add(strings.Repeat("x", 300), 7)
	add("big id", 1<<wordIDBits)
	seed := uint64(12345)
	tab := newWordTable(seed, ents)
	require.Len(t, tab.rest, 2)
	probe := func(w string) {
		id, ok := tab.get(hashWord(seed, w), w)
		wid, wok := want[w]
		assert.Equal(t, wok, ok, "%q", w)
		assert.Equal(t, wid, id, "%q", w)
	}
	for w := range want {
		probe(w)
		probe(w[:len(w)-1] + "z")
		probe(w + "a")
	}
	probe("")
	probe(strings.Repeat("x", 301))
}

// TestWholeWords checks that encoding through the word table gives the merge loop's answer, on
// every token of each byte-level fixture and on the corpus split into words (with ignore_merges,
// the merge loop's answer after HF's vocabulary lookup).
func TestWholeWords(t *testing.T) {
	var words []string
	for _, s := range goldenCorpus(t) {
		f := knownFinders[patCL100K]
		for pos := 0; pos < len(s); {
			_, e := f(s, pos)
			words = append(words, s[pos:e])
			pos = e
		}
	}
	for _, fam := range []string{"llama3", "qwen3", "gpt-4o", "deepseek-v3"} {
		t.Run(fam, func(t *testing.T) {
			if fixtureDirOptional(fam) == "" {
				t.Skip("fixture missing")
			}
			m := fixture(t, fam).model
			require.NotNil(t, m.words)
			slow := *m
			slow.words = nil
			st := newState(0)
			check := func(w string) bool {
				got := m.encodeWord(st, nil, w)
				want := slow.encodeWord(st, nil, w)
				if m.ignoreMerges {
					if id, ok := m.vocab[byteLevelString(w)]; ok {
						want = []uint32{id}
					}
				}
				return assert.Equal(t, want, got, "%q", w)
			}
			bad := 0
			for tok := range m.vocab {
				raw, ok := fromByteLevel(tok)
				if ok && !check(raw) {
					bad++
				}
				if bad > 5 {
					return
				}
			}
			for _, w := range words {
				if !check(w) {
					bad++
				}
				if bad > 5 {
					return
				}
			}
		})
	}
}

// TestUnreachableToken checks a token that is in the vocabulary but that the merges never build
// from its own characters: without ignore_merges it must not be taken whole.
func TestUnreachableToken(t *testing.T) {
	for _, tt := range []struct {
		name         string
		ignoreMerges bool
		want         []uint32
	}{
		{"merges", false, []uint32{3, 2}}, // a+b first (rank 0), then ab+c has no merge
		{"ignore_merges", true, []uint32{5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := fmt.Sprintf(`{"model": {"type": "BPE", "ignore_merges": %v,
				"vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5},
				"merges": ["a b", "b c", "a bc"]},
				"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}}`, tt.ignoreMerges)
			tok, err := FromJSON([]byte(file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, tok.Encode("abc"))
			assert.Equal(t, []uint32{4}, tok.Encode("bc"))
		})
	}
}
