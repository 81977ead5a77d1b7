// Package scheduler decides which model-server endpoint serves an inference
// request: filters narrow the candidates, weighted scorers rate them, a picker
// chooses (with ordered fallbacks), and admission and flow control hold requests
// back while the fleet is saturated.
//
// Plugins are plain Go values behind one-method interfaces ([Filter], [Scorer],
// [Picker], with Func adapters); a pipeline is a [Profile] literal; there is no
// registry and no string lookup. Scores are in [0,1] and are written into space
// the scheduler owns; a score out of range fails the decision ([ErrBadScore])
// instead of being clamped. Every decision can explain itself ([Decision.Explain]).
//
// Usage (a gateway, per request, after parsing and tokenizing once):
//
//	s, err := scheduler.Default(scheduler.KVIndex(index)) // see DefaultProfile
//	...
//	req := &scheduler.Request{Model: model, BlockKeys: keys, PromptTokens: n, Tenant: user}
//	permit, err := flow.Acquire(ctx, req) // waits while saturated; 429/503 on rejection
//	if err != nil { http.Error(w, err.Error(), scheduler.HTTPStatus(err)); return }
//	d, err := s.Schedule(ctx, req, p.Snapshot().Endpoints())
//	if err != nil { permit.Done(); http.Error(w, err.Error(), scheduler.HTTPStatus(err)); return }
//	flight := d.Endpoint.Dispatch(d.UncachedTokens) // in-flight accounting in pool
//	permit.Done()
//	defer func() { flight.End(); flow.Notify() }()
//	proxy(d.Endpoint.Address, d.Fallbacks...) // flight.FirstToken() at the first byte
//
// Built-ins: filters [PrefixAffinity], [Labels], [Roles], [Model]; scorers
// [Prefix], [TokenLoad], [QueueDepth], [RunningRequests], [InFlight],
// [KVCacheUtilization], [LoRAAffinity], [SessionAffinity], [NoHitLRU]; pickers
// [MaxScore], [WeightedRandom], [CostPicker], [Random], [RoundRobin]; the
// [Disaggregated] profile handler for prefill/decode; the [Saturation] detector;
// [FlowControl]. Each documents its formula.
//
// Concurrency: a [Scheduler] is immutable after [New] and safe for concurrent
// use; so are all built-in plugins and [FlowControl]. A [Decision] belongs to one
// goroutine. Nothing here starts a goroutine; randomness comes from injected
// rand.Source values and time from injected clocks.
//
// What it does not do: parse request bodies, tokenize or hash prompts (see
// tokenizer and prefix), keep the KV index (kvcache), scrape metrics or count
// in-flight work (pool), proxy, or retry. It never records speculative index
// entries itself: the gateway does that after it has actually dispatched.
package scheduler
