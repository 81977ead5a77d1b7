package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

type fileJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *modelJSON      `json:"model"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
}

// compJSON holds the fields of every normalizer, pre-tokenizer, post-processor and decoder type
// this package understands.
type compJSON struct {
	Type string `json:"type"`

	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Processors    []json.RawMessage `json:"processors"`
	Decoders      []json.RawMessage `json:"decoders"`

	Prepend    string       `json:"prepend"`
	Pattern    *patternJSON `json:"pattern"`
	Content    *string      `json:"content"`
	StripLeft  bool         `json:"strip_left"`
	StripRight bool         `json:"strip_right"`

	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	AddPrefixSpace *bool  `json:"add_prefix_space"`
	UseRegex       *bool  `json:"use_regex"`
	Replacement    string `json:"replacement"`
	PrependScheme  string `json:"prepend_scheme"`
	Split          *bool  `json:"split"`
	Individual     bool   `json:"individual_digits"`
	Delimiter      string `json:"delimiter"`

	Single        []map[string]templateRef `json:"single"`
	SpecialTokens map[string]struct {
		IDs []uint32 `json:"ids"`
	} `json:"special_tokens"`
	Sep []json.RawMessage `json:"sep"`
	Cls []json.RawMessage `json:"cls"`

	Start  int    `json:"start"`
	Stop   int    `json:"stop"`
	Suffix string `json:"suffix"`
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type templateRef struct {
	ID string `json:"id"`
}

type configJSON struct {
	BOS         json.RawMessage `json:"bos_token"`
	EOS         json.RawMessage `json:"eos_token"`
	AddBOSToken *bool           `json:"add_bos_token"`
	AddEOSToken *bool           `json:"add_eos_token"`
}

func build(data []byte, o *options) (*Tokenizer, error) {
	f, err := parseFile(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: parse tokenizer.json: %w", err)
	}
	if f.Model == nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json has no model")
	}
	mj := f.Model
	if mj.Type == "" && len(mj.Merges) > 0 {
		mj.Type = "BPE"
	}
	if mj.Type != "BPE" {
		return nil, fmt.Errorf("%w: model type %q (only BPE is implemented)", ErrUnsupported, mj.Type)
	}
	t := &Tokenizer{bos: -1, eos: -1}
	if t.normalizer, err = buildNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.pre, err = buildPre(f.PreTokenizer, nil); err != nil {
		return nil, err
	}
	if o.regexOnly { // benchmark baseline: the general regex engine instead of the scanners
		for i := range t.pre {
			if t.pre[i].pattern != "" && t.pre[i].re == nil {
				if t.pre[i].re, err = compileRegex(t.pre[i].pattern); err != nil {
					return nil, err
				}
			}
		}
	}
	byteLevel := false
	for i, p := range t.pre {
		if p.kind == preByteLevel {
			if i != len(t.pre)-1 {
				return nil, fmt.Errorf("%w: pre-tokenizers after ByteLevel", ErrUnsupported)
			}
			byteLevel = true
		}
	}
	if len(mj.Vocab) == 0 || string(mj.Vocab) == "null" {
		return nil, fmt.Errorf("tokenizer: BPE model has no vocab")
	}
	vocab, err := parseVocab(mj.Vocab)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: model.vocab: %w", err)
	}
	merges := []byte(mj.Merges)
	if len(merges) == 0 || string(merges) == "null" {
		merges = []byte("[]")
	}
	if t.model, err = newBPE(vocab, merges, mj, byteLevel); err != nil {
		return nil, err
	}
	if err := t.buildVocab(f.AddedTokens); err != nil {
		return nil, err
	}
	if t.prefix, t.suffix, err = buildPost(f.PostProcessor, t); err != nil {
		return nil, err
	}
	if t.decoders, t.hasDecoder, err = buildDecoder(f.Decoder); err != nil {
		return nil, err
	}
	if o.hasConfig {
		if err := t.applyConfig(o.config); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// parseFile decodes tokenizer.json. The model's vocab and merges (nearly all of the file) are
// left raw for the fast readers in jsonlite.go; everything else goes through encoding/json.
func parseFile(data []byte) (*fileJSON, error) {
	top, err := fields(data)
	if err != nil {
		return nil, err
	}
	f := &fileJSON{}
	for _, kv := range top {
		var dst any
		switch kv.key {
		case "added_tokens":
			dst = &f.AddedTokens
		case "normalizer":
			f.Normalizer = kv.val
		case "pre_tokenizer":
			f.PreTokenizer = kv.val
		case "post_processor":
			f.PostProcessor = kv.val
		case "decoder":
			f.Decoder = kv.val
		case "model":
			if string(kv.val) == "null" {
				continue
			}
			if f.Model, err = parseModel(kv.val); err != nil {
				return nil, fmt.Errorf("model: %w", err)
			}
		default: // version, truncation, padding, ...: not used, but fields only checked brackets
			if !json.Valid(kv.val) {
				return nil, fmt.Errorf("%s: %w", kv.key, errJSON)
			}
		}
		if dst != nil {
			if err := json.Unmarshal(kv.val, dst); err != nil {
				return nil, fmt.Errorf("%s: %w", kv.key, err)
			}
		}
	}
	return f, nil
}

func parseModel(raw []byte) (*modelJSON, error) {
	fs, err := fields(raw)
	if err != nil {
		return nil, err
	}
	m := &modelJSON{}
	for _, kv := range fs {
		var dst any
		switch kv.key {
		case "vocab":
			m.Vocab = kv.val
		case "merges":
			m.Merges = kv.val
		case "type":
			dst = &m.Type
		case "unk_token":
			dst = &m.UnkToken
		case "continuing_subword_prefix":
			dst = &m.ContinuingSubwordPrefix
		case "end_of_word_suffix":
			dst = &m.EndOfWordSuffix
		case "fuse_unk":
			dst = &m.FuseUnk
		case "byte_fallback":
			dst = &m.ByteFallback
		case "ignore_merges":
			dst = &m.IgnoreMerges
		case "dropout":
			dst = &m.Dropout
		default:
			if !json.Valid(kv.val) {
				return nil, fmt.Errorf("%s: %w", kv.key, errJSON)
			}
		}
		if dst != nil {
			if err := json.Unmarshal(kv.val, dst); err != nil {
				return nil, fmt.Errorf("%s: %w", kv.key, err)
			}
		}
	}
	return m, nil
}

// buildVocab registers the added tokens the way HF's AddedVocabulary::add_tokens does: a token
// whose content is already known keeps that id; any other gets the next free id counting from
// the model's vocabulary size. The "id" written in the file is not used (HF only warns).
func (t *Tokenizer) buildVocab(added []addedToken) error {
	vocab := t.model.vocab
	t.added = make(map[string]uint32, len(added))
	next := uint32(len(vocab))
	toks := make([]addedToken, 0, len(added))
	for _, a := range added {
		if a.Content == "" {
			continue
		}
		if !utf8.ValidString(a.Content) {
			return fmt.Errorf("tokenizer: added token %q is not valid UTF-8", a.Content)
		}
		if id, ok := t.added[a.Content]; ok {
			a.ID = id
		} else if id, ok := vocab[a.Content]; ok {
			a.ID = id
		} else {
			a.ID = next
			next++
		}
		t.added[a.Content] = a.ID
		toks = append(toks, a)
	}
	t.vocabSize = len(vocab) + int(next-uint32(len(vocab)))
	maxID := -1
	for _, id := range vocab {
		maxID = max(maxID, int(id))
	}
	for _, a := range toks {
		maxID = max(maxID, int(a.ID))
	}
	// The id tables below take 18 bytes per id up to maxID, so ids far beyond the number of
	// tokens would let a tiny file allocate gigabytes (one id of 2^26-1: 1.2 GB). Real files
	// number their tokens densely; HF keeps a sparse map and would accept gaps.
	if n := len(vocab) + len(toks); maxID >= 1<<26 || maxID >= 2*n+1<<16 {
		return fmt.Errorf("tokenizer: token id %d is implausibly large for %d tokens", maxID, n)
	}
	t.tokens = make([]string, maxID+1)
	t.known = make([]bool, maxID+1)
	t.special = make([]bool, maxID+1)
	for tok, id := range vocab {
		t.tokens[id], t.known[id] = tok, true
	}
	var raw, normd []addedToken
	for _, a := range toks {
		tok := a.Content
		if a.Normalized {
			if t.normalizer != nil {
				a.Content = t.normalizer.normalize(a.Content)
			}
			tok = a.Content
			normd = append(normd, a)
		} else {
			raw = append(raw, a)
		}
		t.tokens[a.ID], t.known[a.ID] = tok, true
		t.special[a.ID] = a.Special
	}
	t.rawAdded, t.normAdded = newMatcher(raw), newMatcher(normd)
	return nil
}

func (t *Tokenizer) applyConfig(data []byte) error {
	var c configJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("tokenizer: parse tokenizer_config.json: %w", err)
	}
	lookup := func(raw json.RawMessage, what string) (int64, error) {
		if len(raw) == 0 || string(raw) == "null" {
			return -1, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			var obj struct {
				Content string `json:"content"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil {
				return -1, fmt.Errorf("tokenizer: tokenizer_config.json %s: want a string or an object with content", what)
			}
			s = obj.Content
		}
		id, ok := t.TokenID(s)
		if !ok { // transformers would add it as a new token; leave it unset rather than guess
			return -1, nil
		}
		return int64(id), nil
	}
	var err error
	if t.bos, err = lookup(c.BOS, "bos_token"); err != nil {
		return err
	}
	if t.eos, err = lookup(c.EOS, "eos_token"); err != nil {
		return err
	}
	if c.AddBOSToken != nil || c.AddEOSToken != nil {
		t.prefix, t.suffix = nil, nil
		if c.AddBOSToken != nil && *c.AddBOSToken && t.bos >= 0 {
			t.prefix = []uint32{uint32(t.bos)}
		}
		if c.AddEOSToken != nil && *c.AddEOSToken && t.eos >= 0 {
			t.suffix = []uint32{uint32(t.eos)}
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func parseComp(raw json.RawMessage, what string) (*compJSON, error) {
	var c compJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", what, err)
	}
	return &c, nil
}

// patternFinder returns a finder for a Split/Replace pattern: a literal, a known regex (hand
// scanner) or an unknown regex (regexp2, returned separately).
func patternFinder(p *patternJSON, what string) (finder, string, error) {
	switch {
	case p == nil:
		return nil, "", fmt.Errorf("tokenizer: %s has no pattern", what)
	case p.String != nil:
		if *p.String == "" {
			return func(string, int) (int, int) { return -1, -1 }, "", nil
		}
		return literalFinder(*p.String), "", nil
	case p.Regex != nil:
		if f, ok := knownFinders[*p.Regex]; ok {
			return f, "", nil
		}
		return nil, *p.Regex, nil
	}
	return nil, "", fmt.Errorf("tokenizer: %s pattern is neither String nor Regex", what)
}

func buildNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComp(raw, "normalizer")
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "NFC":
		return newUnicodeNorm(norm.NFC), nil
	case "NFD":
		return newUnicodeNorm(norm.NFD), nil
	case "NFKC":
		return newUnicodeNorm(norm.NFKC), nil
	case "NFKD":
		return newUnicodeNorm(norm.NFKD), nil
	case "Lowercase":
		return lowercase{}, nil
	case "Prepend":
		return prepend{c.Prepend}, nil
	case "Strip":
		return strip{c.StripLeft, c.StripRight}, nil
	case "Replace":
		f, re, err := patternFinder(c.Pattern, "Replace normalizer")
		if err != nil {
			return nil, err
		}
		content := ""
		if c.Content != nil {
			content = *c.Content
		}
		if re != "" {
			r, err := compileRegex(re)
			if err != nil {
				return nil, err
			}
			return regexReplace{r, content}, nil
		}
		if c.Pattern.String != nil {
			return replace{literal: *c.Pattern.String, content: content}, nil
		}
		return replace{find: f, content: content}, nil
	case "Sequence":
		var seq sequenceNorm
		for _, sub := range c.Normalizers {
			n, err := buildNormalizer(sub)
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		switch len(seq) {
		case 0:
			return nil, nil
		case 1:
			return seq[0], nil
		}
		return seq, nil
	}
	return nil, fmt.Errorf("%w: normalizer %q", ErrUnsupported, c.Type)
}

