// Package promfloat writes a float64 sample value exactly as Python's
// prometheus_client renders it on a /metrics page (floatToGoString): Python's
// repr of the float, except that a positive value with more than six digits
// before the point gets a Go-style exponent, which the client zero-pads to
// three digits from 10^10 up ("1.8432e+06", "1e+010"). vLLM's and SGLang's
// pages are rendered by that client, so routekit's stand-ins (vllmsim's
// /metrics, pooltest's pages) use this to be byte-exact.
//
// Usage:
//
//	fmt.Fprintf(w, "vllm:num_requests_running{engine=%q} %s\n", "0", promfloat.Format(v))
//
// Concurrency: Format is a pure function, safe for concurrent use.
//
// What it does not do: parse values (any Prometheus text parser reads them),
// or format other clients' styles (Go's client_golang writes Go's own
// strconv output, not this).
package promfloat
