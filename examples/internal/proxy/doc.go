// Package proxy is the HTTP side of routekit's example gateway: an
// OpenAI-compatible net/http handler that routes every request with a
// router.Router and forwards it with httputil.ReverseProxy, streaming
// responses through as they arrive.
//
//	h := proxy.New(rt, proxy.WithMetrics(m), proxy.WithDecisionLog(log))
//	srv := &http.Server{Addr: ":8080", Handler: h}
//	go srv.ListenAndServe()
//	...
//	h.Drain()              // /health turns 503, queued requests are refused
//	srv.Shutdown(ctx)      // waits for requests in flight
//
// Per request: the body is read once (≤ 64 MiB) and handed to the router,
// which parses, tokenizes, schedules and records the dispatch; the reverse
// proxy sends the same bytes to the chosen endpoint. A connection that cannot
// be made (the request was not sent) is retried on the decision's next
// fallback. The first response bytes mark the first token; usage is read from
// the JSON body or the server-sent events as they pass; the end of the copy
// ends the request's accounting. A client that goes away cancels the upstream
// request (the outbound request carries the client's context).
//
// Concurrency: a Handler is safe for concurrent use. It starts no goroutine.
//
// What it does not do: authenticate, rate-limit per key, rewrite bodies, or
// retry a request that reached a server (it may have started generating).
package proxy
