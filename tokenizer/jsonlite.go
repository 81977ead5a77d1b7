package tokenizer

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A minimal reader for tokenizer.json's structure and its two big parts (model.vocab and
// model.merges), which encoding/json decodes slowly and with one allocation per string. It checks
// every step and never panics. Its functions only touch the caller's private buffers, so they are
// marked go:norace: the race detector would multiply load time by ten and find nothing here.

type jreader struct {
	b   []byte
	i   int
	buf []byte
}

var errJSON = errors.New("malformed JSON")

//go:norace
func (r *jreader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

//go:norace
func (r *jreader) peek() byte {
	r.ws()
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

//go:norace
func (r *jreader) expect(c byte) error {
	if r.peek() != c {
		return fmt.Errorf("%w: want %q at offset %d", errJSON, c, r.i)
	}
	r.i++
	return nil
}

// str reads a JSON string and returns its decoded bytes, valid until the next call.
//
//go:norace
func (r *jreader) str() ([]byte, error) {
	if err := r.expect('"'); err != nil {
		return nil, err
	}
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			r.i++
			return r.b[start : r.i-1], nil
		}
		if c == '\\' {
			r.buf = append(r.buf[:0], r.b[start:r.i]...)
			return r.strSlow()
		}
		r.i++
	}
	return nil, fmt.Errorf("%w: unterminated string", errJSON)
}

//go:norace
func (r *jreader) strSlow() ([]byte, error) {
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return r.buf, nil
		case c != '\\':
			r.buf = append(r.buf, c)
			r.i++
			continue
		}
		if r.i+1 >= len(r.b) {
			break
		}
		e := r.b[r.i+1]
		r.i += 2
		switch e {
		case '"', '\\', '/':
			r.buf = append(r.buf, e)
		case 'b':
			r.buf = append(r.buf, '\b')
		case 'f':
			r.buf = append(r.buf, '\f')
		case 'n':
			r.buf = append(r.buf, '\n')
		case 'r':
			r.buf = append(r.buf, '\r')
		case 't':
			r.buf = append(r.buf, '\t')
		case 'u':
			c1, ok := r.hex4()
			if !ok {
				return nil, fmt.Errorf("%w: bad \\u escape", errJSON)
			}
			ru := rune(c1)
			if utf16.IsSurrogate(ru) {
				ru = utf8.RuneError
				if r.i+1 < len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u' {
					save := r.i
					r.i += 2
					if c2, ok := r.hex4(); ok {
						if d := utf16.DecodeRune(rune(c1), rune(c2)); d != utf8.RuneError {
							ru = d
						} else {
							r.i = save
						}
					} else {
						r.i = save
					}
				}
			}
			r.buf = utf8.AppendRune(r.buf, ru)
		default:
			return nil, fmt.Errorf("%w: bad escape \\%c", errJSON, e)
		}
	}
	return nil, fmt.Errorf("%w: unterminated string", errJSON)
}

//go:norace
func (r *jreader) hex4() (uint16, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(r.b[r.i:r.i+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	r.i += 4
	return uint16(v), true
}

// uint reads a non-negative integer that fits in uint32.
//
//go:norace
func (r *jreader) uint() (uint32, error) {
	r.ws()
	start := r.i
	var v uint64
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		v = v*10 + uint64(r.b[r.i]-'0')
		if v > 1<<32-1 {
			return 0, fmt.Errorf("%w: id out of range at offset %d", errJSON, start)
		}
		r.i++
	}
	if r.i == start {
		return 0, fmt.Errorf("%w: want a non-negative integer at offset %d", errJSON, start)
	}
	if r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		return 0, fmt.Errorf("%w: want an integer at offset %d", errJSON, start)
	}
	return uint32(v), nil
}

// parseVocab reads {"token": id, ...}. Keys share one backing string.
//
//go:norace
func parseVocab(raw []byte) (map[string]uint32, error) {
	r := &jreader{b: raw}
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	type ent struct {
		off, n int
		id     uint32
	}
	var arena []byte
	ents := make([]ent, 0, len(raw)/12)
	if r.peek() == '}' {
		r.i++
		return map[string]uint32{}, nil
	}
	for {
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		off := len(arena)
		arena = append(arena, k...)
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		id, err := r.uint()
		if err != nil {
			return nil, err
		}
		ents = append(ents, ent{off, len(k), id})
		switch r.peek() {
		case ',':
			r.i++
			continue
		case '}':
			r.i++
		default:
			return nil, fmt.Errorf("%w: want ',' or '}' in vocab at offset %d", errJSON, r.i)
		}
		break
	}
	all := string(arena)
	m := make(map[string]uint32, len(ents))
	for _, e := range ents {
		m[all[e.off:e.off+e.n]] = e.id
	}
	return m, nil
}

