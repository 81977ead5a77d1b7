package router_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/router"
)

func TestParseBody(t *testing.T) {
	tests := []struct {
		name    string
		api     router.API
		give    string
		want    router.Body
		wantErr string
	}{
		{name: "completion string", api: router.Completions, give: `{"model":"m","prompt":"hello","max_tokens":7,"stream":true,"x_unknown":1}`,
			want: router.Body{Model: "m", Prompt: router.Prompt{Text: "hello", Count: 1}, Stream: true}},
		{name: "completion list of strings", api: router.Completions, give: `{"model":"m","prompt":["a","b"]}`,
			want: router.Body{Model: "m", Prompt: router.Prompt{Text: "a", Count: 2}}},
		{name: "completion token ids", api: router.Completions, give: `{"model":"m","prompt":[1,2,3]}`,
			want: router.Body{Model: "m", Prompt: router.Prompt{Tokens: []uint32{1, 2, 3}, IsTokens: true, Count: 1}}},
		{name: "completion token lists", api: router.Completions, give: `{"model":"m","prompt":[[4,5],[6]]}`,
			want: router.Body{Model: "m", Prompt: router.Prompt{Tokens: []uint32{4, 5}, IsTokens: true, Count: 2}}},
		{name: "chat string and parts", api: router.ChatCompletions,
			give: `{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]},{"role":"assistant","content":null}],"user":"u1","cache_salt":"s"}`,
			want: router.Body{Model: "m", Messages: []router.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi there"}, {Role: "assistant"}}, User: "u1", CacheSalt: "s"}},
		{name: "empty body", api: router.Completions, give: "  ", wantErr: "empty body"},
		{name: "malformed JSON", api: router.Completions, give: `{"model":"m","prompt":"x"`, wantErr: "invalid JSON"},
		{name: "not an object", api: router.Completions, give: `[1,2]`, wantErr: "invalid JSON"},
		{name: "missing model", api: router.Completions, give: `{"prompt":"x"}`, wantErr: `missing "model"`},
		{name: "missing prompt", api: router.Completions, give: `{"model":"m"}`, wantErr: `missing "prompt"`},
		{name: "empty prompt list", api: router.Completions, give: `{"model":"m","prompt":[]}`, wantErr: "empty list"},
		{name: "prompt wrong type", api: router.Completions, give: `{"model":"m","prompt":42}`, wantErr: "prompt must be"},
		{name: "negative token id", api: router.Completions, give: `{"model":"m","prompt":[-1]}`, wantErr: "invalid JSON"},
		{name: "missing messages", api: router.ChatCompletions, give: `{"model":"m","messages":[]}`, wantErr: `missing "messages"`},
		{name: "content wrong type", api: router.ChatCompletions, give: `{"model":"m","messages":[{"role":"user","content":3}]}`, wantErr: "content must be"},
		{name: "model wrong type", api: router.ChatCompletions, give: `{"model":1,"messages":[{"role":"user","content":"x"}]}`, wantErr: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := router.ParseBody(tt.api, []byte(tt.give))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				var be *router.BodyError
				assert.ErrorAs(t, err, &be)
				assert.Equal(t, 400, router.Status(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want.Model, got.Model)
			assert.Equal(t, tt.want.Prompt, got.Prompt)
			assert.Equal(t, tt.want.Messages, got.Messages)
			assert.Equal(t, tt.want.Stream, got.Stream)
			assert.Equal(t, tt.want.User, got.User)
			assert.Equal(t, tt.want.CacheSalt, got.CacheSalt)
			assert.Equal(t, tt.api, got.API)
		})
	}
}

func TestMaxOutputTokens(t *testing.T) {
	b, err := router.ParseBody(router.ChatCompletions, []byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":9}`))
	require.NoError(t, err)
	assert.Equal(t, 9, b.MaxOutputTokens())
	b, err = router.ParseBody(router.Completions, []byte(`{"model":"m","prompt":"x","max_tokens":5}`))
	require.NoError(t, err)
	assert.Equal(t, 5, b.MaxOutputTokens())
}

func TestAPIForPath(t *testing.T) {
	tests := []struct {
		give string
		want router.API
		ok   bool
	}{
		{"/v1/completions", router.Completions, true},
		{"/v1/chat/completions?x=1", router.ChatCompletions, true},
		{"/openai/v1/chat/completions/", router.ChatCompletions, true},
		{"/v1/models", 0, false},
		{"/tokenize", 0, false},
	}
	for _, tt := range tests {
		got, ok := router.APIForPath(tt.give)
		assert.Equal(t, tt.ok, ok, tt.give)
		assert.Equal(t, tt.want, got, tt.give)
	}
}

func TestChatML(t *testing.T) {
	msgs := []router.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "he"}}
	s, err := router.ChatML(msgs, true, false)
	require.NoError(t, err)
	assert.Equal(t, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhe<|im_end|>\n<|im_start|>assistant\n", s)
	s, err = router.ChatML(msgs, false, true)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(s, "<|im_start|>assistant\nhe"))
}
