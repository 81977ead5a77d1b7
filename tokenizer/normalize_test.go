package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
