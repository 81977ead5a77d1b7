package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSynthetic checks small hand-made tokenizer.json files (scripts/tokenizer/synthetic.mjs)
// against HF tokenizers' output: the features no real fixture uses (lstrip, rstrip, single_word
// and normalized added tokens, Metaspace, Digits, merging split behaviours, regexp2 fallback,
// continuing_subword_prefix, unk without fusing, NFKC/Lowercase/Strip, Roberta and template
// post-processors, ByteFallback/Metaspace/Replace/Fuse decoders, HF's added-token id assignment).
func TestSynthetic(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "synthetic", "golden.json"))
	require.NoError(t, err)
	var golden map[string]struct {
		VocabSize int `json:"vocab_size"`
		Cases     []struct {
			Text        string   `json:"text"`
			IDs         []uint32 `json:"ids"`
			WithSpecial []uint32 `json:"with_special"`
			Decoded     string   `json:"decoded"`
			DecodedSkip string   `json:"decoded_skip"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(data, &golden))
	require.Len(t, golden, 3)
	for name, g := range golden {
		t.Run(name, func(t *testing.T) {
			tok, err := Load(filepath.Join("testdata", "synthetic", name+".json"))
			require.NoError(t, err)
			assert.Equal(t, g.VocabSize, tok.VocabSize())
			for _, c := range g.Cases {
				ids := tok.Encode(c.Text)
				assert.Equal(t, c.IDs, nonNil(ids), "Encode(%q)", c.Text)
				assert.Equal(t, c.WithSpecial, nonNil(tok.EncodeSpecial(c.Text)), "EncodeSpecial(%q)", c.Text)
				assert.Equal(t, c.Decoded, tok.Decode(c.IDs), "Decode(Encode(%q))", c.Text)
				assert.Equal(t, c.DecodedSkip, tok.DecodeSkipSpecial(c.WithSpecial), "DecodeSkipSpecial(%q)", c.Text)
			}
		})
	}
}

func nonNil(ids []uint32) []uint32 {
	if ids == nil {
		return []uint32{}
	}
	return ids
}