func parseBehavior(s string) (behavior, error) {
	switch s {
	case "Isolated":
		return isolated, nil
	case "Removed":
		return removed, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("tokenizer: unknown split behavior %q", s)
}

func buildPre(raw json.RawMessage, steps []preStep) ([]preStep, error) {
	if isNull(raw) {
		return steps, nil
	}
	c, err := parseComp(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		for _, sub := range c.Pretokenizers {
			if steps, err = buildPre(sub, steps); err != nil {
				return nil, err
			}
		}
		return steps, nil
	case "Split":
		b, err := parseBehavior(c.Behavior)
		if err != nil {
			return nil, err
		}
		f, re, err := patternFinder(c.Pattern, "Split pre-tokenizer")
		if err != nil {
			return nil, err
		}
		p := preStep{kind: preSplit, find: f, behavior: b, invert: c.Invert}
		if c.Pattern.Regex != nil {
			p.pattern = *c.Pattern.Regex
			p.scan = scanKinds[p.pattern]
		}
		if re != "" {
			if p.re, err = compileRegex(re); err != nil {
				return nil, err
			}
		}
		return append(steps, p), nil
	case "ByteLevel":
		p := preStep{kind: preByteLevel, addPrefixSpace: true, useRegex: true}
		if c.AddPrefixSpace != nil {
			p.addPrefixSpace = *c.AddPrefixSpace
		}
		if c.UseRegex != nil {
			p.useRegex = *c.UseRegex
		}
		return append(steps, p), nil
	case "Metaspace":
		p := preStep{kind: preMetaspace, replacement: c.Replacement, split: true}
		if utf8.RuneCountInString(c.Replacement) != 1 {
			return nil, fmt.Errorf("tokenizer: Metaspace replacement %q is not one character", c.Replacement)
		}
		if c.Split != nil {
			p.split = *c.Split
		}
		switch c.PrependScheme {
		case "always":
			p.scheme = prependAlways
		case "first":
			p.scheme = prependFirst
		case "never":
			p.scheme = prependNever
		case "":
			if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
				p.scheme = prependNever
			}
		default:
			return nil, fmt.Errorf("tokenizer: Metaspace prepend_scheme %q", c.PrependScheme)
		}
		return append(steps, p), nil
	case "Digits":
		return append(steps, preStep{kind: preDigits, individual: c.Individual}), nil
	case "WhitespaceSplit":
		return append(steps, preStep{kind: preSplit, find: findSpaceRun, behavior: removed}), nil
	case "CharDelimiterSplit":
		if utf8.RuneCountInString(c.Delimiter) != 1 {
			return nil, fmt.Errorf("tokenizer: CharDelimiterSplit delimiter %q is not one character", c.Delimiter)
		}
		return append(steps, preStep{kind: preSplit, find: literalFinder(c.Delimiter), behavior: removed}), nil
	case "Whitespace":
		return append(steps, preStep{kind: preSplit, find: findWordOrPunct, behavior: removed, invert: true}), nil
	}
	return nil, fmt.Errorf("%w: pre-tokenizer %q", ErrUnsupported, c.Type)
}

