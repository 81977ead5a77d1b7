package vllmsim_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/tokenizer"
)

func TestByteTokenizerRoundTrip(t *testing.T) {
	tests := []string{"", "hello", "héllo wörld ✓", "\x00\x01 binary", strings.Repeat("ab", 1000)}
	for _, s := range tests {
		ids, err := vllmsim.ByteTokenizer{}.Encode(s, true)
		require.NoError(t, err)
		assert.Len(t, ids, len(s))
		got, err := vllmsim.ByteTokenizer{}.Decode(ids)
		require.NoError(t, err)
		assert.Equal(t, s, got)
	}
	got, err := vllmsim.ByteTokenizer{}.Decode([]uint32{0xff, 'a'})
	require.NoError(t, err)
	assert.Equal(t, "\uFFFDa", got)
	_, err = vllmsim.ByteTokenizer{}.Decode([]uint32{256})
	assert.ErrorIs(t, err, vllmsim.ErrBadToken)
}

func TestChatML(t *testing.T) {
	msgs := []vllmsim.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}
	got, err := vllmsim.ChatML(msgs, true, false)
	require.NoError(t, err)
	assert.Equal(t, "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n", got)
	got, err = vllmsim.ChatML(msgs, false, true)
	require.NoError(t, err)
	assert.Equal(t, "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu", got)
	_, err = vllmsim.ChatML(msgs, true, true)
	assert.Error(t, err)
}

// With the router's tokenizer plugged in, the server's prompt tokens (and
// so its block keys) are the router's.
func TestHFTokenizerPluggedIn(t *testing.T) {
	// A small synthetic tokenizer.json from the tokenizer package keeps
	// this fast under -race (real vocabularies take seconds to load).
	tk, err := tokenizer.Load(filepath.Join("..", "..", "tokenizer", "testdata", "synthetic", "a.json"))
	require.NoError(t, err)
	f := startFleet(t, vllmsim.ReplicaSpec{Options: []vllmsim.ServerOption{vllmsim.WithTokenizer(vllmsim.HFTokenizer(tk))}})
	r := f.Replicas[0]
	text := "Hello world, the quick brown fox."
	code, m := post(t, r.URL+"/tokenize", `{"prompt":`+jsonStr(text)+`,"add_special_tokens":false}`)
	require.Equal(t, 200, code, m)
	var got []uint32
	b, _ := json.Marshal(m["tokens"])
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, tk.Encode(text), got)
	code, m = post(t, r.URL+"/v1/completions", `{"prompt":`+jsonStr(text)+`,"max_tokens":2,"add_special_tokens":false}`)
	require.Equal(t, 200, code, m)
	assert.Equal(t, len(got), num(m["usage"].(map[string]any)["prompt_tokens"]))
}
