// Command extproc is an Envoy external processor that picks the model-server
// endpoint of every inference request with routekit, speaking the Gateway API
// Inference Extension's endpoint-picker protocol: it can replace llm-d's EPP
// behind Envoy Gateway, kgateway, Istio or a plain Envoy (see envoy.yaml and
// README.md).
//
//	go run ./extproc                                   # embedded simulated fleet
//	go run ./extproc -endpoints http://10.0.0.7:8000,http://10.0.0.8:8000 -model Qwen/Qwen3-8B
//
// It serves envoy.service.ext_proc.v3.ExternalProcessor and grpc.health.v1
// on -addr, and /metrics and /debug/decisions over HTTP on -metrics-addr.
package main

import (
	"context"
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

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/router"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// healthServices are the names Envoy and Kubernetes probes ask for.
var healthServices = []string{"", extprocv3.ExternalProcessor_ServiceDesc.ServiceName, "liveness", "readiness"}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("extproc", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "127.0.0.1:9002", "gRPC listen address (ext_proc and health)")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9090", "HTTP address for /metrics and /debug/decisions ('' to disable)")
	fallbacks := fs.Bool("destination-fallbacks", false, "list fallback endpoints after the chosen one in x-gateway-destination-endpoint (for Envoy's override_host policy; ORIGINAL_DST takes one address)")
	drain := fs.Duration("drain-timeout", 30*time.Second, "how long shutdown waits for streams in flight")
	grace := fs.Duration("shutdown-grace", 5*time.Second, "how long to keep serving after reporting NOT_SERVING, so that health checkers notice")
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
	// The fleet (embedded servers included) and its routing state outlive
	// ctx: after the signal, shutdown keeps serving for the grace period and
	// drains the streams in flight, which still need them.
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
	go func() {
		if err := fl.Run(bg); err != nil {
			log.Printf("extproc: fleet: %v", err)
		}
	}()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	gs, hs := newGRPCServer(NewServer(rt, *fallbacks))
	metricsURL := "(off)"
	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("extproc: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", router.MetricsHandler(m))
		mux.Handle("GET /debug/decisions", router.DecisionsHandler(dlog))
		hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hsrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("extproc: metrics server: %v", err)
			}
		}()
		defer hsrv.Close()
		metricsURL = "http://" + mln.Addr().String() + "/metrics"
	}
	fmt.Fprintf(stdout, "routekit ext_proc endpoint picker on %s (grpc), metrics on %s\n", ln.Addr(), metricsURL)
	for _, e := range fl.Pool.Snapshot().Endpoints() {
		fmt.Fprintf(stdout, "  endpoint %s at %s\n", e.ID, e.Address)
	}
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown(gs, hs, rt, *grace, *drain)
	return nil
}

// newGRPCServer returns a gRPC server with the external processor and the
// health service (every name SERVING).
func newGRPCServer(s *Server) (*grpc.Server, *health.Server) {
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, s)
	hs := health.NewServer()
	for _, name := range healthServices {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(gs, hs)
	return gs, hs
}

// shutdown reports NOT_SERVING (so Envoy and Kubernetes stop sending) and
// keeps serving for grace while they notice; then it closes flow control
// (waiting requests get 503), stops taking streams and lets the ones in
// flight finish for up to drain.
func shutdown(gs *grpc.Server, hs *health.Server, rt *router.Router, grace, drain time.Duration) {
	hs.Shutdown()
	time.Sleep(grace)
	if fc := rt.Flow(); fc != nil {
		fc.Close()
	}
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain):
		gs.Stop()
	}
}