func findSpaceRun(s string, i int) (int, int) {
	for i < len(s) {
		c, n := next(s, i)
		if c&cS != 0 {
			return i, run(s, i+n, cS)
		}
		i += n
	}
	return -1, -1
}

// buildPost folds the post-processor into the ids added before and after the text.
func buildPost(raw json.RawMessage, t *Tokenizer) (prefix, suffix []uint32, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	c, err := parseComp(raw, "post_processor")
	if err != nil {
		return nil, nil, err
	}
	switch c.Type {
	case "ByteLevel":
		return nil, nil, nil
	case "Sequence":
		for _, sub := range c.Processors {
			p, s, err := buildPost(sub, t)
			if err != nil {
				return nil, nil, err
			}
			prefix = append(p, prefix...)
			suffix = append(suffix, s...)
		}
		return prefix, suffix, nil
	case "TemplateProcessing":
		seen := false
		for _, item := range c.Single {
			if ref, ok := item["Sequence"]; ok {
				if ref.ID != "A" || seen {
					return nil, nil, fmt.Errorf("%w: TemplateProcessing single template with sequence %q", ErrUnsupported, ref.ID)
				}
				seen = true
				continue
			}
			ref, ok := item["SpecialToken"]
			if !ok {
				return nil, nil, fmt.Errorf("tokenizer: TemplateProcessing item is neither Sequence nor SpecialToken")
			}
			st, ok := c.SpecialTokens[ref.ID]
			if !ok {
				return nil, nil, fmt.Errorf("tokenizer: TemplateProcessing special token %q is not defined", ref.ID)
			}
			if seen {
				suffix = append(suffix, st.IDs...)
			} else {
				prefix = append(prefix, st.IDs...)
			}
		}
		if !seen {
			return nil, nil, fmt.Errorf("%w: TemplateProcessing single template without $A", ErrUnsupported)
		}
		return prefix, suffix, nil
	case "RobertaProcessing", "BertProcessing":
		cls, err := pairID(c.Cls, "cls")
		if err != nil {
			return nil, nil, err
		}
		sep, err := pairID(c.Sep, "sep")
		if err != nil {
			return nil, nil, err
		}
		return []uint32{cls}, []uint32{sep}, nil
	}
	return nil, nil, fmt.Errorf("%w: post-processor %q", ErrUnsupported, c.Type)
}

