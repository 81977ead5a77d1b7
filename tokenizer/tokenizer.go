package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unicode/utf8"
)

// Tokenizer turns text into the token IDs that Hugging Face tokenizers produce from the same
// tokenizer.json, and back. It is immutable after loading and safe for concurrent use.
type Tokenizer struct {
	model      *bpe
	rawAdded   *matcher // added tokens matched on the raw text (normalized: false)
	normAdded  *matcher // added tokens matched after normalization (normalized: true)
	normalizer normalizer
	pre        []preStep
	prefix     []uint32 // special tokens the post-processor puts before the text
	suffix     []uint32 // ... and after it
	decoders   []decoder
	hasDecoder bool

	tokens    []string // id -> token string as decoders see it
	known     []bool   // id has a token
	special   []bool   // id is a special added token
	added     map[string]uint32
	vocabSize int
	bos, eos  int64 // -1 when unknown

	states sync.Pool // *state
}

// ErrUnsupported reports a tokenizer.json component this package does not implement (for example
// a Unigram or WordPiece model, or a Precompiled normalizer). Callers that must tokenize such a
// model can fall back to a Remote tokenizer.
var ErrUnsupported = errors.New("tokenizer: unsupported component")

// Option configures loading.
// Options are immutable values, safe to reuse.
type Option interface{ apply(*options) }

type options struct {
	config    []byte
	hasConfig bool
	cacheSize int
	regexOnly bool // tests and benchmarks: run every Split regex through regexp2
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithConfig supplies the contents of tokenizer_config.json. Its bos_token and eos_token name the
// tokens BOS and EOS report; when it sets add_bos_token or add_eos_token explicitly, the special
// tokens added by EncodeSpecial follow those flags the way transformers' Llama and Gemma
// tokenizers do (which is what vLLM uses), instead of tokenizer.json's post-processor.
func WithConfig(data []byte) Option {
	return optionFunc(func(o *options) { o.config, o.hasConfig = data, true })
}

// WithCacheSize sets how many word pieces each encoder state caches (default 4096; 0 disables the
// cache). The cache only saves time; results never depend on it.
func WithCacheSize(n int) Option {
	return optionFunc(func(o *options) { o.cacheSize = max(n, 0) })
}

// Load reads a tokenizer from path, which is either a tokenizer.json file or a directory holding
// one. A tokenizer_config.json next to it is read too, when present (see WithConfig).
func Load(path string, opts ...Option) (*Tokenizer, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, "tokenizer.json")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if cfg, err := os.ReadFile(filepath.Join(filepath.Dir(file), "tokenizer_config.json")); err == nil {
		opts = append([]Option{WithConfig(cfg)}, opts...)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, file)
	}
	return t, nil
}

// FromJSON builds a tokenizer from the contents of a tokenizer.json file.
func FromJSON(data []byte, opts ...Option) (*Tokenizer, error) {
	o := options{cacheSize: 4096}
	for _, opt := range opts {
		opt.apply(&o)
	}
	t, err := build(data, &o)
	if err != nil {
		return nil, err
	}
	t.states.New = func() any { return newState(o.cacheSize) }
	return t, nil
}

// Encode returns the token IDs of text without the post-processor's special tokens, like HF
// tokenizers' encode(text, add_special_tokens=False) and vLLM's chat path. Special-token literals
// inside text (for example "<|im_start|>") are still recognized, as HF does. Invalid UTF-8 is
// replaced by U+FFFD first (one per maximal invalid subsequence, like Rust's from_utf8_lossy).
func (t *Tokenizer) Encode(text string) []uint32 {
	return t.AppendEncode(make([]uint32, 0, len(text)/3+4), text, false)
}

// EncodeSpecial returns the token IDs of text with the post-processor's special tokens (such as
// BOS), like HF's encode(text, add_special_tokens=True) and vLLM's /v1/completions default.
func (t *Tokenizer) EncodeSpecial(text string) []uint32 {
	return t.AppendEncode(make([]uint32, 0, len(text)/3+4+len(t.prefix)+len(t.suffix)), text, true)
}

