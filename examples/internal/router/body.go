package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// API is the OpenAI-compatible endpoint a request body was sent to.
// API values are immutable and safe for concurrent use.
type API uint8

const (
	// Completions is POST /v1/completions.
	Completions API = iota + 1
	// ChatCompletions is POST /v1/chat/completions.
	ChatCompletions
)

// String returns the API's path.
func (a API) String() string {
	switch a {
	case Completions:
		return "/v1/completions"
	case ChatCompletions:
		return "/v1/chat/completions"
	}
	return "unknown"
}

// APIForPath returns the API served at path (a request path, query allowed,
// matched on its suffix so that /openai/v1/completions works), or false.
func APIForPath(path string) (API, bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/v1/chat/completions"):
		return ChatCompletions, true
	case strings.HasSuffix(path, "/v1/completions"):
		return Completions, true
	}
	return 0, false
}

// Body is what routing needs from an OpenAI-compatible request body. It is
// decoded once, by [ParseBody]; the raw bytes are forwarded unchanged, so
// fields the gateway does not know (sampling parameters, vLLM extras) reach
// the model server as the client sent them.
// It is plain data with no internal synchronisation: share it only read-only.
type Body struct {
	API   API
	Model string `json:"model"`
	// Prompt is the completion prompt (Completions only).
	Prompt Prompt `json:"prompt"`
	// Messages are the chat messages (ChatCompletions only).
	Messages []Message `json:"messages"`
	// Stream asks for server-sent events.
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	// AddGenerationPrompt is chat's add_generation_prompt (nil means true).
	AddGenerationPrompt *bool `json:"add_generation_prompt"`
	// ContinueFinalMessage is chat's continue_final_message.
	ContinueFinalMessage bool `json:"continue_final_message"`
	// AddSpecialTokens overrides whether special tokens (BOS) are added: vLLM's
	// default is true for completions and false for chat (the template has them).
	AddSpecialTokens *bool `json:"add_special_tokens"`
	// CacheSalt is vLLM's cache_salt: it isolates the prefix cache per tenant.
	CacheSalt string `json:"cache_salt"`
	// User is the OpenAI user field, used as the fairness key when set.
	User string `json:"user"`
}

// MaxOutputTokens returns max_completion_tokens, else max_tokens, else 0.
func (b *Body) MaxOutputTokens() int {
	switch {
	case b.MaxCompletionTokens != nil:
		return *b.MaxCompletionTokens
	case b.MaxTokens != nil:
		return *b.MaxTokens
	}
	return 0
}

// Message is one chat message. Content is flattened to text: a string, or the
// concatenated text parts of a content list.
// It is plain data with no internal synchronisation: share it only read-only.
type Message struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
}

// Content is a chat message's content flattened to text.
// It is an immutable string, safe for concurrent use.
type Content string

// UnmarshalJSON accepts a string, null, or a list of content parts; the text
// of "text" parts is concatenated and other parts (images, audio) are skipped:
// they do not change the text prefix a cache holds.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = Content(s)
		return nil
	case bytes.Equal(b, []byte("null")):
		*c = ""
		return nil
	case len(b) > 0 && b[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type == "text" {
				sb.WriteString(p.Text)
			}
		}
		*c = Content(sb.String())
		return nil
	}
	return errors.New("content must be a string, null or a list of parts")
}

// Prompt is a completion prompt: a string, a list of strings, a list of token
// IDs or a list of token-ID lists. Routing uses the first prompt of a list:
// vLLM serves each as its own request, and they usually share a prefix.
// It is plain data with no internal synchronisation: share it only read-only.
type Prompt struct {
	Text   string
	Tokens []uint32
	// IsTokens reports that the prompt was given as token IDs.
	IsTokens bool
	// Count is the number of prompts in the list (1 for a single prompt).
	Count int
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	switch b[0] {
	case '"':
		p.Count = 1
		return json.Unmarshal(b, &p.Text)
	case '[':
	default:
		return errors.New("prompt must be a string, a list of strings or a list of token ids")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	if len(items) == 0 {
		return errors.New("prompt is an empty list")
	}
	first := bytes.TrimSpace(items[0])
	switch {
	case len(first) > 0 && first[0] == '"': // list of strings
		p.Count = len(items)
		return json.Unmarshal(first, &p.Text)
	case len(first) > 0 && first[0] == '[': // list of token lists
		p.Count, p.IsTokens = len(items), true
		return json.Unmarshal(first, &p.Tokens)
	default: // one token list
		p.Count, p.IsTokens = 1, true
		return json.Unmarshal(b, &p.Tokens)
	}
}

// BodyError reports a request body that cannot be routed; the gateway answers
// 400 with its message.
// A BodyError is not modified after it is returned and is safe for
// concurrent use.
type BodyError struct{ Err error }

// Error implements error.
func (e *BodyError) Error() string { return "router: bad request body: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *BodyError) Unwrap() error { return e.Err }

// ParseBody decodes body, sent to api, once. It checks what routing needs (a
// model, and a prompt or messages) and nothing else: validating sampling
// parameters is the model server's job.
func ParseBody(api API, body []byte) (*Body, error) {
	b := &Body{API: api}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &BodyError{errors.New("empty body")}
	}
	if err := json.Unmarshal(body, b); err != nil {
		return nil, &BodyError{fmt.Errorf("invalid JSON: %w", err)}
	}
	if b.Model == "" {
		return nil, &BodyError{errors.New(`missing "model"`)}
	}
	switch api {
	case Completions:
		if b.Prompt.Count == 0 {
			return nil, &BodyError{errors.New(`missing "prompt"`)}
		}
	case ChatCompletions:
		if len(b.Messages) == 0 {
			return nil, &BodyError{errors.New(`missing "messages"`)}
		}
	default:
		return nil, &BodyError{fmt.Errorf("unknown API %d", api)}
	}
	return b, nil
}
