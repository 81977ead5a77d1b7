package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// This file holds hand-written scanners that behave exactly like the split regexes of the
// model families we know (Oniguruma semantics: leftmost match, alternatives tried in order,
// greedy quantifiers with backtracking, \s = Unicode White_Space). Each scanner is selected by
// the exact pattern string found in tokenizer.json; anything else goes to the regexp2 fallback.
// They only read immutable strings and read-only tables, so they are marked go:norace: the race
// detector would slow the tests down and cannot find anything here.

// Known split patterns, exactly as they appear (JSON-decoded) in tokenizer.json files.
const (
	// patCL100K is cl100k_base's pattern, used by GPT-3.5/4 and Llama-3.
	patCL100K = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patQwen2 is patCL100K with single digits, used by Qwen2, Qwen2.5 and Qwen3.
	patQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patO200K is o200k_base's pattern, used by GPT-4o and gpt-oss (o200k_harmony).
	patO200K = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patGPT2 is the GPT-2 pattern that the ByteLevel pre-tokenizer applies when use_regex is set.
	patGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// patDigits3 is DeepSeek-V3's first split.
	patDigits3 = `\p{N}{1,3}`
	// patDeepSeekCJK is DeepSeek-V3's second split.
	patDeepSeekCJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
	// patDeepSeek is DeepSeek-V3's third split (the file holds raw CR and LF inside the classes).
	patDeepSeek = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
)

// finder returns the leftmost match of a pattern in s at or after byte offset i, as [start,end),
// or start < 0 when there is none. Scanners of total patterns always return start == i.
type finder func(s string, i int) (start, end int)

// knownFinders maps exact pattern strings to their hand-written scanners.
var knownFinders = map[string]finder{
	patCL100K:      func(s string, i int) (int, int) { return i, scanCL100K(s, i, 3) },
	patQwen2:       func(s string, i int) (int, int) { return i, scanCL100K(s, i, 1) },
	patO200K:       func(s string, i int) (int, int) { return i, scanO200K(s, i) },
	patGPT2:        func(s string, i int) (int, int) { return i, scanGPT2(s, i) },
	patDigits3:     findDigits3,
	patDeepSeekCJK: findDeepSeekCJK,
	patDeepSeek:    findDeepSeek,
}

// scanKind names a total scanner (one that matches at every position) for direct calls.
type scanKind uint8

const (
	scanKindCL100K scanKind = iota + 1
	scanKindQwen2
	scanKindO200K
	scanKindGPT2
)

// scanKinds maps the total patterns to their scanners; knownFinders holds the same scanners.
var scanKinds = map[string]scanKind{
	patCL100K: scanKindCL100K,
	patQwen2:  scanKindQwen2,
	patO200K:  scanKindO200K,
	patGPT2:   scanKindGPT2,
}

// end returns the end of the match at s[i:].
func (k scanKind) end(s string, i int) int {
	switch k {
	case scanKindCL100K:
		return scanCL100K(s, i, 3)
	case scanKindQwen2:
		return scanCL100K(s, i, 1)
	case scanKindO200K:
		return scanO200K(s, i)
	}
	return scanGPT2(s, i)
}

// Rune classes used by the scanners.
const (
	cL  uint8 = 1 << iota // \p{L}
	cN                    // \p{N}
	cS                    // \s: Unicode White_Space
	cNL                   // \r or \n
	cU                    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	cW                    // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	cM                    // \p{M}
	cPS                   // \p{P} or \p{S}
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		t[r] = classSlow(r)
	}
	return t
}()

// Class tables for the non-ASCII runes most common in text besides CJK ideographs and Hangul
// (which classSlow answers by range): the two-byte UTF-8 runes (Latin, Greek, Cyrillic, Hebrew,
// Arabic, ...), CJK punctuation with kana, and the fullwidth forms. classSlow's unicode.Is table
// searches were ~10% of the instructions of a cold Llama-3 encode of mixed text; these are 2.5 KB,
// filled from classSlow itself at init.
var (
	twoByteClass   = classTable(0x80, 0x800-0x80)
	kanaClass      = classTable(0x3000, 0x100)
	fullwidthClass = classTable(0xFF00, 0x100)
)

