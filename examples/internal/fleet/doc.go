// Package fleet assembles the model servers an example program fronts: either
// an embedded fleet of in-process vLLM stand-ins (the default, so that
// `go run ./gateway` works with nothing else installed) or a static list of
// real vLLM servers, with everything routing needs kept live: the endpoint
// pool, its /metrics scraper, the KV-block index and the ZeroMQ subscriber
// that feeds it vLLM's KV events.
//
//	cfg := fleet.Config{Embedded: 4} // or Endpoints: [...] from flags or a file
//	f, err := fleet.Start(ctx, cfg)
//	defer f.Close()
//	go f.Run(ctx) // scraper, KV events, index expiry
//	rt, err := router.New(f.Pool, sched, router.WithPrefix(f.Hasher, f.Index), router.WithTokenizer(f.Tokenizer))
//
// A Fleet's fields are safe for concurrent use once Start returns. Start
// starts the embedded servers' goroutines (like httptest.NewServer); the
// routing components run only in Run, on the caller's goroutine.
//
// It does not discover endpoints (no Kubernetes): the list is static.
package fleet
