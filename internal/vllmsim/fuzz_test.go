package vllmsim_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/routekit/routekit/internal/vllmsim"
)

func checkParseErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ae *vllmsim.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *APIError", err)
	}
	if ae.Code != http.StatusBadRequest && ae.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d for a parse error", ae.Code)
	}
	if ae.Message == "" || ae.Type == "" {
		t.Fatalf("empty error fields: %+v", ae)
	}
}

var fuzzSeeds = []string{
	`{"model":"m","prompt":"hello","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`,
	`{"prompt":[1,2,3],"max_tokens":1}`,
	`{"prompt":[[1,2,3]]}`,
	`{"prompt":["one"]}`,
	`{"prompt":["a","b"]}`,
	`{"prompt":[1,-2]}`,
	`{"prompt":[1.5]}`,
	`{"prompt":null}`,
	`{"prompt":"x","max_tokens":-1}`,
	`{"prompt":"x","max_tokens":"ten"}`,
	`{"prompt":"x","kv_transfer_params":{"do_remote_decode":true}}`,
	`{"prompt":"x","kv_transfer_params":"no"}`,
	`{"prompt":"x","cache_salt":""}`,
	`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":3}`,
	`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"}]}]}`,
	`{"messages":[{"role":"user","content":42}]}`,
	`{"messages":[]}`,
	`{"messages":[{"role":"user","content":null}],"add_generation_prompt":true,"continue_final_message":true}`,
	`{"prompt": "x",`,
	`[]`,
	`null`,
	``,
	`{"prompt":"\ud800"}`,
	`{"n":2,"prompt":"x"}`,
	`{"prompt":"x","stream_options":{"include_usage":true}}`,
}

func FuzzParseCompletionRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := vllmsim.ParseCompletionRequest(body)
		checkParseErr(t, err)
		if err == nil && !req.Prompt.Set {
			t.Fatal("accepted a request without a prompt")
		}
		if err == nil && req.MaxTokens != nil && *req.MaxTokens < 1 {
			t.Fatal("accepted max_tokens < 1")
		}
	})
}

func FuzzParseChatRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := vllmsim.ParseChatRequest(body)
		checkParseErr(t, err)
		if err == nil && len(req.Messages) == 0 {
			t.Fatal("accepted a request without messages")
		}
	})
}
