package router_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/routekit/routekit/examples/internal/router"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name string
		give string
		want router.Usage
		ok   bool
	}{
		{"full", `{"id":"x","usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":8}}}`,
			router.Usage{PromptTokens: 10, CompletionTokens: 3, TotalTokens: 13, CachedTokens: 8}, true},
		{"null details, spaces", `{"usage" : { "prompt_tokens" : 7 , "completion_tokens":0,"total_tokens":7,"prompt_tokens_details":null}}`,
			router.Usage{PromptTokens: 7, TotalTokens: 7}, true},
		{"not a number", `{"usage":{"prompt_tokens":"7"}}`, router.Usage{}, false},
		{"no details", `{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
			router.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, true},
		{"null usage", `{"usage":null}`, router.Usage{}, false},
		{"absent", `{"choices":[]}`, router.Usage{}, false},
		{"not json", `oops`, router.Usage{}, false},
		{"truncated", `{"usage":{"prompt_tokens":1`, router.Usage{}, false},
		{"quoted key in text", `{"usage" : {"prompt_tokens":4,"completion_tokens":1,"total_tokens":5},"choices":[{"text":"say \"usage\": 9"}]}`,
			router.Usage{PromptTokens: 4, CompletionTokens: 1, TotalTokens: 5}, true},
		{"valid prefix, broken tail", `{"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}, oops`, router.Usage{}, false},
		// Counts feed Prometheus counters: a negative one (which would make
		// them go down) or one read wrong is no usage.
		{"negative", `{"usage":{"prompt_tokens":-5,"completion_tokens":2,"total_tokens":-3}}`, router.Usage{}, false},
		{"negative cached", `{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":-1}}}`, router.Usage{}, false},
		{"19 digits", `{"usage":{"prompt_tokens":1234567890123456789,"completion_tokens":1,"total_tokens":1}}`,
			router.Usage{PromptTokens: 1234567890123456789, CompletionTokens: 1, TotalTokens: 1}, true},
		{"overflow", `{"usage":{"prompt_tokens":12345678901234567890123}}`, router.Usage{}, false},
		{"fraction", `{"usage":{"prompt_tokens":3.5,"completion_tokens":1,"total_tokens":4}}`, router.Usage{}, false},
		{"exponent", `{"usage":{"prompt_tokens":1e3,"completion_tokens":1,"total_tokens":4}}`, router.Usage{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := router.ParseUsage([]byte(tt.give))
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

const sseStream = "data: {\"id\":\"c\",\"choices\":[{\"text\":\"a\"}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c\",\"choices\":[{\"text\":\"b\"}],\"usage\":null}\r\n\r\n" +
	": a comment line\n\n" +
	"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n" +
	"data: [DONE]\n\n"

func TestSSEScannerAnySplit(t *testing.T) {
	want := router.Usage{PromptTokens: 12, CompletionTokens: 2, TotalTokens: 14, CachedTokens: 4}
	for cut := 0; cut <= len(sseStream); cut++ {
		var s router.SSEScanner
		_, _ = s.Write([]byte(sseStream[:cut]))
		_, _ = s.Write([]byte(sseStream[cut:]))
		u, ok := s.Usage()
		if !assert.True(t, ok, "cut %d", cut) {
			return
		}
		assert.Equal(t, want, u)
		assert.Equal(t, 3, s.Events())
		assert.True(t, s.Done())
	}
	// Byte by byte.
	var s router.SSEScanner
	for i := range len(sseStream) {
		_, _ = s.Write([]byte{sseStream[i]})
	}
	u, ok := s.Usage()
	assert.True(t, ok)
	assert.Equal(t, want, u)
}

func TestSSEScannerHostile(t *testing.T) {
	var s router.SSEScanner
	huge := "data: {\"usage\":{\"prompt_tokens\":1}," + strings.Repeat("x", 2<<20) + "\n\n"
	_, _ = s.Write([]byte(huge))
	_, _ = s.Write([]byte("data: {\"usage\": {broken\n\ndata: not json with \"usage\"\n\n"))
	_, ok := s.Usage()
	assert.False(t, ok, "oversized and malformed lines carry no usage")
	assert.Equal(t, 2, s.Events())
	_, _ = s.Write([]byte("data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n"))
	u, ok := s.Usage()
	assert.True(t, ok, "the scanner recovers after bad lines")
	assert.Equal(t, 5, u.PromptTokens)
}
