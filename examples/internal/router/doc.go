// Package router is the request pipeline shared by routekit's example
// programs (the net/http gateway and the Envoy ext_proc endpoint picker), so
// that it is written once: parse the OpenAI body once, tokenize, compute
// KV-block keys, wait in flow control, schedule, and account for the request
// on dispatch, first token and end, with a speculative KV-index entry for the
// endpoint it was sent to.
//
//	s, fc, _ := router.Policy{MaxInFlight: 64}.Build(p, index)
//	rt, _ := router.New(p, s, router.WithFlowControl(fc),
//		router.WithPrefix(hasher, index),
//		router.WithTokenizer(&router.Local{Encoder: router.HF(tok), Template: router.ChatML}))
//
//	f, err := rt.Route(ctx, &router.Input{API: router.Completions, Body: body, Header: r.Header})
//	if err != nil {
//		w.Header().Set(router.HeaderDropReason, string(router.Reason(err)))
//		http.Error(w, err.Error(), router.Status(err))
//		return
//	}
//	// send to f.Endpoint.Address; on a connection error: f.Retry(ctx)
//	f.FirstToken() // at the first response bytes
//	f.End(router.Outcome{Status: 200, Usage: u, HasUsage: true})
//
// Also here: [ParseUsage] and [SSEScanner] read usage from responses,
// [Metrics] and [DecisionLog] make the router observable.
//
// Concurrency: a [Router], [Metrics] and [DecisionLog] are safe for concurrent
// use; a [Flight] belongs to the goroutine handling its request. Nothing here
// starts a goroutine.
//
// What it does not do: proxy bytes (the programs do, with
// httputil.ReverseProxy or Envoy), discover endpoints (package
// examples/internal/fleet), or validate sampling parameters (the model
// server does). It re-marshals nothing: the client's body is forwarded as is.
package router
