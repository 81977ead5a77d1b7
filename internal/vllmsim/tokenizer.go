package vllmsim

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/routekit/routekit/tokenizer"
)

// Tokenizer turns text into token ids and back. The server uses it for
// prompts, /tokenize and /detokenize, and to render output tokens as text.
// Implementations must be safe for concurrent use.
//
// Plug the router's tokenizer in (WithTokenizer) so that router-side and
// server-side block keys agree; ByteTokenizer is the self-contained default.
type Tokenizer interface {
	// Encode returns the token ids of text. addSpecial asks for the
	// tokenizer's special prefix tokens (BOS), if it has any.
	Encode(text string, addSpecial bool) ([]uint32, error)
	// Decode returns the text of ids.
	Decode(ids []uint32) (string, error)
}

// ChatTemplate renders chat messages into the prompt text the engine sees.
// A Server may call it from several goroutines at once, so it must be safe for
// concurrent use.
type ChatTemplate func(msgs []Message, addGenerationPrompt, continueFinal bool) (string, error)

// Message is one chat message.
// It is plain data with no internal synchronisation: share it only read-only.
type Message struct {
	Role    string
	Content string
}

// ErrBadToken is returned by ByteTokenizer.Decode for ids it never produces.
var ErrBadToken = errors.New("vllmsim: token id out of the tokenizer's vocabulary")

// ByteTokenizer is a deterministic stand-in tokenizer: one token per UTF-8
// byte, id = byte value. Decode inverts Encode exactly (invalid UTF-8
// sequences come back as U+FFFD, as a real byte-level BPE does). It has no
// special tokens. Prompts are therefore about 4× longer in tokens than with
// a real BPE vocabulary; size workloads in tokens, not characters.
// ByteTokenizer is stateless and safe for concurrent use.
type ByteTokenizer struct{}

var _ Tokenizer = ByteTokenizer{}

// Encode implements Tokenizer.
func (ByteTokenizer) Encode(text string, _ bool) ([]uint32, error) {
	ids := make([]uint32, len(text))
	for i := 0; i < len(text); i++ {
		ids[i] = uint32(text[i])
	}
	return ids, nil
}

// Decode implements Tokenizer.
func (ByteTokenizer) Decode(ids []uint32) (string, error) {
	b := make([]byte, len(ids))
	for i, id := range ids {
		if id > 255 {
			return "", fmt.Errorf("%w: %d", ErrBadToken, id)
		}
		b[i] = byte(id)
	}
	if !utf8.Valid(b) {
		return strings.ToValidUTF8(string(b), "\uFFFD"), nil
	}
	return string(b), nil
}

// ChatML is the ChatML template (Qwen's): each message as
// "<|im_start|>{role}\n{content}<|im_end|>\n", then "<|im_start|>assistant\n"
// when addGenerationPrompt is set. With continueFinal the last message is
// left open (no <|im_end|>), for the model to continue it.
func ChatML(msgs []Message, addGenerationPrompt, continueFinal bool) (string, error) {
	if addGenerationPrompt && continueFinal {
		return "", errors.New("vllmsim: add_generation_prompt and continue_final_message are mutually exclusive")
	}
	var b strings.Builder
	for i, m := range msgs {
		b.WriteString("<|im_start|>")
		b.WriteString(m.Role)
		b.WriteByte('\n')
		b.WriteString(m.Content)
		if continueFinal && i == len(msgs)-1 {
			break
		}
		b.WriteString("<|im_end|>\n")
	}
	if addGenerationPrompt {
		b.WriteString("<|im_start|>assistant\n")
	}
	return b.String(), nil
}

// HFTokenizer adapts the router's tokenizer (package tokenizer, a
// tokenizer.json) to Tokenizer, so that the simulated server tokenizes
// exactly as the router and as a real vLLM with that model would, and their
// block keys agree. Decode drops ids outside the vocabulary, as HF does.
func HFTokenizer(t *tokenizer.Tokenizer) Tokenizer { return hfTokenizer{t} }

type hfTokenizer struct{ t *tokenizer.Tokenizer }

func (h hfTokenizer) Encode(text string, addSpecial bool) ([]uint32, error) {
	return h.t.AppendEncode(make([]uint32, 0, len(text)/3+4), text, addSpecial), nil
}

func (h hfTokenizer) Decode(ids []uint32) (string, error) { return h.t.Decode(ids), nil }
