package tokenizer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWordClass checks the two places HF uses Rust regex's Unicode \w: the Whitespace
// pre-tokenizer (\w+|[^\w\s]+) and single_word added tokens. The IDs are HF tokenizers 0.23.2's
// for this file (Tokenizer.fromFile, addSpecialTokens false). With ignore_merges a piece that is
// a whole token encodes to that one id, so the ids show where the pieces end. Before the
// Whitespace scanner, regexp2's .NET \w split "हिन्दी" at its vowel signs (Mc) and "aⅫb" at
// the numeral (Nl); single_word accepted "cab" after "Ⓐ" (Other_Alphabetic).
func TestWordClass(t *testing.T) {
	file := func(added string) []byte {
		return []byte(`{"added_tokens": [` + added + `], "pre_tokenizer": {"type": "Whitespace"},
			"model": {"type": "BPE", "unk_token": "<unk>", "ignore_merges": true, "merges": [], "vocab": {
			"<unk>": 0, " ": 1, "!": 2, ".": 3, "?": 4, "a": 5, "b": 6, "x": 7, "y": 8, "ः": 9, "द": 10,
			"न": 11, "ह": 12, "ि": 13, "ी": 14, "्": 15, "Ⅻ": 16, "Ⓐ": 17, "ⓑ": 18, "हिन्दी": 19,
			"Ⓐⓑ": 20, "aⅫb": 21, "xःy": 22, "ab": 23, "c": 24}}}`)
	}
	plain, err := FromJSON(file(""))
	require.NoError(t, err)
	single, err := FromJSON(file(`{"id": 100, "content": "cab", "single_word": true, "normalized": false}`))
	require.NoError(t, err)
	tests := []struct {
		name string
		tok  *Tokenizer
		give string
		want []uint32
	}{
		{"Devanagari word with spacing marks", plain, "हिन्दी", []uint32{19}},
		{"Devanagari word then punctuation", plain, "हिन्दी?", []uint32{19, 4}},
		{"visarga (Mc) inside a word", plain, "x\u0903y ab", []uint32{22, 23}},
		{"letter number (Nl) inside a word", plain, "aⅫb!", []uint32{21, 2}},
		{"circled letters (Other_Alphabetic)", plain, "Ⓐⓑ", []uint32{20}},
		{"circled letter then punctuation", plain, "Ⓐ!", []uint32{17, 2}},
		{"ASCII words and punctuation", plain, "ab?! ab", []uint32{23, 4, 2, 23}},
		{"single_word after punctuation", single, "!cab", []uint32{2, 25}},
		{"single_word after a space", single, "ab cab", []uint32{23, 25}},
		{"single_word after a circled letter", single, "Ⓐcab", []uint32{17, 24, 5, 6}},
		{"single_word after a letter number", single, "Ⅻcab", []uint32{16, 24, 5, 6}},
		{"single_word before a spacing mark", single, "cab\u0903", []uint32{24, 5, 6, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.tok.Encode(tt.give))
		})
	}
}
