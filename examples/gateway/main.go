// Command gateway is routekit's main example. With no flags it starts an
// embedded default: a fleet of in-process simulated vLLM servers on loopback
// ports, a pool that scrapes their /metrics every 50 ms, a little demo
// traffic so the numbers move, and an HTTP endpoint serving the pool's live
// view as JSON:
//
//	cd examples && go run ./gateway
//	curl -s http://127.0.0.1:8080/pool
//
// It is the seed of the full gateway: the parts that belong to routing
// (parse, tokenize, score, proxy) plug in between the pool and the fleet.
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
	"strconv"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/pool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run starts everything, prints where to look, and serves until ctx is done.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address of the live view")
	replicas := fs.Int("replicas", 4, "number of embedded simulated vLLM servers")
	interval := fs.Duration("scrape-interval", 50*time.Millisecond, "how often /metrics is scraped")
	rate := fs.Float64("demo-rps", 20, "demo requests per second sent to the fleet (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replicas < 1 {
		return fmt.Errorf("gateway: -replicas must be at least 1, got %d", *replicas)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	specs := make([]vllmsim.ReplicaSpec, *replicas)
	for i := range specs {
		specs[i] = vllmsim.ReplicaSpec{Role: "both", Labels: map[string]string{"zone": "zone-" + strconv.Itoa(i%2)}}
	}
	fleet, err := vllmsim.StartFleet(ctx, specs...)
	if err != nil {
		return fmt.Errorf("gateway: start fleet: %w", err)
	}
	defer fleet.Close()

	p := pool.New()
	for i, r := range fleet.Replicas {
		role, err := pool.ParseRole(r.Role)
		if err != nil {
			return err
		}
		ep := pool.Endpoint{ID: "sim-" + strconv.Itoa(i), Address: r.Addr, Labels: r.Labels, Role: role,
			Models: []string{r.Config().Model}}
		if err := p.Store(ep); err != nil {
			return err
		}
	}
	scraper, err := pool.NewScraper(p, pool.WithInterval(*interval))
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pool", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(liveView(p.Snapshot()))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- scraper.Run(ctx) }()
	go func() { errc <- demoTraffic(ctx, p, *rate) }()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "routekit gateway: %d simulated vLLM servers, pool live view on %s/pool\n", len(fleet.Replicas), url)
	fmt.Fprintf(stdout, "try: curl -s %s/pool\n", url)

	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errc: // something failed early
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutdownCtx)
	for range 2 {
		if err := <-errc; firstErr == nil && err != nil && !errors.Is(err, context.Canceled) {
			firstErr = err
		}
	}
	if errors.Is(firstErr, context.Canceled) {
		firstErr = nil
	}
	return firstErr
}
