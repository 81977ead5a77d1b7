package router

import (
	"bytes"
	"encoding/json"
)

// Usage is the token accounting a model server reports in an OpenAI response
// ("usage"), non-streamed or, when the client asked for
// stream_options.include_usage, in the last server-sent event.
// It is plain data with no internal synchronisation: share it only read-only.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// CachedTokens is prompt_tokens_details.cached_tokens (vLLM reports it
	// with --enable-prompt-tokens-details).
	CachedTokens int `json:"-"`
}

type usageJSON struct {
	Usage *struct {
		Usage
		Details *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

// ParseUsage reads the usage object of a complete (non-streamed) JSON
// response body. It reports false when there is none, the body is not JSON,
// or a count is not a non-negative integer.
func ParseUsage(body []byte) (Usage, bool) {
	// Fast path, without allocating: read the object after the last "usage"
	// key (vLLM puts it last); fall back to decoding the whole document.
	i := bytes.LastIndex(body, []byte(`"usage"`))
	if i < 0 {
		return Usage{}, false
	}
	if u, ok := scanUsage(body[i+len(`"usage"`):]); ok && json.Valid(body) {
		return u, true
	}
	var v usageJSON
	if err := json.Unmarshal(body, &v); err != nil || v.Usage == nil {
		return Usage{}, false
	}
	u := v.usage()
	if u.PromptTokens < 0 || u.CompletionTokens < 0 || u.TotalTokens < 0 || u.CachedTokens < 0 {
		return Usage{}, false // counts feed counters, which never go down
	}
	return u, true
}

// scanUsage reads `: {...}` (the usage object) from the start of b: its
// token counts, wherever they are inside it. It reports false if b does not
// start with an object or a count is not a non-negative integer.
func scanUsage(b []byte) (Usage, bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return Usage{}, false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return Usage{}, false
	}
	end := objectEnd(b)
	if end < 0 {
		return Usage{}, false
	}
	obj := b[:end]
	var u Usage
	for _, f := range [...]struct {
		key string
		dst *int
	}{{`"prompt_tokens"`, &u.PromptTokens}, {`"completion_tokens"`, &u.CompletionTokens},
		{`"total_tokens"`, &u.TotalTokens}, {`"cached_tokens"`, &u.CachedTokens}} {
		j := bytes.Index(obj, []byte(f.key))
		if j < 0 {
			continue
		}
		rest := bytes.TrimLeft(obj[j+len(f.key):], " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			return Usage{}, false
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if bytes.HasPrefix(rest, []byte("null")) {
			continue
		}
		n, k := 0, 0
		for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' && k < 18 {
			n = n*10 + int(rest[k]-'0')
			k++
		}
		if k == 0 {
			return Usage{}, false
		}
		if k < len(rest) && (rest[k] >= '0' && rest[k] <= '9' || rest[k] == '.' || rest[k] == 'e' || rest[k] == 'E') {
			return Usage{}, false // longer, or not an integer: leave it to the decoder
		}
		*f.dst = n
	}
	return u, true
}

// objectEnd returns the index just past the JSON object starting at b[0],
// skipping strings, or -1 if it does not end.
func objectEnd(b []byte) int {
	depth, inStr := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

func (v *usageJSON) usage() Usage {
	u := v.Usage.Usage
	if v.Usage.Details != nil {
		u.CachedTokens = v.Usage.Details.CachedTokens
	}
	return u
}

// maxSSELine bounds the bytes an [SSEScanner] buffers for one line; longer
// lines (which carry no usage worth reading) are skipped.
const maxSSELine = 1 << 20

// SSEScanner reads server-sent events as they stream by, in chunks cut
// anywhere, and keeps the usage of the last event that carried one. It
// copies only the current partial line. Not safe for concurrent use.
type SSEScanner struct {
	line   []byte
	skip   bool // the current line is over maxSSELine
	events int
	usage  Usage
	hasUse bool
	done   bool
}

// Write consumes the next chunk of the stream. It never fails.
func (s *SSEScanner) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.add(p)
			break
		}
		s.add(p[:i])
		s.endLine()
		p = p[i+1:]
	}
	return n, nil
}

func (s *SSEScanner) add(p []byte) {
	if s.skip {
		return
	}
	if len(s.line)+len(p) > maxSSELine {
		s.skip, s.line = true, s.line[:0]
		return
	}
	s.line = append(s.line, p...)
}

func (s *SSEScanner) endLine() {
	line := bytes.TrimSuffix(s.line, []byte{'\r'})
	skip := s.skip
	s.line, s.skip = s.line[:0], false
	if skip || !bytes.HasPrefix(line, []byte("data:")) {
		return
	}
	data := bytes.TrimSpace(line[len("data:"):])
	if bytes.Equal(data, []byte("[DONE]")) {
		s.done = true
		return
	}
	s.events++
	if !bytes.Contains(data, []byte(`"usage"`)) {
		return
	}
	if u, ok := ParseUsage(data); ok {
		s.usage, s.hasUse = u, true
	}
}

// Usage returns the last usage seen, and whether one was.
func (s *SSEScanner) Usage() (Usage, bool) { return s.usage, s.hasUse }

// Events returns the number of data events seen (not counting [DONE]).
func (s *SSEScanner) Events() int { return s.events }

// Done reports whether the terminating "data: [DONE]" was seen.
func (s *SSEScanner) Done() bool { return s.done }
