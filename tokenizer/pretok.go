package tokenizer

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

type preKind uint8

const (
	preSplit preKind = iota
	preByteLevel
	preMetaspace
	preDigits
)

// behavior is HF's SplitDelimiterBehavior.
type behavior uint8

const (
	isolated behavior = iota
	removed
	mergedWithPrevious
	mergedWithNext
	contiguous
)

type prependScheme uint8

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

// preStep is one pre-tokenizer of the (flattened) sequence.
type preStep struct {
	kind     preKind
	find     finder          // preSplit with a literal or known pattern
	scan     scanKind        // preSplit with a known total pattern: find, called directly
	re       *regexp2.Regexp // preSplit with an unknown regex (slower fallback)
	pattern  string          // preSplit: the regex pattern, if any
	behavior behavior
	invert   bool

	addPrefixSpace bool // ByteLevel
	useRegex       bool // ByteLevel

	replacement string // Metaspace
	scheme      prependScheme
	split       bool

	individual bool // Digits
}

// span is a piece of a string produced by a split, before behaviours are applied.
type span struct {
	start, end int
	match      bool
}

// identity reports whether the step passes every piece on unchanged: a ByteLevel step without
// regex or prefix space only marks the model as byte-level (Llama-3, Qwen3 and GPT-4o files).
func (p *preStep) identity() bool {
	return p.kind == preByteLevel && !p.addPrefixSpace && !p.useRegex
}

// emit feeds a piece to step k, skipping identity steps; most pieces go straight to the model
// instead of through a preTokenize call per step (~8% of a cold Llama-3 encode's instructions).
func (t *Tokenizer) emit(st *state, dst []uint32, k int, s string, atStart bool) []uint32 {
	for k < len(t.pre) && t.pre[k].identity() {
		k++
	}
	if k == len(t.pre) {
		if s == "" {
			return dst
		}
		return t.model.encode(st, dst, s)
	}
	return t.preTokenize(st, dst, k, s, atStart)
}

// preTokenize runs pre-tokenizer k on s and feeds the pieces to the next step, the last step
// feeding the model. Pieces are substrings, so the common path does not allocate.
func (t *Tokenizer) preTokenize(st *state, dst []uint32, k int, s string, atStart bool) []uint32 {
	if s == "" {
		return dst
	}
	if k == len(t.pre) {
		return t.model.encode(st, dst, s)
	}
	p := &t.pre[k]
	switch p.kind {
	case preByteLevel:
		if p.addPrefixSpace && s[0] != ' ' {
			s = " " + s
		}
		if !p.useRegex {
			return t.preTokenize(st, dst, k+1, s, atStart)
		}
		return t.splitStream(st, dst, k, s, atStart, knownFinders[patGPT2], scanKindGPT2, true, true)
	case preDigits:
		f := findDigitRun
		if p.individual {
			f = findDigit
		}
		return t.splitStream(st, dst, k, s, atStart, f, 0, true, true)
	case preMetaspace:
		s = strings.ReplaceAll(s, " ", p.replacement)
		if p.scheme == prependAlways || (p.scheme == prependFirst && atStart) {
			if !strings.HasPrefix(s, p.replacement) {
				s = p.replacement + s
			}
		}
		if !p.split {
			return t.preTokenize(st, dst, k+1, s, atStart)
		}
		rep := p.replacement
		return t.splitBuffered(st, dst, k, s, atStart, func(s string, i int) (int, int) {
			j := strings.Index(s[i:], rep)
			if j < 0 {
				return -1, -1
			}
			return i + j, i + j + len(rep)
		}, false, mergedWithNext)
	}
	f, scan := p.find, p.scan
	if p.re != nil {
		f, scan = regexMatches(p.re, s), 0
	}
	switch p.behavior {
	case isolated:
		return t.splitStream(st, dst, k, s, atStart, f, scan, true, true)
	case removed:
		return t.splitStream(st, dst, k, s, atStart, f, scan, p.invert, !p.invert)
	}
	return t.splitBuffered(st, dst, k, s, atStart, f, p.invert, p.behavior)
}

// splitStream handles the Isolated and Removed behaviours without buffering. With scan set it
// calls that scanner directly (find is its equivalent), saving an indirect call per piece.
func (t *Tokenizer) splitStream(st *state, dst []uint32, k int, s string, atStart bool, find finder, scan scanKind, keepMatch, keepGap bool) []uint32 {
	gap, pos := 0, 0
	for pos < len(s) {
		var ms, me int
		if scan != 0 {
			ms, me = pos, scan.end(s, pos)
		} else {
			ms, me = find(s, pos)
		}
		if ms < 0 {
			break
		}
		if ms > gap && keepGap {
			dst = t.emit(st, dst, k+1, s[gap:ms], atStart && gap == 0)
		}
		if me == ms { // an empty match splits the gap but yields no piece (HF drops empty pieces)
			gap = ms
			_, n := utf8.DecodeRuneInString(s[ms:])
			pos = ms + max(n, 1)
			continue
		}
		if keepMatch {
			dst = t.emit(st, dst, k+1, s[ms:me], atStart && ms == 0)
		}
		gap, pos = me, me
	}
	if gap < len(s) && keepGap {
		dst = t.emit(st, dst, k+1, s[gap:], atStart && gap == 0)
	}
	return dst
}

