package vllmsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
)

// ReplicaSpec describes one replica of a Fleet.
// It is plain data with no internal synchronisation: share it only read-only.
type ReplicaSpec struct {
	// Config is the engine; the zero value means Fast().
	Config Config
	// Role is free-form ("prefill", "decode", "both", ...); it is reported
	// back in Replica.Role for routers that select by role.
	Role string
	// Labels are free-form labels (zone, version, ...).
	Labels map[string]string
	// KVEvents makes the replica publish KV events on ephemeral loopback
	// ports, with a replay socket and llm-d's topic kv@<host:port>@<model>.
	KVEvents bool
	// KVSchema is the KV-event wire schema (default kvevents.MapCurrent).
	KVSchema kvevents.Schema
	// Options are extra server options (tokenizer, seed, hash algorithm).
	Options []ServerOption
}

// Replica is one running server of a Fleet. Its fields are read-only; its
// methods are safe for concurrent use.
type Replica struct {
	*Server
	// URL is the base URL, e.g. "http://127.0.0.1:41234".
	URL string
	// Addr is host:port.
	Addr   string
	Role   string
	Labels map[string]string
	// KVEndpoint and KVReplayEndpoint are the ZMQ addresses of rank 0 ("" when off).
	KVEndpoint, KVReplayEndpoint string
	// KVRanks are every data-parallel rank's ZMQ addresses, rank r at
	// index r, each rank's ports those of rank 0 plus r (nil when off).
	KVRanks []KVRank
	// KVTopic is the topic frame of the replica's KV events.
	KVTopic string

	http   *http.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// Fleet is a set of in-process simulated vLLM servers on loopback
// ephemeral ports: the stand-in for a real fleet in tests and examples.
// Decode replicas find prefill replicas by engine id (any rank's, see
// Server.EngineIDs) to release transferred blocks. Fleet is safe for concurrent use; Close tears everything down.
type Fleet struct {
	Replicas []*Replica

	cancel context.CancelFunc
	wg     sync.WaitGroup
	byID   map[string]*Server
	mu     sync.Mutex // guards byID during start-up
	closed bool
}

// StartFleet starts one server per spec, each listening on 127.0.0.1:0 and
// running its engine until Close (or ctx's end). Unlike constructors, it
// starts goroutines: it is a test and example helper, like
// httptest.NewServer.
func StartFleet(ctx context.Context, specs ...ReplicaSpec) (*Fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cancel: cancel, byID: make(map[string]*Server)}
	for i, sp := range specs {
		r, err := f.start(ctx, i, sp)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("vllmsim: fleet replica %d: %w", i, err)
		}
		f.Replicas = append(f.Replicas, r)
	}
	return f, nil
}

func (f *Fleet) lookup(id string) *Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byID[id]
}

func (f *Fleet) start(ctx context.Context, i int, sp ReplicaSpec) (*Replica, error) {
	cfg := sp.Config
	if cfg == (Config{}) {
		cfg = Fast()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	r := &Replica{URL: "http://" + addr.String(), Addr: addr.String(), Role: sp.Role, Labels: sp.Labels}
	opts := []ServerOption{
		WithServerSeed(uint64(i + 1)), WithAdvertise(addr.IP.String(), addr.Port), WithPeers(f.lookup),
	}
	if sp.KVEvents {
		r.KVTopic = "kv@" + addr.String() + "@" + cfg.Model
		opts = append(opts, WithKVEvents(KVEventsConfig{
			Publisher: kvpublish.Config{Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0",
				Mode: kvpublish.ModeBind, Topic: r.KVTopic},
			Schema: sp.KVSchema,
		}))
	}
	opts = append(opts, sp.Options...)
	srv, err := NewServer(cfg, opts...)
	// Ranks > 0 bind rank 0's ephemeral ports plus their rank, which
	// another socket may hold: try other ports a few times.
	for try := 0; err != nil && sp.KVEvents && cfg.DataParallelSize > 1 && !errors.Is(err, ErrBadConfig) && try < 10; try++ {
		srv, err = NewServer(cfg, opts...)
	}
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	r.Server = srv
	r.KVEndpoint, r.KVReplayEndpoint = srv.KVEndpoints()
	r.KVRanks = srv.KVRankEndpoints()
	f.mu.Lock()
	f.byID[srv.EngineID()] = srv
	for _, id := range srv.EngineIDs() { // every rank's, as decode servers name them
		f.byID[id] = srv
	}
	f.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	r.http = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return rctx }}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		defer close(r.done)
		_ = srv.Run(rctx)
	}()
	go func() {
		defer f.wg.Done()
		if err := r.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under us; Close reports nothing more useful
		}
	}()
	return r, nil
}

// Close stops every replica: servers answer 503 while they shut down,
// engines abort in-flight requests (closing their streams), HTTP servers
// close, KV sockets close. It waits for all goroutines.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	for _, r := range f.Replicas {
		r.Shutdown()
	}
	f.cancel()
	var errs []error
	for _, r := range f.Replicas {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("vllmsim: replica %s: HTTP shutdown: %w (connections closed)", r.Addr, err))
			_ = r.http.Close()
		}
		cancel()
	}
	f.wg.Wait()
	return errors.Join(errs...)
}

// Kill stops the replica abruptly, like a crashed pod: its connections are
// closed, its engine stops (streams in flight end without [DONE]) and its
// port refuses connections. The rest of the fleet keeps running; Close
// still tears everything down. It is for fault-injection tests of routers
// and pools.
func (r *Replica) Kill() {
	r.Shutdown()
	_ = r.http.Close()
	r.cancel()
	<-r.done
}

// Port returns the replica's HTTP port.
func (r *Replica) Port() int {
	_, p, _ := net.SplitHostPort(r.Addr)
	n, _ := strconv.Atoi(p)
	return n
}
