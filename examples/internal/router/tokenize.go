package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/routekit/routekit/tokenizer"
)

// Tokenizer turns a parsed request into the prompt's token IDs exactly as the
// model server will see them, appending to dst. Implementations must be safe
// for concurrent use.
type Tokenizer interface {
	Tokenize(ctx context.Context, b *Body, dst []uint32) ([]uint32, error)
}

// TokenizerFunc adapts a function to [Tokenizer].
// It is safe for concurrent use if the function is.
type TokenizerFunc func(ctx context.Context, b *Body, dst []uint32) ([]uint32, error)

// Tokenize calls f.
func (f TokenizerFunc) Tokenize(ctx context.Context, b *Body, dst []uint32) ([]uint32, error) {
	return f(ctx, b, dst)
}

// Encoder encodes text; addSpecial asks for the tokenizer's special prefix
// and suffix tokens (BOS). It must be safe for concurrent use.
type Encoder interface {
	Encode(text string, addSpecial bool) ([]uint32, error)
}

// ChatTemplate renders chat messages into the prompt text the model sees.
// Like a [Tokenizer], it must be safe for concurrent use.
type ChatTemplate func(msgs []Message, addGenerationPrompt, continueFinal bool) (string, error)

// Local tokenizes in process: completions with Encoder (special tokens added
// unless the body says otherwise, as vLLM does), chat by rendering Template
// and encoding without special tokens (the template carries them). With no
// Template, chat requests go to Chat (typically a [Remote] that asks the
// model server to render its own template); with neither they fail.
// A Local is safe for concurrent use if its Encoder, Template and Chat are;
// do not modify its fields while it is in use.
type Local struct {
	Encoder  Encoder
	Template ChatTemplate
	Chat     Tokenizer
}

// ErrNoChatTemplate is returned by [Local] for chat requests when it has no
// template and no Chat tokenizer.
var ErrNoChatTemplate = errors.New("router: no chat template to tokenize chat requests")

// Tokenize implements [Tokenizer].
func (l *Local) Tokenize(ctx context.Context, b *Body, dst []uint32) ([]uint32, error) {
	switch b.API {
	case Completions:
		if b.Prompt.IsTokens {
			return append(dst, b.Prompt.Tokens...), nil
		}
		special := b.AddSpecialTokens == nil || *b.AddSpecialTokens
		ids, err := l.Encoder.Encode(b.Prompt.Text, special)
		if err != nil {
			return dst, fmt.Errorf("router: tokenize: %w", err)
		}
		return appendIDs(dst, ids), nil
	case ChatCompletions:
		if l.Template == nil {
			if l.Chat == nil {
				return dst, ErrNoChatTemplate
			}
			return l.Chat.Tokenize(ctx, b, dst)
		}
		addGen := b.AddGenerationPrompt == nil || *b.AddGenerationPrompt
		text, err := l.Template(b.Messages, addGen && !b.ContinueFinalMessage, b.ContinueFinalMessage)
		if err != nil {
			return dst, fmt.Errorf("router: chat template: %w", err)
		}
		special := b.AddSpecialTokens != nil && *b.AddSpecialTokens
		ids, err := l.Encoder.Encode(text, special)
		if err != nil {
			return dst, fmt.Errorf("router: tokenize: %w", err)
		}
		return appendIDs(dst, ids), nil
	}
	return dst, fmt.Errorf("router: tokenize: unknown API %d", b.API)
}

// appendIDs appends ids to dst, or returns ids itself when dst is empty (no
// second copy of a long prompt).
func appendIDs(dst, ids []uint32) []uint32 {
	if len(dst) == 0 {
		return ids
	}
	return append(dst, ids...)
}

// HF adapts a pure-Go Hugging Face tokenizer to [Encoder].
func HF(t *tokenizer.Tokenizer) Encoder { return hfEncoder{t} }

type hfEncoder struct{ t *tokenizer.Tokenizer }

func (h hfEncoder) Encode(text string, addSpecial bool) ([]uint32, error) {
	return h.t.AppendEncode(nil, text, addSpecial), nil
}

// Bytes is the byte-level stand-in tokenizer of routekit's vLLM simulator:
// one token per UTF-8 byte, id = byte value, no special tokens. The embedded
// fleet uses it, so the gateway's block keys equal the ones the simulated
// servers publish in their KV events.
// It has no state and is safe for concurrent use.
type Bytes struct{}

