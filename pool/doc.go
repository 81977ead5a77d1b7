// Package pool keeps what a gateway needs to know about its model-server
// endpoints, fresh and readable without locks: who they are ([Endpoint]: ID,
// address, labels, prefill/decode role, models, LoRA adapters, data-parallel
// rank), what their /metrics pages last said ([Metrics]: queue, running
// requests, KV-cache usage, block size, LoRA state, prefix-cache counters), how
// that scrape went ([Status]), and the gateway's own in-flight accounting
// ([Load]: requests and uncached prompt tokens, updated on dispatch, first token
// and end).
//
// Usage:
//
//	p := pool.New()
//	_ = p.Store(pool.Endpoint{ID: "vllm-0", Address: "10.0.0.7:8000", Models: []string{"Qwen/Qwen3-8B"}})
//	unsubscribe := p.OnRemove(func(ep *pool.Endpoint) { index.DropEndpoint(ep.ID) })
//	defer unsubscribe()
//
//	s, _ := pool.NewScraper(p, pool.WithInterval(50*time.Millisecond))
//	go s.Run(ctx) // the caller owns the goroutine
//
//	// Per request, on the hot path: no locks, no allocations.
//	for _, ep := range p.Snapshot().Endpoints() {
//		m, load := ep.Metrics(), ep.Load()
//		_ = float64(m.Waiting+int(load.Requests)) * (1 + m.KVCacheUsage)
//	}
//	f := ep.Dispatch(uncachedTokens) // then f.FirstToken(), f.End()
//
// Scraping: [Scraper] fetches every endpoint's /metrics concurrently (default
// every 50 ms, 1 s timeout, 4 MiB page limit, stale after 2 s without a good
// scrape) and reads it with [ParseMetrics], a single-pass extractor of the
// vLLM V1 (with pre-v0.12 fallbacks) and SGLang series that routing uses,
// 100-200× faster than decoding a whole page with expfmt (about 40× on the
// short filtered pages, where fixed costs weigh more). It asks only for the
// series it reads ([WithNameFilter], prometheus_client's name[] parameter:
// about 2 KB instead of 20-100 KB per vLLM page, less work for the engine
// too) and falls back to whole pages for servers that do not honour that.
// Plain-HTTP endpoints are fetched by a minimal HTTP/1.1 keep-alive client of
// its own (one write and one read system call per scrape); https or a custom
// [WithHTTPClient] go through net/http. A failed scrape keeps the last good
// [Metrics] and records its error in the endpoint's [Status].
//
// Concurrency: [Pool], [Snapshot] and the live-state methods of [Endpoint] are
// safe for concurrent use. Membership changes publish a new immutable
// [Snapshot] through an atomic pointer; readers never lock. Live numbers are
// atomics or atomically swapped immutable values. Removal callbacks run in
// order and never under a lock. A loop that follows membership (additions
// included) waits on [Snapshot.Changed], which is closed when a newer
// snapshot is published, then reads [Pool.Snapshot] again. [Scraper.Run] is the only background work and
// runs on the caller's goroutine until its context is done.
//
// What it does not do: discover endpoints (feed it from Kubernetes, a file or
// DNS in your own code), route requests, hold KV-block locations (that is
// package kvcache, which subscribes to removals here), or keep metrics
// history: it holds the newest good scrape only (compute rates such as the
// prefix-cache hit rate from two snapshots of the counters yourself).
package pool