// splitBuffered handles the merging behaviours, which need to see neighbouring pieces.
func (t *Tokenizer) splitBuffered(st *state, dst []uint32, k int, s string, atStart bool, find finder, invert bool, b behavior) []uint32 {
	for len(st.spans) <= k {
		st.spans = append(st.spans, nil)
	}
	sp := st.spans[k][:0]
	gap, pos := 0, 0
	for pos < len(s) {
		ms, me := find(s, pos)
		if ms < 0 {
			break
		}
		if ms > gap {
			sp = append(sp, span{gap, ms, invert})
		}
		if me == ms {
			gap = ms
			_, n := utf8.DecodeRuneInString(s[ms:])
			pos = ms + max(n, 1)
			continue
		}
		sp = append(sp, span{ms, me, !invert})
		gap, pos = me, me
	}
	if gap < len(s) {
		sp = append(sp, span{gap, len(s), invert})
	}
	// Apply the behaviour in place; "match" now means "remove" only for Removed, which does not
	// reach here.
	out := sp[:0]
	switch b {
	case contiguous:
		for i, x := range sp {
			if i > 0 && x.match == sp[i-1].match && len(out) > 0 {
				out[len(out)-1].end = x.end
			} else {
				out = append(out, x)
			}
		}
	case mergedWithPrevious:
		prev := false
		for _, x := range sp {
			m := x.match
			if m && !prev && len(out) > 0 {
				out[len(out)-1].end = x.end
			} else {
				out = append(out, x)
			}
			prev = m
		}
	case mergedWithNext:
		// Walk backwards: a delimiter joins the piece after it unless that piece is a delimiter.
		w := len(sp)
		prev := false
		for i := len(sp) - 1; i >= 0; i-- {
			x := sp[i]
			m := x.match
			if m && !prev && w < len(sp) {
				sp[w].start = x.start
			} else {
				w--
				sp[w] = x
			}
			prev = m
		}
		out = sp[w:]
	}
	st.spans[k] = sp
	for _, x := range out {
		dst = t.emit(st, dst, k+1, s[x.start:x.end], atStart && x.start == 0)
	}
	return dst
}

func findDigit(s string, i int) (int, int) {
	for i < len(s) {
		c, n := next(s, i)
		if c&cN != 0 {
			return i, i + n
		}
		i += n
	}
	return -1, -1
}

func findDigitRun(s string, i int) (int, int) {
	ms, me := findDigit(s, i)
	if ms < 0 {
		return ms, me
	}
	return ms, run(s, me, cN)
}

// findWordOrPunct finds the Whitespace pre-tokenizer's pieces, matches of \w+|[^\w\s]+ with
// Rust regex's Unicode classes (isWordRune, White_Space). regexp2 would read the pattern with
// .NET's \w, which lacks spacing marks, Nl and Other_Alphabetic: it split Hindi words at each
// vowel sign, where HF keeps them whole.
func findWordOrPunct(s string, i int) (int, int) {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		word := isWordRune(r)
		if !word && unicode.IsSpace(r) {
			i += n
			continue
		}
		j := i + n
		for j < len(s) {
			r, n := utf8.DecodeRuneInString(s[j:])
			if isWordRune(r) != word || (!word && unicode.IsSpace(r)) {
				break
			}
			j += n
		}
		return i, j
	}
	return -1, -1
}

func literalFinder(lit string) finder {
	return func(s string, i int) (int, int) {
		j := strings.Index(s[i:], lit)
		if j < 0 {
			return -1, -1
		}
		return i + j, i + j + len(lit)
	}
}

// compileRegex compiles a pattern this package has no scanner for, with regexp2's run-time
// engine (backtracking, lookaround, Unicode classes).
func compileRegex(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: split pattern %q: %w", pattern, err)
	}
	re.MatchTimeout = 10 * time.Second
	return re, nil
}

// regexMatches runs re over all of s once and returns a finder over the matches found.
func regexMatches(re *regexp2.Regexp, s string) finder {
	runes := []rune(s)
	offs := make([]int, len(runes)+1)
	o := 0
	for i, r := range runes {
		offs[i] = o
		o += utf8.RuneLen(r)
	}
	offs[len(runes)] = o
	var spans [][2]int
	m, err := re.FindRunesMatch(runes)
	for err == nil && m != nil {
		spans = append(spans, [2]int{offs[m.Index], offs[m.Index+m.Length]})
		m, err = re.FindNextMatch(m)
	}
	k := 0
	return func(_ string, i int) (int, int) {
		for k < len(spans) && spans[k][0] < i {
			k++
		}
		if k == len(spans) {
			return -1, -1
		}
		return spans[k][0], spans[k][1]
	}
}
