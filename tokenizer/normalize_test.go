package tokenizer

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"
)

// TestIsNormal checks the stable-rune shortcut against the form's own IsNormalString, in all four
// forms, on the corpus and on random strings of runes that normalization treats specially
// (combining marks, Hangul jamo, kana voicing marks, singletons, compatibility characters, long
// runs of non-starters).
func TestIsNormal(t *testing.T) {
	alphabet := []string{"a", "e", " ", "\n", "é", "e\u0301", "\u0301", "\u0323", "\u0344", "\u2000", "\u212b",
		"\u1100", "\u1161", "\u11a8", "\uac00", "\ud55c", "か", "\u3099", "が", "\u309a", "中", "\uf900",
		"\ufb01", "\uff21", "\u00bd", "\u03ac", "\u0651", "\u064e", "\U0001f600", "\U0001d15e", "\ufffd",
		"\u0f73", "\u0958", "ﬀ", "Å", "A\u030a", strings.Repeat("\u0301", 31)}
	rng := rand.New(rand.NewPCG(5, 6))
	var cases []string
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	cases = append(cases, goldenCorpus(t)...)
	for _, form := range []norm.Form{norm.NFC, norm.NFD, norm.NFKC, norm.NFKD} {
		n := newUnicodeNorm(form)
		bad := 0
		for _, s := range cases {
			if !assert.Equal(t, form.IsNormalString(s), n.isNormal(s), "form %d %+q", form, s) {
				if bad++; bad > 5 {
					break
				}
			}
		}
	}
}

// TestNormalizerTablesShared checks that the stable-rune table is built once per form, not per
// normalizer: before, each 16-byte {"type": "NFKC"} in a file cost ~7 ms and 8 KB to load, so
// this 300-step file took ~2 s and a 1 MB file of them would take minutes.
func TestNormalizerTablesShared(t *testing.T) {
	steps := strings.TrimSuffix(strings.Repeat(`{"type": "NFKC"}, {"type": "NFC"}, `, 150), ", ")
	file := []byte(`{"normalizer": {"type": "Sequence", "normalizers": [` + steps + `]},
		"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "1": 3}, "merges": ["a b"]}}`)
	newUnicodeNorm(norm.NFKC) // the first use of each form builds its table (~1 MB of garbage)
	newUnicodeNorm(norm.NFC)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tok, err := FromJSON(file)
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated by the load")
	seq, ok := tok.normalizer.(sequenceNorm)
	require.True(t, ok)
	require.Len(t, seq, 300)
	for i, n := range seq {
		assert.Same(t, seq[i%2].(unicodeNorm).stable, n.(unicodeNorm).stable, "step %d", i)
	}
	assert.NotSame(t, seq[0].(unicodeNorm).stable, seq[1].(unicodeNorm).stable, "NFKC and NFC differ")
	assert.Equal(t, []uint32{2, 3}, tok.Encode("ａｂ¹"), "fullwidth and superscript fold under NFKC")
}