// parseMerges reads merges in either format: ["a b", ...] or [["a","b"], ...], calling f with
// the two halves (valid only during the call).
//
//go:norace
func parseMerges(raw []byte, f func(rank int, a, b []byte) error) error {
	r := &jreader{b: raw}
	if err := r.expect('['); err != nil {
		return err
	}
	if r.peek() == ']' {
		return nil
	}
	var first []byte
	for n, rank := 0, 0; ; n++ {
		switch r.peek() {
		case '"':
			s, err := r.str()
			if err != nil {
				return err
			}
			if len(s) >= 8 && string(s[:8]) == "#version" {
				break // HF skips version headers in legacy merges
			}
			sp := -1
			for k, c := range s {
				if c == ' ' {
					sp = k
					break
				}
			}
			// HF splits "a b" on the first space and requires exactly two parts.
			if sp < 0 || indexByte(s[sp+1:], ' ') >= 0 {
				return fmt.Errorf("merge %d %q: want two space-separated tokens", n, s)
			}
			if err := f(rank, s[:sp], s[sp+1:]); err != nil {
				return err
			}
			rank++
		case '[':
			r.i++
			a, err := r.str()
			if err != nil {
				return err
			}
			first = append(first[:0], a...)
			if err := r.expect(','); err != nil {
				return err
			}
			b, err := r.str()
			if err != nil {
				return err
			}
			if err := r.expect(']'); err != nil {
				return fmt.Errorf("merge %d: want a pair: %w", n, err)
			}
			if err := f(rank, first, b); err != nil {
				return err
			}
			rank++
		default:
			return fmt.Errorf("%w: merge %d is neither a string nor a pair", errJSON, n)
		}
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			return nil
		default:
			return fmt.Errorf("%w: want ',' or ']' in merges at offset %d", errJSON, r.i)
		}
	}
}

//go:norace
func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// maxDepth is how deeply skip lets arrays and objects nest. HF's reader (serde_json) stops at
// 128 levels; without a bound, each level of a nested Sequence would be decoded again by the
// level above it, so a 72 KB file of 2,000 nested normalizers took 1.9 s and 187 MB to load.
const maxDepth = 128

// skip moves past one JSON value, checking brackets and strings but not every detail (the
// values this package uses are decoded again by a real decoder).
//
//go:norace
func (r *jreader) skip() error {
	depth := 0
	for {
		switch c := r.peek(); c {
		case 0:
			return fmt.Errorf("%w: unexpected end of input", errJSON)
		case '"':
			if err := r.skipString(); err != nil {
				return err
			}
		case '{', '[':
			if depth++; depth > maxDepth {
				return fmt.Errorf("%w: nested deeper than %d levels at offset %d", errJSON, maxDepth, r.i)
			}
			r.i++
			continue
		case '}', ']':
			if depth == 0 {
				return fmt.Errorf("%w: unexpected %q at offset %d", errJSON, c, r.i)
			}
			depth--
			r.i++
		case ',', ':':
			if depth == 0 {
				return fmt.Errorf("%w: unexpected %q at offset %d", errJSON, c, r.i)
			}
			r.i++
			continue
		default:
			start := r.i
			for r.i < len(r.b) {
				c := r.b[r.i]
				if c == ',' || c == '}' || c == ']' || c == ':' || c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '"' || c == '{' || c == '[' {
					break
				}
				r.i++
			}
			if r.i == start {
				return fmt.Errorf("%w: unexpected byte at offset %d", errJSON, r.i)
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

//go:norace
func (r *jreader) skipString() error {
	r.i++ // opening quote
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case '"':
			r.i++
			return nil
		case '\\':
			r.i += 2
		default:
			r.i++
		}
	}
	return fmt.Errorf("%w: unterminated string", errJSON)
}

type jfield struct {
	key string
	val []byte
}

// fields splits a JSON object into its members without decoding the values.
//
//go:norace
func fields(raw []byte) ([]jfield, error) {
	r := &jreader{b: raw}
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	var out []jfield
	if r.peek() == '}' {
		r.i++
	} else {
		for {
			k, err := r.str()
			if err != nil {
				return nil, err
			}
			key := string(k)
			if err := r.expect(':'); err != nil {
				return nil, err
			}
			r.ws()
			start := r.i
			if err := r.skip(); err != nil {
				return nil, fmt.Errorf("%q: %w", key, err)
			}
			out = append(out, jfield{key, raw[start:r.i]})
			if r.peek() == ',' {
				r.i++
				continue
			}
			if err := r.expect('}'); err != nil {
				return nil, err
			}
			break
		}
	}
	if r.peek() != 0 {
		return nil, fmt.Errorf("%w: trailing data at offset %d", errJSON, r.i)
	}
	return out, nil
}
