package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAnchors pins the reference IDs quoted in shared/reference/tokenizer.md (HF Rust under Node).
func TestAnchors(t *testing.T) {
	tests := []struct {
		family  string
		text    string
		special bool
		want    []uint32
	}{
		{"llama3.1", "Hello, world!", false, []uint32{9906, 11, 1917, 0}},
		{"llama3.1", "Hello, world!", true, []uint32{128000, 9906, 11, 1917, 0}},
		{"qwen3", "Hello, world!", false, []uint32{9707, 11, 1879, 0}},
		{"mistral-7b", "Hello, world!", false, []uint32{22557, 28725, 1526, 28808}},
		{"mistral-7b", "Hello, world!", true, []uint32{1, 22557, 28725, 1526, 28808}},
		{"deepseek-v3", "Hello, world!", false, []uint32{19923, 14, 2058, 3}},
		{"gpt-oss", "Hello, world!", false, []uint32{13225, 11, 2375, 0}},
		{"llama3.1", "I'm sure THEY'LL say 12345 ü café 日本語のテキスト 🤖", false, []uint32{40, 2846, 2771, 63593, 6, 4178, 2019, 220, 4513, 1774, 10709, 53050, 105180, 102158, 16144, 57933, 62903, 71634, 11410, 97, 244}},
		{"qwen3", "I'm sure THEY'LL say 12345 ü café 日本語のテキスト 🤖", false, []uint32{40, 2776, 2704, 62493, 6, 4086, 1977, 220, 16, 17, 18, 19, 20, 10489, 51950, 75402, 21894, 102819, 15767, 56833, 61803, 70534, 11162, 97, 244}},
		{"qwen3", "<|im_start|>user\nhi<|im_end|>", false, []uint32{151644, 872, 198, 6023, 151645}},
		{"llama3.1", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello! What's 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false,
			[]uint32{128000, 128006, 882, 128007, 271, 9906, 0, 3639, 596, 220, 17, 10, 17, 30, 128009, 128006, 78191, 128007, 271}},
		{"gpt-3.5", "  \n  \n", false, []uint32{31879}}, // \s*[\r\n]+ keeps the whole run
	}
	for _, tt := range tests {
		t.Run(tt.family+"/"+tt.text, func(t *testing.T) {
			tok := fixture(t, tt.family)
			got := tok.Encode(tt.text)
			if tt.special {
				got = tok.EncodeSpecial(tt.text)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestConfig checks what tokenizer_config.json adds: BOS/EOS, and transformers' add_bos_token
// behaviour (DeepSeek-V3's tokenizer.json has no BOS template, but vLLM adds BOS 0).
func TestConfig(t *testing.T) {
	tests := []struct {
		family           string
		bos, eos         int64
		prefix, suffix   []uint32
		specialHelloBang []uint32
	}{
		{"llama3.1", 128000, 128009, []uint32{128000}, nil, []uint32{128000, 9906, 0}},
		{"qwen3", -1, 151645, nil, nil, []uint32{9707, 0}},
		{"deepseek-v3", 0, 1, []uint32{0}, nil, []uint32{0, 19923, 3}},
		{"mistral-7b", 1, 2, []uint32{1}, nil, []uint32{1, 22557, 28808}},
		{"gemma3", 2, 106, []uint32{2}, nil, []uint32{2, 9259, 236888}},
	}
	for _, tt := range tests {
		t.Run(tt.family, func(t *testing.T) {
			dir := fixtureDir(t, tt.family)
			var tok *Tokenizer
			var err error
			if tt.family == "mistral-7b" { // small: exercise Load's discovery of tokenizer_config.json
				tok, err = Load(dir)
			} else {
				var cfg []byte
				cfg, err = os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
				require.NoError(t, err)
				tok, err = fixture(t, tt.family).withConfig(cfg, 16)
			}
			require.NoError(t, err)
			bos, ok := tok.BOS()
			assert.Equal(t, tt.bos >= 0, ok)
			if ok {
				assert.Equal(t, uint32(tt.bos), bos)
			}
			eos, ok := tok.EOS()
			assert.True(t, ok)
			assert.Equal(t, uint32(tt.eos), eos)
			prefix, suffix := tok.SpecialTokens()
			assert.Equal(t, tt.prefix, prefix)
			assert.Equal(t, tt.suffix, suffix)
			assert.Equal(t, tt.specialHelloBang, tok.EncodeSpecial("Hello!"))
		})
	}
}

func TestBadInput(t *testing.T) {
	tok := fixture(t, "gpt-3.5")
	tests := []struct {
		name string
		give string
		same string // Encode(give) must equal Encode(same)
	}{
		{"invalid byte", "a\xffb", "a\uFFFDb"},
		{"truncated sequence is one replacement", "\xe2\x82x", "\uFFFDx"},
		{"surrogate half", "\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"overlong", "\xc0\xaf", "\uFFFD\uFFFD"},
		{"lone continuation bytes", "\x80\x80", "\uFFFD\uFFFD"},
		{"truncated at end", "ok\xf0\x9f\x98", "ok\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tok.Encode(tt.same), tok.Encode(tt.give))
		})
	}
	assert.Empty(t, tok.Encode(""))
	assert.Equal(t, "a\x00b\x00", tok.Decode(tok.Encode("a\x00b\x00")), "NUL bytes round-trip")
	assert.Equal(t, "", tok.Decode([]uint32{1 << 30, 1<<32 - 1}), "unknown ids are skipped")
	assert.Equal(t, "\uFFFD", tok.Decode(tok.Encode("\xff")))
}

// TestLongInput encodes a 10 MB single line (byte-level family, piece by piece) and a 320 KB
// single word of 256 K characters (SentencePiece family: one BPE word, heap merge).
func TestLongInput(t *testing.T) {
	tok := fixture(t, "gpt-3.5")
	var b strings.Builder
	words := []string{"routing", " prefix", " 12345", " 日本語", "\t", " !!", " x", "é", " 🤖"}
	for i := 0; b.Len() < 10<<20; i++ {
		b.WriteString(words[i*7%len(words)])
	}
	line := b.String()
	ids := tok.Encode(line)
	require.NotEmpty(t, ids)
	assert.Equal(t, line, tok.Decode(ids))

	m := fixture(t, "mistral-7b")
	word := strings.Repeat("abcé", 64<<10)
	ids = m.Encode(word)
	require.NotEmpty(t, ids)
	assert.Equal(t, word, m.Decode(ids))
	// A long word BPE'd with the heap equals the same word split where no merge can cross.
	assert.Equal(t, m.Encode("abcé"+"\n"), m.Encode("abcé\n"))
}

func TestCorruptFiles(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "synthetic", "b.json"))
	require.NoError(t, err)
	_, err = FromJSON(good)
	require.NoError(t, err)

	// Every truncation fails cleanly.
	for n := 0; n < len(good); n += 97 {
		_, err := FromJSON(good[:n])
		require.Error(t, err, "truncated at %d", n)
	}
	// Flipping bytes never panics (the result may still load).
	for i := 0; i < len(good); i += 13 {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		tok, err := FromJSON(bad)
		if err == nil {
			_ = tok.Encode("hello <s> world 123 😀")
		}
	}

	tests := []struct {
		name     string
		edit     func(string) string
		wantErr  string
		sentinel error
	}{
		{"merge with unknown token", func(s string) string {
			return strings.Replace(s, `"merges": [`, `"merges": [["▁", "zzz"],`, 1)
		}, `"zzz" is not in the vocabulary`, nil},
		{"unk token missing", func(s string) string {
			return strings.Replace(s, `"unk_token": "<unk>"`, `"unk_token": "<nope>"`, 1)
		}, `unk_token "<nope>"`, nil},
		{"unsupported model", func(s string) string {
			return strings.Replace(s, `"type": "BPE"`, `"type": "Unigram"`, 1)
		}, "Unigram", ErrUnsupported},
		{"unsupported normalizer", func(s string) string {
			return strings.Replace(s, `"normalizer": null`, `"normalizer": {"type": "Precompiled", "precompiled_charsmap": "AA=="}`, 1)
		}, "Precompiled", ErrUnsupported},
		{"bad regex names the pattern", func(s string) string {
			return strings.Replace(s, `"pre_tokenizer": {`, `"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}, "x": {`, 1)
		}, `"(unclosed"`, nil},
		{"vocab is not an object", func(s string) string {
			return strings.Replace(s, `"vocab": {`, `"vocab": [], "v": {`, 1)
		}, "vocab", nil},
		{"trailing garbage", func(s string) string { return s + "}" }, "trailing", nil},
		{"malformed unused field", func(s string) string {
			return strings.Replace(s, `"truncation": null`, `"truncation": [}`, 1)
		}, "truncation: malformed JSON", nil},
		{"malformed unused literal", func(s string) string {
			return strings.Replace(s, `"padding": null`, `"padding": nul`, 1)
		}, "padding: malformed JSON", nil},
		{"malformed unknown field", func(s string) string {
			return strings.Replace(s, `"version": "1.0"`, `"version": "1.0", "extra": {"a" 1}`, 1)
		}, "extra: malformed JSON", nil},
		{"malformed unused model field", func(s string) string {
			return strings.Replace(s, `"type": "BPE"`, `"type": "BPE", "extra": [1 2]`, 1)
		}, "model: extra: malformed JSON", nil},
		{"no model", func(s string) string { return `{"added_tokens": []}` }, "no model", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edited := tt.edit(string(good))
			require.NotEqual(t, string(good), edited, "edit applied")
			_, err := FromJSON([]byte(edited))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			if tt.sentinel != nil {
				assert.ErrorIs(t, err, tt.sentinel)
			}
		})
	}
	_, err = Load(filepath.Join("testdata", "does-not-exist.json"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))
}

// TestNesting checks that nesting is bounded like HF's reader (serde_json, 128 levels): a
// hostile file of deeply nested Sequences fails fast instead of being decoded once per level.
func TestNesting(t *testing.T) {
	nested := func(levels int) []byte {
		norm := strings.Repeat(`{"type": "Sequence", "normalizers": [`, levels) + `{"type": "Lowercase"}` + strings.Repeat(`]}`, levels)
		return []byte(`{"normalizer": ` + norm + `, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`)
	}
	tests := []struct {
		name    string
		levels  int
		wantErr string
	}{
		{"50 Sequences (101 levels) load", 50, ""},
		{"100 Sequences (201 levels) fail", 100, "nested deeper than 128 levels"},
		{"2000 Sequences fail fast (1.9 s, 187 MB without the bound)", 2000, "nested deeper than 128 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := FromJSON(nested(tt.levels))
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, []uint32{0}, tok.Encode("A"))
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// TestSparseIDs checks that a file cannot make the id tables (18 bytes per id up to the
// largest) huge with a few far-out ids: before the bound, the first case loaded a 60-byte file
// into 1.2 GB.
func TestSparseIDs(t *testing.T) {
	tests := []struct {
		name    string
		vocab   string
		wantErr string
	}{
		{"one token with id 2^26-1", `{"a": 67108863}`, "token id 67108863 is implausibly large for 1 tokens"},
		{"one token with id 2^20", `{"a": 0, "b": 1048576}`, "implausibly large"},
		{"small gaps load", `{"a": 0, "b": 60000}`, ""},
		{"dense ids load", `{"a": 0, "b": 1, "ab": 2}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			tok, err := FromJSON([]byte(`{"model": {"type": "BPE", "vocab": ` + tt.vocab + `, "merges": []}}`))
			runtime.ReadMemStats(&after)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(32<<20), "bytes allocated")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			id, ok := tok.TokenID("b")
			require.True(t, ok)
			assert.Equal(t, "b", tok.Decode([]uint32{id}))
		})
	}
}

// TestConcurrentEncode shares one tokenizer between goroutines (run with -race).
func TestConcurrentEncode(t *testing.T) {
	tok := fixture(t, "qwen3")
	corpus := goldenCorpus(t)[:600]
	want := make([][]uint32, len(corpus))
	for i, s := range corpus {
		want[i] = tok.Encode(s)
	}
	var wg sync.WaitGroup
	errs := make([]string, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []uint32
			for k := range corpus {
				i := (k*7 + g*131) % len(corpus)
				buf = tok.AppendEncode(buf[:0], corpus[i], false)
				if !equalIDs(buf, want[i]) {
					errs[g] = fmt.Sprintf("goroutine %d string %d differs", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		assert.Empty(t, e)
	}
}

// TestScannersMatchRegex compares each hand-written scanner with the regex it replaces, run by
// regexp2, on the short strings of the golden corpus. regexp2 v1 does not fold ſ to s in (?i:…)
// (Oniguruma and our scanners do), so strings with ſ are left out here; the goldens cover them.
func TestScannersMatchRegex(t *testing.T) {
	var short []string
	for _, s := range goldenCorpus(t) {
		if len(s) < 300 && !strings.ContainsRune(s, 'ſ') {
			short = append(short, s)
		}
	}
	finders := map[string]finder{}
	for pattern, f := range knownFinders {
		finders[pattern] = f
	}
	for pattern, k := range scanKinds { // the same scanners, called directly by splitStream
		finders["direct "+pattern] = func(s string, i int) (int, int) { return i, k.end(s, i) }
	}
	for name, f := range finders {
		pattern := strings.TrimPrefix(name, "direct ")
		t.Run(fmt.Sprintf("%.37s", name), func(t *testing.T) {
			t.Parallel()
			re, err := compileRegex(pattern)
			require.NoError(t, err)
			bad := 0
			for _, s := range short {
				want := allMatches(regexMatches(re, s), s)
				got := allMatches(f, s)
				if !assert.Equal(t, want, got, "%q", s) {
					if bad++; bad > 5 {
						return
					}
				}
			}
		})
	}
}

func allMatches(f finder, s string) []string {
	var out []string
	for pos := 0; pos < len(s); {
		ms, me := f(s, pos)
		if ms < 0 {
			break
		}
		if me == ms {
			pos = ms + 1
			continue
		}
		out = append(out, s[ms:me])
		pos = me
	}
	return out
}

// TestClassTables checks that the table lookups answer like classSlow for every rune.
func TestClassTables(t *testing.T) {
	bad := 0
	for r := rune(0); r <= unicode.MaxRune && bad < 5; r++ {
		if got, want := class(r), classSlow(r); got != want {
			t.Errorf("class(%U) = %08b, classSlow = %08b", r, got, want)
			bad++
		}
	}
}
