package tokenizer

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestGolden checks every family against IDs produced by the official HF tokenizers (npm
// tokenizers@0.23.2, see scripts/tokenizer/golden.sh) over the 4,200-string corpus: plain
// encoding, encoding with special tokens, decoding, and decoding arbitrary ID sequences.
func TestGolden(t *testing.T) {
	corpus := goldenCorpus(t)
	for _, fam := range families {
		t.Run(fam, func(t *testing.T) {
			t.Parallel()
			tok := fixture(t, fam)
			var g golden
			readGzipJSON(t, filepath.Join("testdata", "golden", fam+".json.gz"), &g)
			assert.Len(t, g.IDs, len(corpus))
			assert.Equal(t, g.VocabSize, tok.VocabSize(), "VocabSize")
			bad := 0
			report := func(format string, args ...any) {
				bad++
				if bad <= 8 {
					t.Errorf(format, args...)
				}
			}
			for i, s := range corpus {
				if i >= len(g.IDs) {
					break
				}
				if got := tok.Encode(s); !equalIDs(got, g.IDs[i]) {
					report("Encode #%d %q:\n got  %v\n want %v", i, clip(s), got, g.IDs[i])
				}
				key := strconv.Itoa(i)
				if want, ok := g.WithSpecial[key]; ok {
					if got := tok.EncodeSpecial(s); !equalIDs(got, want) {
						report("EncodeSpecial #%d %q:\n got  %v\n want %v", i, clip(s), got, want)
					}
				}
				wantText, ok := g.Decoded[key]
				if !ok {
					wantText = s
				}
				if got := tok.Decode(g.IDs[i]); got != wantText {
					report("Decode #%d: got %q want %q", i, clip(got), clip(wantText))
				}
				if i%5 == 0 {
					want, ok := g.DecodedSkip[key]
					if !ok {
						want = wantText
					}
					if got := tok.DecodeSkipSpecial(g.IDs[i]); got != want {
						report("DecodeSkipSpecial #%d: got %q want %q", i, clip(got), clip(want))
					}
				}
			}
			for i, c := range g.DecodeCases {
				if got := tok.Decode(c.IDs); got != c.Text {
					report("decode case %d %v: got %q want %q", i, c.IDs, got, c.Text)
				}
				if got := tok.DecodeSkipSpecial(c.IDs); got != c.Skip {
					report("decode case %d %v skip special: got %q want %q", i, c.IDs, got, c.Skip)
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d mismatches", fam, bad)
			}
		})
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// TestGoldenRegexFallback runs DeepSeek-V3's goldens with every split regex executed by the
// regexp2 fallback instead of the hand-written scanners: the path any file with an unknown
// pattern takes. (DeepSeek's patterns have no (?i:…), where regexp2 v1 differs from Oniguruma on
// ſ; see TestScannersMatchRegex.)
func TestGoldenRegexFallback(t *testing.T) {
	base := fixture(t, "deepseek-v3")
	tok := base.clone(0)
	tok.pre = append([]preStep(nil), base.pre...)
	n := 0
	for i := range tok.pre {
		if tok.pre[i].pattern != "" {
			re, err := compileRegex(tok.pre[i].pattern)
			if err != nil {
				t.Fatal(err)
			}
			tok.pre[i].re, tok.pre[i].find = re, nil
			n++
		}
	}
	assert.Equal(t, 3, n, "DeepSeek-V3 has three split regexes")
	var g golden
	readGzipJSON(t, filepath.Join("testdata", "golden", "deepseek-v3.json.gz"), &g)
	bad := 0
	for i, s := range goldenCorpus(t) {
		if got := tok.Encode(s); !equalIDs(got, g.IDs[i]) {
			if bad++; bad <= 5 {
				t.Errorf("Encode #%d %q:\n got  %v\n want %v", i, clip(s), got, g.IDs[i])
			}
		}
	}
}
