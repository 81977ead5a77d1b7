// Package pooltest provides test doubles for code that uses package pool: a
// renderer of real-format vLLM and SGLang /metrics pages from [pool.Metrics],
// and an HTTP server that serves such a page and lets a test change it.
//
//	srv := pooltest.NewServer(pool.Metrics{Running: 3, Waiting: 1, KVCacheUsage: 0.5})
//	defer srv.Close()
//	_ = p.Store(pool.Endpoint{ID: "a", Address: srv.Addr()})
//	s, _ := pool.NewScraper(p)
//	s.Scrape(ctx)             // the endpoint now reports Running 3
//	srv.Set(pool.Metrics{Running: 9, KVCacheUsage: 0.9})
//	srv.Fail(http.StatusInternalServerError) // or make it fail
//
// The pages are what prometheus_client renders for vLLM: HELP and TYPE lines,
// counters with _total and _created, labels sorted, engine and model_name on
// every per-engine series.
//
// Concurrency: [Page] and [Restrict] are pure functions. A [Server] is safe for
// concurrent use; like httptest.NewServer, [NewServer] starts the server's
// goroutines, and Close stops them.
//
// What it does not do: simulate a model server (package internal/vllmsim
// serves completions and KV events), or render every metric vLLM exports: only
// the ones a pool.Metrics holds.
package pooltest
