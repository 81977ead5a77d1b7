// Package tokenizer turns text into the exact token IDs that Hugging Face tokenizers (and so
// vLLM) produce from a model's tokenizer.json, in pure Go and faster than the Rust library.
// Prefix-cache-aware routing needs this: one different ID shifts every later KV-block key.
//
// It implements what current model files use: added and special tokens (leftmost-longest, with
// lstrip, rstrip, single_word and normalized), the NFC/NFKC/NFD/NFKD, Lowercase, Prepend,
// Replace, Strip and Sequence normalizers, the Split (String or Regex; Isolated, Removed with
// invert, MergedWithPrevious, MergedWithNext, Contiguous), ByteLevel, Metaspace, Digits,
// WhitespaceSplit, Whitespace and Sequence pre-tokenizers, the BPE model (both merges formats,
// ignore_merges, byte_fallback, fuse_unk, unk_token, continuing_subword_prefix,
// end_of_word_suffix), the TemplateProcessing, Roberta, Bert and ByteLevel post-processors and the
// usual decoders. The split regexes of Llama-3, Qwen2/2.5/3, DeepSeek-V3, GPT-4o/gpt-oss (o200k),
// GPT-3.5/4 (cl100k) and GPT-2 run as hand-written scanners that match the regex exactly,
// lookahead included; any other pattern runs through github.com/dlclark/regexp2 at run time.
// Exactness is tested against the official HF tokenizers on a 4,200-string corpus for nine real
// tokenizer files (testdata/golden, scripts/tokenizer).
//
// Usage:
//
//	tok, err := tokenizer.Load("/models/Llama-3.1-8B-Instruct") // dir or tokenizer.json
//	if err != nil {
//		return err
//	}
//	ids := tok.Encode(prompt)          // like add_special_tokens=False (vLLM chat path)
//	ids = tok.EncodeSpecial(prompt)    // with BOS etc. (vLLM /v1/completions default)
//	buf = tok.AppendEncode(buf[:0], prompt, false) // no allocation in the steady state
//	text := tok.Decode(ids)
//
//	// Chat prompts: let the model server render the template.
//	remote, err := tokenizer.NewRemote("http://vllm-0:8000", tokenizer.WithTimeout(2*time.Second))
//	ids, err = remote.RenderChat(ctx, requestBody)
//
// Concurrency: a Tokenizer is immutable after loading and safe for concurrent use; each call
// borrows scratch space (and a small piece cache) from a sync.Pool. Remote is safe for concurrent
// use; identical concurrent requests share one round trip.
//
// What it does not do: Unigram, WordPiece and WordLevel models, the Precompiled (SentencePiece
// charsmap) and BERT normalizers and BPE dropout (loading such a file fails with ErrUnsupported,
// never with wrong IDs); pair sequences and offsets (there is no API for them); the file's
// truncation and padding settings, which are ignored: HF tokenizers applies them, but
// transformers, and so vLLM, turns them off for every call that does not ask for truncation;
// chat templates (use Remote); Unicode tables newer than Go's (Go 1.26 has Unicode 15.0) for the
// scanners' letter and number classes. A pattern without a hand-written scanner runs on regexp2
// (.NET semantics, close to Oniguruma's but not identical) with a 10 s timeout per match; if a
// pattern backtracks past it, the rest of that text is not split by it, and Encode, which
// returns no error, cannot say so.
package tokenizer