func classTable(lo rune, n int) []uint8 {
	t := make([]uint8, n)
	for i := range t {
		t[i] = classSlow(lo + rune(i))
	}
	return t
}

//go:norace
func classSlow(r rune) uint8 {
	switch {
	case (r >= 0x4e00 && r <= 0x9fff) || (r >= 0xac00 && r <= 0xd7a3):
		return cL | cU | cW // CJK Unified Ideographs and Hangul syllables: all Lo
	case unicode.IsLetter(r):
		switch {
		case unicode.Is(unicode.Lu, r) || unicode.Is(unicode.Lt, r):
			return cL | cU
		case unicode.Is(unicode.Ll, r):
			return cL | cW
		default: // Lm, Lo
			return cL | cU | cW
		}
	case unicode.IsMark(r):
		return cM | cU | cW
	case unicode.IsNumber(r):
		return cN
	case r == '\r' || r == '\n':
		return cS | cNL
	case unicode.IsSpace(r):
		return cS
	case unicode.IsPunct(r) || unicode.IsSymbol(r):
		return cPS
	}
	return 0
}

// class returns the class bits of r.
//
//go:norace
func class(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	return classNonASCII(r)
}

//go:norace
func classNonASCII(r rune) uint8 {
	switch {
	case r < 0x800:
		return twoByteClass[r-0x80]
	case r >= 0x3000 && r < 0x3100:
		return kanaClass[r-0x3000]
	case r >= 0xFF00 && r < 0x10000:
		return fullwidthClass[r-0xFF00]
	}
	return classSlow(r)
}

// next decodes the rune at s[i:] (i < len(s)) and returns its class and width. The hottest
// callers test for ASCII themselves and call nextNonASCII, saving a call per byte.
//
//go:norace
func next(s string, i int) (uint8, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return asciiClass[b], 1
	}
	return nextNonASCII(s, i)
}

//go:norace
func nextNonASCII(s string, i int) (uint8, int) {
	r, n := utf8.DecodeRuneInString(s[i:])
	return classNonASCII(r), n
}