// AppendEncode appends the token IDs of text to dst and returns the extended slice; addSpecial
// adds the post-processor's special tokens. With a large enough dst it does not allocate in the
// steady state, except for the copies a normalizer makes when it changes the text, the repaired
// copy of invalid UTF-8, and the matches of patterns run on regexp2 (see the package doc).
func (t *Tokenizer) AppendEncode(dst []uint32, text string, addSpecial bool) []uint32 {
	if addSpecial {
		dst = append(dst, t.prefix...)
	}
	st := t.states.Get().(*state)
	if !utf8.ValidString(text) {
		st.valid = appendLossy(st.valid[:0], text)
		text = string(st.valid)
	}
	dst = t.encode(st, dst, text)
	t.states.Put(st)
	if addSpecial {
		dst = append(dst, t.suffix...)
	}
	return dst
}

// SpecialTokens returns the IDs EncodeSpecial puts before and after the text (for example
// [BOS] and nil). The slices are copies.
func (t *Tokenizer) SpecialTokens() (prefix, suffix []uint32) {
	return append([]uint32(nil), t.prefix...), append([]uint32(nil), t.suffix...)
}

// Decode turns IDs back into text, like HF's decode(ids, skip_special_tokens=False). Unknown IDs
// are skipped.
func (t *Tokenizer) Decode(ids []uint32) string { return t.decode(ids, false) }

// DecodeSkipSpecial is Decode without special tokens (skip_special_tokens=True).
func (t *Tokenizer) DecodeSkipSpecial(ids []uint32) string { return t.decode(ids, true) }

// VocabSize returns the number of token IDs, added tokens included (HF get_vocab_size(True)).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the ID of a token string (as it appears in tokenizer.json) or an added token.
func (t *Tokenizer) TokenID(token string) (uint32, bool) {
	if id, ok := t.added[token]; ok {
		return id, true
	}
	id, ok := t.model.vocab[token]
	return id, ok
}

// Token returns the token string of id (as it appears in tokenizer.json).
func (t *Tokenizer) Token(id uint32) (string, bool) {
	if int64(id) >= int64(len(t.tokens)) || !t.known[id] {
		return "", false
	}
	return t.tokens[id], true
}

// IsSpecial reports whether id is a special added token (as skipped by DecodeSkipSpecial).
func (t *Tokenizer) IsSpecial(id uint32) bool {
	return int64(id) < int64(len(t.special)) && t.special[id]
}

// BOS returns the beginning-of-sequence token from tokenizer_config.json, if any.
func (t *Tokenizer) BOS() (uint32, bool) { return uint32(t.bos), t.bos >= 0 }

// EOS returns the end-of-sequence token from tokenizer_config.json, if any.
func (t *Tokenizer) EOS() (uint32, bool) { return uint32(t.eos), t.eos >= 0 }

// encode runs the HF pipeline: added tokens on the raw text, then per remaining segment the
// normalizer, normalized added tokens, pre-tokenizers and the model.
func (t *Tokenizer) encode(st *state, dst []uint32, text string) []uint32 {
	if t.rawAdded == nil {
		return t.encodeSegment(st, dst, text, true)
	}
	pos := 0
	for pos < len(text) {
		ms, me, id, ok := t.rawAdded.find(text, pos)
		if !ok {
			break
		}
		if ms > pos {
			dst = t.encodeSegment(st, dst, text[pos:ms], pos == 0)
		}
		dst = append(dst, id)
		pos = me
	}
	if pos < len(text) {
		dst = t.encodeSegment(st, dst, text[pos:], pos == 0)
	}
	return dst
}

func (t *Tokenizer) encodeSegment(st *state, dst []uint32, s string, atStart bool) []uint32 {
	if t.normalizer != nil {
		s = t.normalizer.normalize(s)
	}
	if t.normAdded == nil {
		return t.preTokenize(st, dst, 0, s, atStart)
	}
	pos := 0
	for pos < len(s) {
		ms, me, id, ok := t.normAdded.find(s, pos)
		if !ok {
			break
		}
		if ms > pos {
			dst = t.preTokenize(st, dst, 0, s[pos:ms], atStart && pos == 0)
		}
		dst = append(dst, id)
		pos = me
	}
	if pos < len(s) {
		dst = t.preTokenize(st, dst, 0, s[pos:], atStart && pos == 0)
	}
	return dst
}
