package tokenizer

import (
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
