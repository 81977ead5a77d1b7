package scheduler

import (
	"math"
	"net/http"
	"time"
)

// Request is what the scheduler knows about one inference request. The gateway
// fills it once, after parsing the body and tokenizing, so that no filter or
// scorer re-parses anything. Fields a plugin does not need may stay zero.
//
// A Request must not be modified while a call that received it is running; it may
// be reused for another request afterwards.
// The scheduler, flow control and the built-in plugins only read it, so concurrent
// calls may share one Request.
type Request struct {
	// ID identifies the request in logs and explain output (for example x-request-id).
	ID string

	// Model is the model name the client asked for (after any rewrite).
	Model string

	// LoRA is the LoRA adapter the request needs, or "" for the base model.
	LoRA string

	// Tokens are the prompt's token ids, if the gateway tokenized it.
	Tokens []uint32

	// BlockKeys are the prompt's chained KV-block keys (prefix.Hasher), one per full
	// block of BlockSize tokens. Prefix matching uses these; they are computed once.
	BlockKeys []uint64

	// BlockSize is the number of tokens per block of BlockKeys. Zero means 16.
	BlockSize int

	// PromptTokens is the prompt length in tokens. Zero means len(Tokens), or
	// len(BlockKeys)·BlockSize when there are no tokens. Set it when only an
	// estimate is available (no tokenizer).
	PromptTokens int

	// MaxOutputTokens is the client's output limit (max_tokens), 0 if unknown.
	MaxOutputTokens int

	// Priority orders requests in flow control: higher is more important, bands are
	// strict. Negative priorities are sheddable: rejected, not queued, when the fleet
	// is saturated.
	Priority int

	// Tenant is the fairness key inside a priority band (for example a user, API key
	// or x-llm-d-inference-fairness-id). Requests of one tenant cannot starve
	// another tenant of the same band.
	Tenant string

	// Session identifies a conversation for session affinity (for example the
	// x-session-id header).
	Session string

	// Headers are the client's request headers, for user plugins. Built-ins read
	// only the typed fields above.
	Headers http.Header

	// Size is the request's size in bytes, counted against flow control's byte bound.
	Size int64

	// Deadline orders requests under deadline (EDF) ordering; zero means arrival +
	// TTL. It is not a cancellation: use the context for that.
	Deadline time.Time

	// TTL bounds how long the request may wait in flow control; zero means the
	// queue's default.
	TTL time.Duration
}

const defaultBlockSize = 16

// blockSize returns the effective block size.
func (r *Request) blockSize() int {
	if r.BlockSize > 0 {
		return r.BlockSize
	}
	return defaultBlockSize
}

// PromptLen returns the prompt length in tokens: PromptTokens if set, else
// len(Tokens), else len(BlockKeys)·BlockSize (saturating at math.MaxInt
// rather than wrapping negative for an absurd BlockSize).
func (r *Request) PromptLen() int {
	switch {
	case r.PromptTokens > 0:
		return r.PromptTokens
	case len(r.Tokens) > 0:
		return len(r.Tokens)
	}
	n, bs := len(r.BlockKeys), r.blockSize()
	if n > math.MaxInt/bs {
		return math.MaxInt
	}
	return n * bs
}

// CachedTokens converts a number of matched prefix blocks into tokens, capped at
// the prompt length; a count ≤ 0 is 0 tokens.
func (r *Request) CachedTokens(blocks int) int {
	if blocks <= 0 {
		return 0
	}
	n, bs := r.PromptLen(), r.blockSize()
	if blocks > n/bs { // blocks·bs > n, without computing the product
		return n
	}
	return blocks * bs
}

// UncachedTokens returns the prompt tokens left to prefill on an endpoint that
// already holds the first blocks blocks of the prompt.
func (r *Request) UncachedTokens(blocks int) int {
	return r.PromptLen() - r.CachedTokens(blocks)
}
