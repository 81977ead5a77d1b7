package vllmsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// The OpenAI-compatible request bodies the server accepts. Unknown fields
// are ignored, as vLLM does (extra="allow").

// CompletionRequest is the body of POST /v1/completions.
// It is plain data with no internal synchronisation: share it only read-only.
type CompletionRequest struct {
	Model  string `json:"model"`
	Prompt Prompt `json:"prompt"`
	commonParams
	Echo bool `json:"echo,omitempty"`
}

// ChatRequest is the body of POST /v1/chat/completions.
// It is plain data with no internal synchronisation: share it only read-only.
type ChatRequest struct {
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages"`
	commonParams
	MaxCompletionTokens  *int  `json:"max_completion_tokens,omitempty"`
	AddGenerationPrompt  *bool `json:"add_generation_prompt,omitempty"`
	ContinueFinalMessage bool  `json:"continue_final_message,omitempty"`
}

type commonParams struct {
	MaxTokens        *int            `json:"max_tokens,omitempty"`
	Stream           bool            `json:"stream,omitempty"`
	StreamOptions    *StreamOptions  `json:"stream_options,omitempty"`
	IgnoreEOS        bool            `json:"ignore_eos,omitempty"`
	N                *int            `json:"n,omitempty"`
	Seed             *int64          `json:"seed,omitempty"`
	Temperature      *float64        `json:"temperature,omitempty"`
	CacheSalt        *string         `json:"cache_salt,omitempty"`
	KVTransferParams json.RawMessage `json:"kv_transfer_params,omitempty"`
	RequestID        string          `json:"request_id,omitempty"`
	AddSpecialTokens *bool           `json:"add_special_tokens,omitempty"`
	VLLMXArgs        map[string]any  `json:"vllm_xargs,omitempty"`
}

// StreamOptions is the OpenAI stream_options object.
// It is plain data with no internal synchronisation: share it only read-only.
type StreamOptions struct {
	IncludeUsage         *bool `json:"include_usage,omitempty"`
	ContinuousUsageStats bool  `json:"continuous_usage_stats,omitempty"`
}

// ChatMessage is one element of "messages". Content may be a string or a
// list of {"type":"text","text":...} parts.
// It is plain data with no internal synchronisation: share it only read-only.
type ChatMessage struct {
	Role    string      `json:"role"`
	Content ChatContent `json:"content"`
}

// ChatContent is a message's content, flattened to text.
// It is plain data with no internal synchronisation: share it only read-only.
type ChatContent string

// UnmarshalJSON accepts a string, null, or a list of text parts.
func (c *ChatContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = ChatContent(s)
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
		var buf bytes.Buffer
		for _, p := range parts {
			if p.Type != "text" {
				return fmt.Errorf("content part type %q is not supported", p.Type)
			}
			buf.WriteString(p.Text)
		}
		*c = ChatContent(buf.String())
		return nil
	}
	return errors.New("content must be a string or a list of text parts")
}

// Prompt is a completion prompt: a string, a list of strings, a list of
// token ids, or a list of token-id lists. The server accepts exactly one
// prompt (batches of prompts are rejected with 400).
// It is plain data with no internal synchronisation: share it only read-only.
type Prompt struct {
	Text   string
	Tokens []uint32
	IsText bool
	Set    bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errors.New("empty prompt")
	}
	p.Set = true
	switch b[0] {
	case '"':
		p.IsText = true
		return json.Unmarshal(b, &p.Text)
	case '[':
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		if len(raw) == 0 {
			return errors.New("prompt must not be empty")
		}
		first := bytes.TrimSpace(raw[0])
		if len(first) > 0 && (first[0] == '"' || first[0] == '[') {
			if len(raw) > 1 {
				return errors.New("batched prompts are not supported: send one prompt per request")
			}
			return p.UnmarshalJSON(first)
		}
		p.Tokens = make([]uint32, len(raw))
		for i, r := range raw {
			var v int64
			if err := json.Unmarshal(r, &v); err != nil {
				return fmt.Errorf("prompt[%d]: token ids must be integers", i)
			}
			if v < 0 || v > 1<<32-1 {
				return fmt.Errorf("prompt[%d]: token id %d out of range", i, v)
			}
			p.Tokens[i] = uint32(v)
		}
		return nil
	case 'n':
		p.Set = false
		return nil
	}
	return errors.New("prompt must be a string, a list of strings, or a list of token ids")
}

