package tokenizer

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites one text segment (the text between added tokens).
type normalizer interface {
	normalize(s string) string
}

// unicodeNorm is one of the four Unicode normalization forms.
type unicodeNorm struct {
	form norm.Form
	// stable has a bit for each BMP rune that is in the form, has canonical combining class 0
	// and never combines with a rune before it (quick check Yes, not Maybe). A run of such runes
	// is normalized, and one can neither change nor be changed by the runes around it, so
	// isNormal checks only the stretches around the other runes with the form's own check. The
	// check was ~9% of a Qwen3 encode of mixed text (every segment is checked); most of it is
	// now a loop over ASCII bytes and a bit test per other rune.
	stable *[1 << 16 / 64]uint64
}

func newUnicodeNorm(form norm.Form) unicodeNorm {
	return unicodeNorm{form: form, stable: stableTables[form]()}
}

// stableTables holds one read-only stable table per form (norm.NFC..NFKD are 0..3), built on
// first use and shared by every normalizer of every Tokenizer. Building one takes ~7 ms; per
// normalizer, a file of many NFKC steps (16 bytes of JSON each) cost 7 ms and 8 KB per step.
var stableTables = [...]func() *[1 << 16 / 64]uint64{
	norm.NFC:  sync.OnceValue(func() *[1 << 16 / 64]uint64 { return stableTable(norm.NFC) }),
	norm.NFD:  sync.OnceValue(func() *[1 << 16 / 64]uint64 { return stableTable(norm.NFD) }),
	norm.NFKC: sync.OnceValue(func() *[1 << 16 / 64]uint64 { return stableTable(norm.NFKC) }),
	norm.NFKD: sync.OnceValue(func() *[1 << 16 / 64]uint64 { return stableTable(norm.NFKD) }),
}

func stableTable(form norm.Form) *[1 << 16 / 64]uint64 {
	t := new([1 << 16 / 64]uint64)
	var buf [utf8.UTFMax]byte
	for r := rune(0); r < 1<<16; r++ {
		if r < utf8.RuneSelf {
			t[r/64] |= 1 << (r % 64) // ASCII is stable in every form
			continue
		}
		if !utf8.ValidRune(r) {
			continue // surrogates: never decoded from valid UTF-8
		}
		b := utf8.AppendRune(buf[:0], r)
		if form.Properties(b).BoundaryBefore() && form.IsNormal(b) {
			t[r/64] |= 1 << (r % 64)
		}
	}
	return t
}

func (n unicodeNorm) normalize(s string) string {
	if n.isNormal(s) {
		return s
	}
	return n.form.String(s)
}

// isNormal reports whether s is in the form, like IsNormalString.
func (n unicodeNorm) isNormal(s string) bool {
	// Invariant: s[:i] is normalized and i is 0 or the start of a stable rune.
	for i := 0; ; {
		j := n.stableRun(s, i)
		if j == len(s) {
			return true
		}
		// s[j] is not stable. The stretch to check starts at the last stable rune before it,
		// which it may combine with, and ends at the next stable rune.
		k := i
		if j > i {
			_, w := utf8.DecodeLastRuneInString(s[:j])
			k = j - w
		}
		e := j
		for e < len(s) {
			r, w := utf8.DecodeRuneInString(s[e:])
			if n.isStable(r) {
				break
			}
			e += w
		}
		if n.form.QuickSpanString(s[k:e]) != e-k {
			// Not decided by the quick check (say, a combining mark): let IsNormalString
			// decide the rest in one call, which may allocate once.
			return n.form.IsNormalString(s[k:])
		}
		i = e
	}
}

// stableRun returns the end of the run of stable runes at s[i:].
func (n unicodeNorm) stableRun(s string, i int) int {
	for i < len(s) {
		// Eight ASCII bytes at a time, as utf8.ValidString does.
		for i+8 <= len(s) && load64(s[i:])&0x8080808080808080 == 0 {
			i += 8
		}
		if i == len(s) {
			break
		}
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if !n.isStable(r) {
			break
		}
		i += w
	}
	return i
}

func (n unicodeNorm) isStable(r rune) bool {
	return r < 1<<16 && n.stable[r/64]&(1<<(r%64)) != 0
}

type prepend struct{ text string }

func (p prepend) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.text + s
}

// replace substitutes every match of a pattern (a literal, or a regex through a finder).
type replace struct {
	literal string
	find    finder
	content string
}

func (r replace) normalize(s string) string {
	if r.find == nil {
		if r.literal == "" {
			return s
		}
		return strings.ReplaceAll(s, r.literal, r.content)
	}
	var b strings.Builder
	last := 0
	for pos := 0; pos < len(s); {
		ms, me := r.find(s, pos)
		if ms < 0 {
			break
		}
		if me == ms { // empty match: replace nothing, move on one rune
			_, n := utf8.DecodeRuneInString(s[ms:])
			pos = ms + max(n, 1)
			continue
		}
		b.WriteString(s[last:ms])
		b.WriteString(r.content)
		last, pos = me, me
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

type sequenceNorm []normalizer

func (q sequenceNorm) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

type lowercase struct{}

// normalize lowercases like Rust's str::to_lowercase: İ becomes "i̇" and a final capital sigma
// becomes ς, where Go's unicode.ToLower maps rune by rune.
func (lowercase) normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if finalSigma(s, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma applies Unicode's Final_Sigma condition (cased letter before, none after, skipping
// case-ignorable runes).
func finalSigma(s string, i int) bool {
	before := false
	for j := i; j > 0; {
		r, n := utf8.DecodeLastRuneInString(s[:j])
		j -= n
		if caseIgnorable(r) {
			continue
		}
		before = isCased(r)
		break
	}
	if !before {
		return false
	}
	for j := i + len("Σ"); j < len(s); {
		r, n := utf8.DecodeRuneInString(s[j:])
		j += n
		if caseIgnorable(r) {
			continue
		}
		return !isCased(r)
	}
	return true
}

func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r)
}

func caseIgnorable(r rune) bool {
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk) || r == '\'' || r == '.' || r == ':'
}

// strip removes leading and/or trailing whitespace.
type strip struct{ left, right bool }

func (p strip) normalize(s string) string {
	if p.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if p.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}
