// Command gateway is routekit's main example: an OpenAI-compatible gateway in
// front of a fleet of vLLM servers, routing every request to the endpoint
// that already holds its prompt's prefix until that endpoint is saturated.
//
// With no flags it starts an embedded default: four in-process simulated vLLM
// servers on loopback ports, publishing their KV-cache events over ZeroMQ and
// their load on /metrics, with the gateway's KV index subscribed to them. It
// prints its URL and a ready-to-paste curl:
//
//	cd examples && go run ./gateway
//
// In front of real vLLM servers (KV events optional; without them the index
// learns from routing decisions):
//
//	go run ./gateway -addr :8080 -model Qwen/Qwen3-8B \
//	  -endpoints http://10.0.0.7:8000,http://10.0.0.8:8000 \
//	  -kv-events tcp://10.0.0.7:5557,tcp://10.0.0.8:5557
//	go run ./gateway -config fleet.json
//
// It serves POST /v1/completions and /v1/chat/completions (streamed or not),
// GET /v1/models, /health, /metrics (Prometheus), /debug/decisions (recent
// decisions with every candidate's scores) and /pool (the endpoints' live
// state). On SIGINT or SIGTERM it stops taking requests and drains the ones
// in flight (-drain-timeout).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run starts everything, prints where to look, and serves until ctx is done;
// then it drains.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	drain := fs.Duration("drain-timeout", 30*time.Second, "how long shutdown waits for requests in flight")
	cfgFn := fleet.Flags(fs)
	var pol router.Policy
	pol.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := cfgFn()
	if err != nil {
		return err
	}
	if cfg.Embedded < 0 {
		return fmt.Errorf("gateway: -embedded must be at least 1, got %d", cfg.Embedded)
	}

	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBG()
	fl, err := fleet.Start(bg, cfg)
	if err != nil {
		return err
	}
	defer fl.Close()
	rt, m, dlog, err := fl.Router(pol)
	if err != nil {
		return err
	}
	runDone := make(chan error, 1)
	go func() { runDone <- fl.Run(bg) }()

	h := proxy.New(rt, proxy.WithMetrics(m), proxy.WithDecisionLog(dlog))
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /pool", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(liveView(fl.Pool.Snapshot()))
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	banner(stdout, "http://"+ln.Addr().String(), fl)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("gateway: %w", err)
	case err := <-runDone:
		return fmt.Errorf("gateway: fleet: %w", err)
	}
	fmt.Fprintln(stdout, "routekit gateway: draining")
	h.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	cancelBG()
	<-runDone
	if errors.Is(err, context.DeadlineExceeded) {
		_ = srv.Close()
		return fmt.Errorf("gateway: requests still in flight after %v", *drain)
	}
	return err
}

func banner(w io.Writer, url string, fl *fleet.Fleet) {
	kind := "vLLM servers"
	if fl.Sim != nil {
		kind = "simulated vLLM servers (in process, KV events over ZeroMQ)"
	}
	fmt.Fprintf(w, "routekit gateway on %s: %d %s, model %q\n", url, fl.Pool.Snapshot().Len(), kind, fl.Model)
	for _, e := range fl.Pool.Snapshot().Endpoints() {
		fmt.Fprintf(w, "  endpoint %-8s %s\n", e.ID, e.Address)
	}
	fmt.Fprintf(w, "try:\n  curl -s %s/v1/completions -H 'Content-Type: application/json' -d '{\"model\":%q,\"prompt\":\"Once upon a time\",\"max_tokens\":32}'\n", url, fl.Model)
	fmt.Fprintf(w, "  curl -sN %s/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":%q,\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"max_tokens\":32,\"stream\":true}'\n", url, fl.Model)
	fmt.Fprintf(w, "then: curl -s %s/debug/decisions?n=2   (why it went where it went)\n      curl -s %s/metrics | grep routekit_\n      curl -s %s/pool\n", url, url, url)
}