// run returns the end of the run of runes starting at i whose class intersects mask.
//
//go:norace
func run(s string, i int, mask uint8) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf {
			if asciiClass[b]&mask == 0 {
				break
			}
			i++
			continue
		}
		c, n := nextNonASCII(s, i)
		if c&mask == 0 {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at s[i:] (s[i] is the apostrophe), case-insensitively
// when fold is set (Unicode simple folding: ſ folds to s). It returns the end, or -1.
//
//go:norace
func contraction(s string, i int, fold bool) int {
	j := i + 1
	if j >= len(s) {
		return -1
	}
	lower := func(b byte) byte {
		if fold && 'A' <= b && b <= 'Z' {
			return b + 'a' - 'A'
		}
		return b
	}
	c := lower(s[j])
	switch c {
	case 's', 't', 'm', 'd':
		return j + 1
	case 'r', 'v':
		if j+1 < len(s) && lower(s[j+1]) == 'e' {
			return j + 2
		}
	case 'l':
		if j+1 < len(s) && lower(s[j+1]) == 'l' {
			return j + 2
		}
	case 0xC5: // ſ (U+017F) is C5 BF and case-folds to s
		if fold && j+1 < len(s) && s[j+1] == 0xBF {
			return j + 2
		}
	}
	return -1
}

// spaces matches \s*[\r\n]+|\s+(?!\S)|\s+ at s[i:], where s[i] starts a whitespace rune.
//
//go:norace
func spaces(s string, i int) int {
	j, lastNL, lastStart := i, -1, i
	for j < len(s) {
		c, n := next(s, j)
		if c&cS == 0 {
			break
		}
		if c&cNL != 0 {
			lastNL = j + n
		}
		lastStart = j
		j += n
	}
	switch {
	case lastNL > 0: // \s*[\r\n]+ ends after the last CR/LF of the run
		return lastNL
	case j == len(s) || lastStart == i: // \s+(?!\S) at the end, or \s+ for a single space
		return j
	default: // \s+(?!\S) gives back the last space
		return lastStart
	}
}

// spacesNoNL matches \s+(?!\S)|\s+ at s[i:] (the GPT-2 pattern has no \s*[\r\n]+).
//
//go:norace
func spacesNoNL(s string, i int) int {
	j, lastStart := i, i
	for j < len(s) {
		c, n := next(s, j)
		if c&cS == 0 {
			break
		}
		lastStart = j
		j += n
	}
	if j == len(s) || lastStart == i {
		return j
	}
	return lastStart
}

// scanCL100K matches the cl100k pattern (maxDigits 3) or Qwen2's (maxDigits 1) at s[i:].
//
//go:norace
func scanCL100K(s string, i int, maxDigits int) int {
	if s[i] == '\'' {
		if e := contraction(s, i, true); e > 0 {
			return e
		}
	}
	c, n := asciiClass[s[i]&(utf8.RuneSelf-1)], 1 // next(s, i), with ASCII inline
	if s[i] >= utf8.RuneSelf {
		c, n = nextNonASCII(s, i)
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c&cL != 0 {
		return run(s, i+n, cL)
	}
	if c&(cN|cNL) == 0 && i+n < len(s) {
		c2, n2 := asciiClass[s[i+n]&(utf8.RuneSelf-1)], 1
		if s[i+n] >= utf8.RuneSelf {
			c2, n2 = nextNonASCII(s, i+n)
		}
		if c2&cL != 0 {
			return run(s, i+n+n2, cL)
		}
	}
	// \p{N}{1,maxDigits}
	if c&cN != 0 {
		j := i + n
		for k := 1; k < maxDigits && j < len(s); k++ {
			c2, n2 := next(s, j)
			if c2&cN == 0 {
				break
			}
			j += n2
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	if e := punct(s, i, cL|cN|cS, false); e > 0 {
		return e
	}
	return spaces(s, i)
}

// punct matches ` ?X+[\r\n]*` at s[i:], X being the runes whose class does not intersect mask;
// slash also accepts '/' in the tail (o200k). It returns the end, or -1.
//
//go:norace
func punct(s string, i int, mask uint8, slash bool) int {
	j := i
	if s[i] == ' ' {
		j++
	}
	if j >= len(s) {
		return -1
	}
	c, n := next(s, j)
	if c&mask != 0 {
		return -1
	}
	j += n
	for j < len(s) {
		if b := s[j]; b < utf8.RuneSelf {
			if asciiClass[b]&mask != 0 {
				break
			}
			j++
			continue
		}
		c, n := nextNonASCII(s, j)
		if c&mask != 0 {
			break
		}
		j += n
	}
	for j < len(s) && (s[j] == '\r' || s[j] == '\n' || (slash && s[j] == '/')) {
		j++
	}
	return j
}

// scanGPT2 matches the GPT-2 ByteLevel pattern at s[i:].
//
//go:norace
func scanGPT2(s string, i int) int {
	if s[i] == '\'' {
		if e := contraction(s, i, false); e > 0 {
			return e
		}
	}
	j := i
	if s[i] == ' ' {
		j++
	}
	if j < len(s) {
		c, n := next(s, j)
		switch {
		case c&cL != 0:
			return run(s, j+n, cL)
		case c&cN != 0:
			return run(s, j+n, cN)
		case c&cS == 0:
			for j += n; j < len(s); {
				c, n := next(s, j)
				if c&(cL|cN|cS) != 0 {
					break
				}
				j += n
			}
			return j
		}
	}
	return spacesNoNL(s, i)
}

// scanO200K matches the o200k pattern at s[i:].
//
//go:norace
func scanO200K(s string, i int) int {
	c, n := next(s, i)
	prefix := c&(cL|cN|cNL) == 0
	if prefix && i+n < len(s) {
		if e := o200kLower(s, i+n); e > 0 {
			return e
		}
	}
	if e := o200kLower(s, i); e > 0 {
		return e
	}
	if prefix && i+n < len(s) {
		if e := o200kUpper(s, i+n); e > 0 {
			return e
		}
	}
	if e := o200kUpper(s, i); e > 0 {
		return e
	}
	if c&cN != 0 {
		j := i + n
		for k := 1; k < 3 && j < len(s); k++ {
			c2, n2 := next(s, j)
			if c2&cN == 0 {
				break
			}
			j += n2
		}
		return j
	}
	if e := punct(s, i, cL|cN|cS, true); e > 0 {
		return e
	}
	return spaces(s, i)
}

// o200kLower matches [U]*[W]+(?i:contraction)? at s[p:] with backtracking, or returns -1.
//
//go:norace
func o200kLower(s string, p int) int {
	j, lastWEnd := p, -1
	for j < len(s) {
		c, n := next(s, j)
		if c&cU == 0 {
			break
		}
		if c&cW != 0 {
			lastWEnd = j + n
		}
		j += n
	}
	if j < len(s) {
		if c, n := next(s, j); c&cW != 0 {
			return withContraction(s, run(s, j+n, cW))
		}
	}
	switch {
	case lastWEnd == j:
		return withContraction(s, j)
	case lastWEnd > 0:
		return lastWEnd
	}
	return -1
}

// o200kUpper matches [U]+[W]*(?i:contraction)? at s[p:], or returns -1.
//
//go:norace
func o200kUpper(s string, p int) int {
	j := run(s, p, cU)
	if j == p {
		return -1
	}
	return withContraction(s, run(s, j, cW))
}

//go:norace
func withContraction(s string, e int) int {
	if e < len(s) && s[e] == '\'' {
		if ce := contraction(s, e, true); ce > 0 {
			return ce
		}
	}
	return e
}

// findDigits3 finds \p{N}{1,3}.
//
//go:norace
func findDigits3(s string, i int) (int, int) {
	for i < len(s) {
		c, n := next(s, i)
		if c&cN != 0 {
			j := i + n
			for k := 1; k < 3 && j < len(s); k++ {
				c2, n2 := next(s, j)
				if c2&cN == 0 {
					break
				}
				j += n2
			}
			return i, j
		}
		i += n
	}
	return -1, -1
}

//go:norace
func isDeepSeekCJK(r rune) bool {
	return (r >= 0x4e00 && r <= 0x9fa5) || (r >= 0x3040 && r <= 0x309f) || (r >= 0x30a0 && r <= 0x30ff)
}

// findDeepSeekCJK finds [一-龥぀-ゟ゠-ヿ]+.
//
//go:norace
func findDeepSeekCJK(s string, i int) (int, int) {
	for i < len(s) {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !isDeepSeekCJK(r) {
			i += n
			continue
		}
		j := i + n
		for j < len(s) {
			r, n := utf8.DecodeRuneInString(s[j:])
			if !isDeepSeekCJK(r) {
				break
			}
			j += n
		}
		return i, j
	}
	return -1, -1
}

//go:norace
func isASCIIPunct(b byte) bool {
	return (b >= '!' && b <= '/') || (b >= ':' && b <= '@') || (b >= '[' && b <= '`') || (b >= '{' && b <= '~')
}

//go:norace
func isASCIILetter(b byte) bool { return (b|0x20) >= 'a' && (b|0x20) <= 'z' }

// findDeepSeek finds DeepSeek-V3's third pattern; it is not total (digits and most control
// characters match no alternative), so the search may skip runes.
//
//go:norace
func findDeepSeek(s string, i int) (int, int) {
	for i < len(s) {
		if e := matchDeepSeek(s, i); e > 0 {
			return i, e
		}
		_, n := next(s, i)
		i += n
	}
	return -1, -1
}

//go:norace
func matchDeepSeek(s string, i int) int {
	// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
	if isASCIIPunct(s[i]) && i+1 < len(s) && isASCIILetter(s[i+1]) {
		j := i + 2
		for j < len(s) && isASCIILetter(s[j]) {
			j++
		}
		return j
	}
	c, n := next(s, i)
	// [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
	if c&(cL|cPS|cNL) == 0 && i+n < len(s) {
		if c2, n2 := next(s, i+n); c2&(cL|cM) != 0 {
			return run(s, i+n+n2, cL|cM)
		}
	}
	if c&(cL|cM) != 0 {
		return run(s, i+n, cL|cM)
	}
	//  ?[\p{P}\p{S}]+[\r\n]*
	j := i
	if s[i] == ' ' {
		j++
	}
	if j < len(s) {
		if c2, n2 := next(s, j); c2&cPS != 0 {
			j = run(s, j+n2, cPS)
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			return j
		}
	}
	if c&cS != 0 {
		return spaces(s, i)
	}
	return -1
}