// APIError is an OpenAI-style error as vLLM returns it: HTTP status Code and
// body {"error": {"message", "type", "param", "code"}}.
// Like any error value, it is immutable once returned and safe for concurrent
// use.
type APIError struct {
	Code    int
	Type    string
	Message string
	Param   string
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("vllmsim: %d %s: %s", e.Code, e.Type, e.Message)
}

func badRequest(format string, args ...any) *APIError {
	return &APIError{Code: http.StatusBadRequest, Type: "BadRequestError", Message: fmt.Sprintf(format, args...)}
}

func (e *APIError) write(w http.ResponseWriter) {
	var param any
	if e.Param != "" {
		param = e.Param
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": e.Message, "type": e.Type, "param": param, "code": e.Code,
	}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code)
	_, _ = w.Write(body)
}

// maxBody caps request bodies (vLLM has no hard cap; 32 MiB covers
// million-token prompts as JSON).
const maxBody = 32 << 20

// decodeBody reads and decodes a JSON body into v, mapping every failure to
// a 400 like vLLM's request-validation handler.
func decodeBody(r io.Reader, v any) *APIError {
	body, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return badRequest("could not read the request body: %v", err)
	}
	if len(body) > maxBody {
		return &APIError{Code: http.StatusRequestEntityTooLarge, Type: "BadRequestError", Message: "request body too large"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return badRequest("JSON decode error at offset %d: %v", se.Offset, se)
		case errors.As(err, &te):
			ae := badRequest("%s: input should be a valid %s, got %s", te.Field, te.Type, te.Value)
			ae.Param = te.Field
			return ae
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("JSON decode error: unexpected end of input")
		default:
			return badRequest("invalid request: %v", err)
		}
	}
	return nil
}

// ParseCompletionRequest decodes and validates a /v1/completions body. It
// never panics; every problem is a 400 *APIError.
func ParseCompletionRequest(body []byte) (*CompletionRequest, error) {
	var req CompletionRequest
	if e := decodeBody(bytes.NewReader(body), &req); e != nil {
		return nil, e
	}
	if !req.Prompt.Set {
		return nil, &APIError{Code: 400, Type: "BadRequestError", Message: "prompt: field required", Param: "prompt"}
	}
	if err := req.commonParams.validate(req.MaxTokens, "max_tokens"); err != nil {
		return nil, err
	}
	return &req, nil
}

// ParseChatRequest decodes and validates a /v1/chat/completions body.
func ParseChatRequest(body []byte) (*ChatRequest, error) {
	var req ChatRequest
	if e := decodeBody(bytes.NewReader(body), &req); e != nil {
		return nil, e
	}
	if len(req.Messages) == 0 {
		return nil, &APIError{Code: 400, Type: "BadRequestError", Message: "messages: field required and must not be empty", Param: "messages"}
	}
	mt, name := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		mt, name = req.MaxCompletionTokens, "max_completion_tokens"
	}
	if err := req.commonParams.validate(mt, name); err != nil {
		return nil, err
	}
	if req.ContinueFinalMessage && req.AddGenerationPrompt != nil && *req.AddGenerationPrompt {
		return nil, badRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
	}
	return &req, nil
}

func (c *commonParams) validate(maxTokens *int, name string) *APIError {
	if maxTokens != nil && *maxTokens < 1 {
		e := badRequest("%s must be at least 1, got %d.", name, *maxTokens)
		e.Param = name
		return e
	}
	if c.N != nil && *c.N != 1 {
		e := badRequest("n must be 1 in this simulator, got %d.", *c.N)
		e.Param = "n"
		return e
	}
	if c.StreamOptions != nil && !c.Stream {
		e := badRequest("Stream options can only be defined when `stream=True`.")
		e.Param = "stream_options"
		return e
	}
	if c.CacheSalt != nil && (len(*c.CacheSalt) == 0 || len(*c.CacheSalt) > 1024) {
		e := badRequest("Parameter 'cache_salt' must be a non-empty string of at most 1024 characters.")
		e.Param = "cache_salt"
		return e
	}
	if len(c.KVTransferParams) > 0 && !bytes.Equal(bytes.TrimSpace(c.KVTransferParams), []byte("null")) {
		var m map[string]any
		if err := json.Unmarshal(c.KVTransferParams, &m); err != nil {
			e := badRequest("kv_transfer_params must be an object")
			e.Param = "kv_transfer_params"
			return e
		}
	}
	return nil
}

// includeUsage reports whether a streamed response ends with a usage chunk.
func (c *commonParams) includeUsage() bool {
	return c.StreamOptions != nil && (c.StreamOptions.IncludeUsage == nil || *c.StreamOptions.IncludeUsage)
}
