package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	Content    string `json:"content"`
	ID         uint32 `json:"id"`
	Special    bool   `json:"special"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
	Normalized bool   `json:"normalized"`
}

// matcher finds added tokens by leftmost-longest match (HF uses an Aho-Corasick automaton with
// MatchKind::LeftmostLongest), honouring single_word, lstrip and rstrip.
type matcher struct {
	first [256]bool
	// only is the one byte every token starts with, or negative. Typical files (Llama-3's and Qwen's
	// "<|...|>" tokens) have a single first byte, and IndexByte skips the text between its
	// occurrences many bytes at a time.
	only  int
	nodes []trieNode
	toks  []addedToken
}

type trieNode struct {
	edges []trieEdge // sorted by byte
	tok   int32      // index into toks + 1; 0 = not terminal
}

type trieEdge struct {
	b     byte
	child int32
}

func newMatcher(toks []addedToken) *matcher {
	if len(toks) == 0 {
		return nil
	}
	m := &matcher{nodes: make([]trieNode, 1), toks: toks, only: -2}
	for i, t := range toks {
		if t.Content == "" {
			continue
		}
		switch c := int(t.Content[0]); m.only {
		case -2:
			m.only = c
		case c:
		default:
			m.only = -1
		}
		m.first[t.Content[0]] = true
		n := int32(0)
		for k := 0; k < len(t.Content); k++ {
			n = m.child(n, t.Content[k], true)
		}
		m.nodes[n].tok = int32(i) + 1 // a later duplicate wins, like HF's map
	}
	return m
}

func (m *matcher) child(n int32, b byte, create bool) int32 {
	edges := m.nodes[n].edges
	lo, hi := 0, len(edges)
	for lo < hi {
		mid := (lo + hi) / 2
		if edges[mid].b < b {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(edges) && edges[lo].b == b {
		return edges[lo].child
	}
	if !create {
		return -1
	}
	c := int32(len(m.nodes))
	m.nodes = append(m.nodes, trieNode{})
	edges = append(edges, trieEdge{})
	copy(edges[lo+1:], edges[lo:])
	edges[lo] = trieEdge{b: b, child: c}
	m.nodes[n].edges = edges
	return c
}

// longestAt returns the index+1 of the longest token that starts at s[i:], and its end.
func (m *matcher) longestAt(s string, i int) (tok int32, end int) {
	n := int32(0)
	for j := i; j < len(s); j++ {
		n = m.child(n, s[j], false)
		if n < 0 {
			break
		}
		if t := m.nodes[n].tok; t != 0 {
			tok, end = t, j+1
		}
	}
	return tok, end
}

// find returns the next accepted added token in s at or after pos: its span (widened by lstrip
// and rstrip; never before pos) and ID.
func (m *matcher) find(s string, pos int) (start, end int, id uint32, ok bool) {
	for i := pos; i < len(s); i++ {
		if m.only >= 0 {
			k := strings.IndexByte(s[i:], byte(m.only))
			if k < 0 {
				break
			}
			i += k
		} else if !m.first[s[i]] {
			continue
		}
		tok, e := m.longestAt(s, i)
		if tok == 0 {
			continue
		}
		t := &m.toks[tok-1]
		if t.SingleWord && ((i > 0 && endsWithWord(s[:i])) || (e < len(s) && startsWithWord(s[e:]))) {
			// Rejected; like the automaton's iterator, resume after the rejected match.
			i = e - 1
			continue
		}
		start, end = i, e
		if t.Lstrip {
			start = max(len(strings.TrimRightFunc(s[:i], unicode.IsSpace)), pos)
		}
		if t.Rstrip {
			end = len(s) - len(strings.TrimLeftFunc(s[e:], unicode.IsSpace))
		}
		return start, end, t.ID, true
	}
	return 0, 0, 0, false
}

// isWordRune reports whether r is in Rust regex's Unicode \w, which HF uses for single_word and
// the Whitespace pre-tokenizer: Alphabetic (letters, Nl and Other_Alphabetic, such as the
// circled letters), marks, decimal digits, connector punctuation and the two join controls.
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) ||
		unicode.In(r, unicode.Nl, unicode.Pc, unicode.Other_Alphabetic) || r == 0x200c || r == 0x200d
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordRune(r)
}