func pairID(raw []json.RawMessage, what string) (uint32, error) {
	var id uint32
	if len(raw) != 2 || json.Unmarshal(raw[1], &id) != nil {
		return 0, fmt.Errorf("tokenizer: post-processor %s: want [token, id]", what)
	}
	return id, nil
}

func buildDecoder(raw json.RawMessage) ([]decoder, bool, error) {
	if isNull(raw) {
		return nil, false, nil
	}
	c, err := parseComp(raw, "decoder")
	if err != nil {
		return nil, false, err
	}
	switch c.Type {
	case "Sequence":
		var all []decoder
		for _, sub := range c.Decoders {
			d, _, err := buildDecoder(sub)
			if err != nil {
				return nil, false, err
			}
			all = append(all, d...)
		}
		return all, true, nil
	case "ByteLevel":
		return []decoder{byteLevelDecoder{}}, true, nil
	case "ByteFallback":
		return []decoder{byteFallbackDecoder{}}, true, nil
	case "Fuse":
		return []decoder{fuseDecoder{}}, true, nil
	case "Strip":
		content := ""
		if c.Content != nil {
			content = *c.Content
		}
		if utf8.RuneCountInString(content) != 1 {
			return nil, false, fmt.Errorf("tokenizer: Strip decoder content %q is not one character", content)
		}
		r, _ := utf8.DecodeRuneInString(content)
		return []decoder{stripDecoder{r, c.Start, c.Stop}}, true, nil
	case "Replace":
		if c.Pattern == nil || c.Pattern.String == nil {
			return nil, false, fmt.Errorf("%w: Replace decoder without a String pattern", ErrUnsupported)
		}
		content := ""
		if c.Content != nil {
			content = *c.Content
		}
		return []decoder{replaceDecoder{*c.Pattern.String, content}}, true, nil
	case "Metaspace":
		r, n := utf8.DecodeRuneInString(c.Replacement)
		if n == 0 || n != len(c.Replacement) {
			return nil, false, fmt.Errorf("tokenizer: Metaspace decoder replacement %q is not one character", c.Replacement)
		}
		never := c.PrependScheme == "never" || (c.PrependScheme == "" && c.AddPrefixSpace != nil && !*c.AddPrefixSpace)
		return []decoder{metaspaceDecoder{r, never}}, true, nil
	case "BPEDecoder":
		suffix := c.Suffix
		if suffix == "" {
			suffix = "</w>"
		}
		return []decoder{bpeSuffixDecoder{suffix}}, true, nil
	}
	return nil, false, fmt.Errorf("%w: decoder %q", ErrUnsupported, c.Type)
}

