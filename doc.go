// Package routekit is a library of composable inference-routing primitives for
// fleets of vLLM model servers. A platform team imports the packages it needs
// to build its own LLM gateway, or embeds them in a platform it already runs.
//
// The packages compose along one request:
//
//		client ──► parse body once ──► tokenizer ──► prefix ──► kvcache ──► scheduler ──► proxy ──► vLLM
//		           (model, prompt)     (token IDs)   (block     (who holds   (filters,     (HTTP/SSE,
//		                                             keys)      which block, scorers,     ext_proc)
//		                                                        per tier)    picker)          │
//		           pool ◄──────────── in-flight accounting (dispatch, first token, end) ◄─────┘
//		           pool ◄──────────── /metrics scrapes        kvcache ◄── KV events (ZMQ + msgpack)
//
//	  - [github.com/routekit/routekit/tokenizer] turns text into the exact token IDs the
//	    model server will use, from the model's tokenizer.json.
//	  - [github.com/routekit/routekit/prefix] turns token IDs into chained KV-block keys.
//	  - [github.com/routekit/routekit/kvcache] answers "which endpoint already holds the
//	    longest prefix of these blocks, in which tier?", fed by vLLM's KV events.
//	  - [github.com/routekit/routekit/pool] holds the endpoints and their live state: scraped
//	    vLLM metrics and the gateway's own in-flight requests and tokens.
//	  - [github.com/routekit/routekit/scheduler] composes filters, scorers and pickers into
//	    one routing decision, with admission and flow control in front.
//	  - pd splits prefill from decode, autoscaler sizes the pools.
//
// Leaves (tokenizer, prefix, kvcache, pool) import no sibling except pool; scheduler,
// pd and autoscaler compose them. Runnable programs that wire everything into net/http,
// Envoy ext_proc and Kubernetes live in the separate examples module, so that gRPC,
// go-control-plane and client-go never enter this module's dependency graph.
//
// One decision, wired by hand (the package example runs it):
//
//	hasher, _ := prefix.NewHasher(model, prefix.WithBlockSize(16))
//	idx, _ := kvcache.New(hasher) // fed by kvevents.Subscriber.Run
//	p := pool.New()
//	_ = p.Store(pool.Endpoint{ID: "a", Address: "10.0.0.7:8000"})
//	scraper, _ := pool.NewScraper(p) // go scraper.Run(ctx)
//	s, _ := scheduler.New(scheduler.DefaultProfile(rand.NewPCG(1, 2)),
//		scheduler.WithPrefixIndex(scheduler.KVIndex(idx)))
//
//	ids := tok.Encode(prompt) // tok is a *tokenizer.Tokenizer
//	keys := hasher.AppendKeys(nil, ids, prefix.Extra{})
//	d, err := s.Schedule(ctx, &scheduler.Request{Model: model, BlockKeys: keys,
//		BlockSize: 16, PromptTokens: len(ids)}, p.Snapshot().Endpoints())
//	if err != nil {
//		http.Error(w, err.Error(), scheduler.HTTPStatus(err))
//		return
//	}
//	// proxy to d.Endpoint.Address, with the in-flight accounting of pool.Endpoint
//
// Concurrency: each package documents its own contract. The central types
// (tokenizer.Tokenizer, prefix.Hasher, kvcache.Index, pool.Pool,
// scheduler.Scheduler) are safe for concurrent use by every request's
// goroutine. No constructor starts a goroutine: background work (scraping, KV
// events, expiry) is a Run(ctx) method whose goroutine the caller owns.
//
// What it does not do: this package itself holds no code. The library proxies
// no bytes, discovers no endpoints and talks to no Kubernetes API; those are
// the programs' jobs, in the examples module.
package routekit
