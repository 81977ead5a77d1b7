package tokenizer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"

	"github.com/routekit/routekit/tokenizer"
)

func Example() {
	// A small SentencePiece-style tokenizer.json (Metaspace, byte fallback, <s>…</s> template,
	// and "world" as an added token).
	tok, err := tokenizer.Load(filepath.Join("testdata", "synthetic", "b.json"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := tok.Encode("hello world")
	fmt.Println(ids)
	fmt.Println(tok.EncodeSpecial("hello world"))
	fmt.Printf("%q\n", tok.Decode(ids))
	// Output:
	// [323 3 331]
	// [1 323 3 331 2]
	// "hello world"
}

func ExampleRemote() {
	// A stand-in for vLLM's /v1/chat/completions/render.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"request_id":"chatcmpl-1","token_ids":[128000,128006,882,128007,271]}`)
	}))
	defer srv.Close()

	remote, err := tokenizer.NewRemote(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, err := remote.RenderChat(context.Background(), []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	fmt.Println(ids, err)
	// Output:
	// [128000 128006 882 128007 271] <nil>
}
