package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzEncode checks that Encode never panics, returns only known ids, is deterministic, and that
// Decode(Encode(s)) == s for byte-level tokenizers without a normalizer, where HF guarantees it
// (s with invalid UTF-8 comes back with U+FFFD replacements). The seeds run as a normal test;
// fuzz with: go test -fuzz FuzzEncode ./tokenizer
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", "hello world", "  \n  \n", "a   b", "'ſx", "<|endoftext|>", "x<|endoftext|>y",
		"日本語のテキスト", "👨‍👩‍👧‍👦", "\x00\xff\xfe", "\xe2\x82", "a\u0301\u0301", "\u2028\u00a0 x", "12345678",
		"<s>hello</s>", "▁▁x", "<mask> world", "[X]cab", "x1-2,3", "xxy", " and and"} {
		f.Add(s)
	}
	for i, s := range goldenCorpus(f) {
		if i%40 == 0 && len(s) < 400 {
			f.Add(s)
		}
	}
	var byteLevel *Tokenizer // optional: the gpt-3.5 fixture
	if dir := fixtureDirOptional("gpt-3.5"); dir != "" {
		byteLevel = fixture(f, "gpt-3.5")
	}
	var synth []*Tokenizer
	for _, name := range []string{"a", "b", "c"} {
		tok, err := Load(filepath.Join("testdata", "synthetic", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		synth = append(synth, tok)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range synth {
			ids := tok.Encode(s)
			for _, id := range ids {
				if _, ok := tok.Token(id); !ok {
					t.Fatalf("unknown id %d for %q", id, s)
				}
			}
			if again := tok.Encode(s); !equalIDs(ids, again) {
				t.Fatalf("not deterministic for %q", s)
			}
			_ = tok.Decode(ids)
		}
		if byteLevel != nil {
			want := string(appendLossy(nil, s))
			if got := byteLevel.Decode(byteLevel.Encode(s)); got != want {
				t.Fatalf("round trip of %q: got %q", s, got)
			}
		}
	})
}

// FuzzFromJSON checks that FromJSON never panics on arbitrary tokenizer.json bytes, and that
// whatever it accepts can encode and decode without panicking. Seeds are the synthetic fixtures
// and small hand-made documents; fuzz with: go test -run '^$' -fuzz FuzzFromJSON ./tokenizer
func FuzzFromJSON(f *testing.F) {
	for _, name := range []string{"a", "b", "c"} {
		data, err := os.ReadFile(filepath.Join("testdata", "synthetic", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{"", "{}", "null", "[]", `{"model": null}`, `{"model": {"type": "BPE"}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "a"]]}}`,
		`{"model": {"type": "BPE", "vocab": {"a": 4294967295}, "merges": []}}`,
		`{"added_tokens": [{"id": 7, "content": ""}], "model": {"type": "BPE", "vocab": {}, "merges": []}}`,
		`{"model": {"type": "BPE", "vocab": {"\ud800": 0}, "merges": []}}`, `{"a": "\u00`, `{"a": 1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := FromJSON(data)
		if err != nil {
			if tok != nil {
				t.Fatalf("non-nil tokenizer with error %v", err)
			}
			return
		}
		for _, s := range []string{"hello <s> world 123", "日本語 😀", "\xff\x00", ""} {
			ids := tok.Encode(s)
			_ = tok.EncodeSpecial(s)
			_ = tok.Decode(ids)
			_ = tok.DecodeSkipSpecial(ids)
		}
	})
}