// regexReplace is a Replace normalizer with a pattern that has no hand scanner.
type regexReplace struct {
	re      *regexp2.Regexp
	content string
}

func (r regexReplace) normalize(s string) string {
	return replace{find: regexMatches(r.re, s), content: r.content}.normalize(s)
}

// clone returns a copy of t sharing its immutable tables, with its own (empty) state pool.
func (t *Tokenizer) clone(cacheSize int) *Tokenizer {
	c := &Tokenizer{
		model: t.model, rawAdded: t.rawAdded, normAdded: t.normAdded, normalizer: t.normalizer,
		pre: t.pre, prefix: t.prefix, suffix: t.suffix, decoders: t.decoders, hasDecoder: t.hasDecoder,
		tokens: t.tokens, known: t.known, special: t.special, added: t.added, vocabSize: t.vocabSize,
		bos: t.bos, eos: t.eos,
	}
	c.states.New = func() any { return newState(cacheSize) }
	return c
}

// withConfig returns a clone of t with a tokenizer_config.json applied; tests use it to avoid
// loading large files twice.
func (t *Tokenizer) withConfig(data []byte, cacheSize int) (*Tokenizer, error) {
	c := t.clone(cacheSize)
	c.bos, c.eos = -1, -1
	if err := c.applyConfig(data); err != nil {
		return nil, err
	}
	return c, nil
}