// Encode implements [Encoder].
func (Bytes) Encode(text string, _ bool) ([]uint32, error) {
	ids := make([]uint32, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = uint32(text[i])
	}
	return ids, nil
}

// ChatML renders messages with the ChatML template (Qwen's):
// "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then
// "<|im_start|>assistant\n" when addGenerationPrompt is set; with
// continueFinal the last message is left open.
func ChatML(msgs []Message, addGenerationPrompt, continueFinal bool) (string, error) {
	var sb strings.Builder
	for i, m := range msgs {
		sb.WriteString("<|im_start|>")
		sb.WriteString(m.Role)
		sb.WriteByte('\n')
		sb.WriteString(string(m.Content))
		if continueFinal && i == len(msgs)-1 {
			break
		}
		sb.WriteString("<|im_end|>\n")
	}
	if addGenerationPrompt {
		sb.WriteString("<|im_start|>assistant\n")
	}
	return sb.String(), nil
}

// Remote tokenizes by asking a model server: POST {base}/tokenize with the
// completion prompt or the chat messages, as vLLM's /tokenize accepts them.
// The server applies its own chat template, so the tokens are exact. It costs
// one round trip per request. Safe for concurrent use.
type Remote struct {
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// Base returns the base URL ("http://host:port") of a server that serves
	// model, or false when none is available.
	Base func(model string) (string, bool)
}

// ErrNoTokenizeServer is returned by [Remote] when Base finds no server.
var ErrNoTokenizeServer = errors.New("router: no server to tokenize on")

// ErrTokenizeUnavailable is wrapped by [Remote]'s errors when the server
// could not tokenize for reasons of its own: unreachable, a 5xx answer, or a
// reply that is not a tokenize response. The request itself may be fine; the
// [Router] routes it on the byte estimate. (A 4xx answer is the server
// refusing the prompt and is not wrapped.)
var ErrTokenizeUnavailable = errors.New("router: tokenize server unavailable")

type remoteRequest struct {
	Model                string    `json:"model"`
	Prompt               *string   `json:"prompt,omitempty"`
	Messages             []Message `json:"messages,omitempty"`
	AddGenerationPrompt  *bool     `json:"add_generation_prompt,omitempty"`
	ContinueFinalMessage bool      `json:"continue_final_message,omitempty"`
	AddSpecialTokens     *bool     `json:"add_special_tokens,omitempty"`
}

// Tokenize implements [Tokenizer].
func (r *Remote) Tokenize(ctx context.Context, b *Body, dst []uint32) ([]uint32, error) {
	if b.API == Completions && b.Prompt.IsTokens {
		return append(dst, b.Prompt.Tokens...), nil
	}
	base, ok := r.Base(b.Model)
	if !ok {
		return dst, ErrNoTokenizeServer
	}
	rq := remoteRequest{Model: b.Model, AddSpecialTokens: b.AddSpecialTokens}
	if b.API == Completions {
		rq.Prompt = &b.Prompt.Text
	} else {
		rq.Messages, rq.AddGenerationPrompt, rq.ContinueFinalMessage = b.Messages, b.AddGenerationPrompt, b.ContinueFinalMessage
	}
	payload, err := json.Marshal(rq)
	if err != nil {
		return dst, fmt.Errorf("router: remote tokenize: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/tokenize", bytes.NewReader(payload))
	if err != nil {
		return dst, fmt.Errorf("router: remote tokenize: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(hr)
	if err != nil {
		return dst, fmt.Errorf("router: remote tokenize: %w: %w", ErrTokenizeUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return dst, fmt.Errorf("router: remote tokenize: %w: %w", ErrTokenizeUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := bytes.TrimSpace(data[:min(len(data), 512)])
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return dst, fmt.Errorf("router: remote tokenize: %s: %s", resp.Status, msg)
		}
		return dst, fmt.Errorf("router: remote tokenize: %w: %s: %s", ErrTokenizeUnavailable, resp.Status, msg)
	}
	var out struct {
		Tokens []uint32 `json:"tokens"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return dst, fmt.Errorf("router: remote tokenize: %w: decoding reply: %w", ErrTokenizeUnavailable, err)
	}
	return append(dst, out.Tokens...), nil
}
