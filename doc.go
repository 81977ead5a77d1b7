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
package routekit
