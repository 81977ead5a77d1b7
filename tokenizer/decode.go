package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// decoder is one step of HF's decode chain: tokens in, tokens out; the results are joined.
type decoder interface {
	decode(toks []string) []string
}

func (t *Tokenizer) decode(ids []uint32, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if int64(id) >= int64(len(t.tokens)) || !t.known[id] || (skipSpecial && t.special[id]) {
			continue
		}
		toks = append(toks, t.tokens[id])
	}
	if !t.hasDecoder {
		return strings.Join(toks, " ")
	}
	for _, d := range t.decoders {
		toks = d.decode(toks)
	}
	return strings.Join(toks, "")
}

// byteLevelDecoder maps byte-level runes back to bytes and decodes them as lossy UTF-8.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decode(toks []string) []string {
	var b []byte
	for _, tok := range toks {
		start := len(b)
		ok := true
		for _, r := range tok {
			c, in := runeToByte[r]
			if !in {
				ok = false
				break
			}
			b = append(b, c)
		}
		if !ok {
			b = append(b[:start], tok...)
		}
	}
	return []string{string(appendLossy(nil, string(b)))}
}

// byteFallbackDecoder turns runs of <0xXX> tokens into text (U+FFFD per byte if invalid).
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, tok := range toks {
		if b, ok := parseByteToken(tok); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out
}

func parseByteToken(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(tok[3])
	lo, ok2 := hexVal(tok[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

type fuseDecoder struct{}

func (fuseDecoder) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

// stripDecoder removes up to start leading and stop trailing occurrences of content per token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		rs := []rune(tok)
		lo := 0
		for k := 0; k < d.start && k < len(rs) && rs[k] == d.content; k++ {
			lo = k + 1
		}
		hi := len(rs)
		for k := 0; k < d.stop; k++ {
			j := len(rs) - k - 1
			if j < 0 || rs[j] != d.content {
				break
			}
			hi = j
		}
		if hi < lo {
			hi = lo
		}
		out[i] = string(rs[lo:hi])
	}
	return out
}

type replaceDecoder struct{ pattern, content string }

func (d replaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		if d.pattern == "" {
			out[i] = tok
			continue
		}
		out[i] = strings.ReplaceAll(tok, d.pattern, d.content)
	}
	return out
}

// metaspaceDecoder turns the replacement rune into spaces, dropping it in the first token
// unless the prepend scheme is "never".
type metaspaceDecoder struct {
	replacement rune
	never       bool
}

func (d metaspaceDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		var b strings.Builder
		for _, r := range tok {
			switch {
			case r != d.replacement:
				b.WriteRune(r)
			case i == 0 && !d.never:
			default:
				b.WriteByte(' ')
			}
		}
		out[i] = b.String()
	}
	return out
}

// bpeSuffixDecoder replaces the end-of-word suffix by a space (nothing on the last token).
type bpeSuffixDecoder struct{ suffix string }

func (d bpeSuffixDecoder) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		sep := " "
		if i == len(toks)-1 {
			sep = ""
		}
		out[i] = strings.ReplaceAll(tok, d.suffix, sep)
	}
	return out
}
