package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/tokenizer"
)

// Config says which servers to front. It is loaded from flags or a small JSON
// file ([Load]); the zero value starts the default embedded fleet.
// It is plain data with no internal synchronisation: share it only read-only.
type Config struct {
	// Model is the served model name. Empty means the embedded fleet's
	// ("sim-model"); required with Endpoints.
	Model string `json:"model"`
	// BlockSize is the servers' KV block size in tokens (vLLM's default 16).
	// It must equal the servers' for KV events to line up with requests.
	BlockSize int `json:"block_size"`
	// Tokenizer is a path to the model's tokenizer.json (or its directory),
	// for exact block keys without a round trip. Empty: the embedded fleet's
	// byte tokenizer, or for real servers their /tokenize endpoint.
	Tokenizer string `json:"tokenizer"`
	// Endpoints are real servers. Empty means an embedded fleet.
	Endpoints []Endpoint `json:"endpoints"`
	// Embedded is the number of in-process simulated servers when Endpoints
	// is empty (default 4).
	Embedded int `json:"embedded"`
	// ScrapeInterval is how often /metrics is scraped (default 50ms).
	ScrapeInterval Duration `json:"scrape_interval"`
	// StaleAfter is the age after which an endpoint's metrics count as stale
	// (default the scraper's, 2 s).
	StaleAfter Duration `json:"stale_after"`
}

// Endpoint is one real model server.
// It is plain data with no internal synchronisation: share it only read-only.
type Endpoint struct {
	// ID names the endpoint (default its address).
	ID string `json:"id"`
	// URL is the server's base URL, "http://host:port".
	URL string `json:"url"`
	// KVEvents is the server's KV-event PUB address ("tcp://host:5557"); empty
	// means it publishes none and the index learns from routing decisions.
	KVEvents string `json:"kv_events"`
	// KVReplay is its replay ROUTER address, optional.
	KVReplay string `json:"kv_replay"`
}

// Duration is a time.Duration that reads "50ms" in JSON.
// Duration values are immutable and safe for concurrent use.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("fleet: duration must be a string like \"50ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Load reads a Config from a JSON file. Unknown fields are an error, so a
// typo does not silently fall back to a default.
func Load(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("fleet: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("fleet: %s: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) { // one object, nothing after it
		return c, fmt.Errorf("fleet: %s: data after the configuration object", path)
	}
	return c, nil
}

// ParseEndpoints turns comma-separated URLs (and, optionally, as many
// comma-separated KV-event addresses, "" for none) into endpoints.
func ParseEndpoints(urls, kvEvents string) ([]Endpoint, error) {
	if strings.TrimSpace(urls) == "" {
		return nil, nil
	}
	us := strings.Split(urls, ",")
	var ks []string
	if kvEvents != "" {
		ks = strings.Split(kvEvents, ",")
		if len(ks) != len(us) {
			return nil, fmt.Errorf("fleet: %d endpoints but %d KV-event addresses", len(us), len(ks))
		}
	}
	out := make([]Endpoint, len(us))
	for i, u := range us {
		out[i].URL = strings.TrimSpace(u)
		if ks != nil {
			out[i].KVEvents = strings.TrimSpace(ks[i])
		}
	}
	return out, nil
}

// Fleet is the running set of servers and the routing state about them.
// A Fleet is safe for concurrent use once Start returns; do not reassign its
// exported fields.
type Fleet struct {
	// Pool holds the endpoints and their live state.
	Pool *pool.Pool
	// Hasher computes block keys for Model; Index holds who caches what.
	Hasher *prefix.Hasher
	Index  *kvcache.Index
	// Tokenizer tokenizes prompts as the servers do.
	Tokenizer router.Tokenizer
	// Model is the served model.
	Model string
	// Sim is the embedded fleet, or nil when fronting real servers.
	Sim *vllmsim.Fleet

	scraper *pool.Scraper
	sub     *kvevents.Subscriber // nil when no endpoint publishes events

	rr     atomic.Uint64 // round robin over /tokenize servers
	mu     sync.Mutex    // guards closed
	closed bool
}

// Start builds the fleet described by cfg: it starts the embedded servers if
// cfg has no endpoints, fills the pool, and scrapes every endpoint once so
// that the first requests see fresh metrics. Routing state is kept fresh by
// Run.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 16
	}
	if cfg.ScrapeInterval == 0 {
		cfg.ScrapeInterval = Duration(50 * time.Millisecond)
	}
	f := &Fleet{Pool: pool.New()}
	var eps []Endpoint
	if len(cfg.Endpoints) == 0 {
		n := cfg.Embedded
		switch {
		case n == 0:
			n = 4
		case n < 0:
			return nil, fmt.Errorf("fleet: embedded servers must be at least 1 (0 means 4), got %d", n)
		}
		simCfg := vllmsim.Fast()
		if cfg.Model != "" {
			simCfg.Model = cfg.Model
		}
		simCfg.BlockSize = cfg.BlockSize
		specs := make([]vllmsim.ReplicaSpec, n)
		for i := range specs {
			specs[i] = vllmsim.ReplicaSpec{Config: simCfg, KVEvents: true}
		}
		sim, err := vllmsim.StartFleet(ctx, specs...)
		if err != nil {
			return nil, fmt.Errorf("fleet: embedded servers: %w", err)
		}
		f.Sim = sim
		cfg.Model = simCfg.Model
		for i, r := range sim.Replicas {
			eps = append(eps, Endpoint{ID: fmt.Sprintf("sim-%d", i), URL: r.URL, KVEvents: r.KVEndpoint, KVReplay: r.KVReplayEndpoint})
		}
	} else {
		if cfg.Model == "" {
			return nil, errors.New("fleet: a model name is required with real endpoints")
		}
		eps = cfg.Endpoints
	}
	f.Model = cfg.Model
	if err := f.build(cfg, eps); err != nil {
		_ = f.Close()
		return nil, err
	}
	f.scraper.Scrape(ctx)
	return f, nil
}

func (f *Fleet) build(cfg Config, eps []Endpoint) error {
	h, err := prefix.NewHasher(cfg.Model, prefix.WithBlockSize(cfg.BlockSize))
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	f.Hasher = h
	sources := make(map[string]kvevents.Source)
	members := make([]pool.Endpoint, 0, len(eps))
	for i, e := range eps {
		u, err := url.Parse(e.URL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "") {
			return fmt.Errorf("fleet: endpoint %d: %q is not an http://host:port URL", i, e.URL)
		}
		host := u.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "80")
		}
		id := e.ID
		if id == "" {
			id = host
		}
		members = append(members, pool.Endpoint{ID: id, Address: host, Models: []string{cfg.Model}})
		if e.KVEvents != "" {
			sources[id] = kvevents.Source{ID: id, Endpoint: e.KVEvents, ReplayEndpoint: e.KVReplay}
		}
	}
	if err := f.Pool.Replace(members); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	var idxOpts []kvcache.Option
	if len(sources) == 0 {
		// No KV events: approximate mode, learned entries that never expire,
		// bounded per endpoint.
		idxOpts = append(idxOpts, kvcache.WithLearnedTTL(0))
	}
	idx, err := kvcache.New(h, idxOpts...)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	f.Index = idx
	f.Pool.OnRemove(func(ep *pool.Endpoint) { _ = idx.DropEndpoint(ep.ID) })
	if len(sources) > 0 {
		f.sub, err = kvevents.NewSubscriber(kvevents.NewKVCacheIndex(idx),
			kvevents.WithPool(f.Pool, func(ep *pool.Endpoint) (kvevents.Source, bool) {
				s, ok := sources[ep.ID]
				return s, ok
			}))
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	scrapeOpts := []pool.Option{pool.WithInterval(time.Duration(cfg.ScrapeInterval))}
	if cfg.StaleAfter > 0 {
		scrapeOpts = append(scrapeOpts, pool.WithStaleAfter(time.Duration(cfg.StaleAfter)))
	}
	f.scraper, err = pool.NewScraper(f.Pool, scrapeOpts...)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	switch {
	case cfg.Tokenizer != "":
		t, err := tokenizer.Load(cfg.Tokenizer)
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		f.Tokenizer = &router.Local{Encoder: router.HF(t), Chat: f.remote()}
	case f.Sim != nil:
		f.Tokenizer = &router.Local{Encoder: router.Bytes{}, Template: router.ChatML}
	default:
		f.Tokenizer = f.remote()
	}
	return nil
}

// remote tokenizes on the pool's endpoints that serve the model, round robin
// over the fresh ones (any one if none is fresh).
func (f *Fleet) remote() *router.Remote {
	return &router.Remote{Base: func(model string) (string, bool) {
		eps := f.Pool.Snapshot().Endpoints()
		n := len(eps)
		if n == 0 {
			return "", false
		}
		start := int(f.rr.Add(1) % uint64(n))
		var any *pool.Endpoint
		for k := range n {
			e := eps[(start+k)%n]
			if len(e.Models) > 0 && !e.ServesModel(model) {
				continue
			}
			if !e.Stale() {
				return "http://" + e.Address, true
			}
			if any == nil {
				any = e
			}
		}
		if any == nil {
			return "", false
		}
		return "http://" + any.Address, true
	}}
}

// Run keeps the routing state fresh until ctx is done: it scrapes /metrics,
// applies KV events and expires speculative index entries. It returns nil
// when ctx ends, or the first component's error.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	n := 0
	run := func(fn func(context.Context) error) {
		n++
		go func() { errs <- fn(ctx) }()
	}
	run(f.scraper.Run)
	run(f.Index.Run)
	if f.sub != nil {
		run(f.sub.Run)
	}
	var first error
	for range n {
		if err := <-errs; err != nil && !errors.Is(err, context.Canceled) && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// Subscriber returns the KV-event subscriber, or nil when no endpoint
// publishes events.
func (f *Fleet) Subscriber() *kvevents.Subscriber { return f.sub }

// Close stops the embedded servers, if any. It is idempotent.
func (f *Fleet) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.Sim != nil {
		return f.Sim.Close()
	}
	return nil
}

// Flags registers the fleet flags on fs and returns a function that builds
// the Config after fs is parsed: -config (a JSON file, see Config) or
// -endpoints/-kv-events/-model/-tokenizer/-block-size/-embedded.
func Flags(fs *flag.FlagSet) func() (Config, error) {
	file := fs.String("config", "", "JSON file describing the servers to front (see examples/README.md)")
	urls := fs.String("endpoints", "", "comma-separated base URLs of real vLLM servers (default: an embedded simulated fleet)")
	kv := fs.String("kv-events", "", "comma-separated KV-event addresses (tcp://host:5557), one per endpoint, '' for none")
	model := fs.String("model", "", "served model name (required with -endpoints)")
	tok := fs.String("tokenizer", "", "path to the model's tokenizer.json (default: the servers' /tokenize)")
	bs := fs.Int("block-size", 16, "KV block size of the servers, in tokens")
	n := fs.Int("embedded", 4, "number of simulated servers when no endpoints are given")
	return func() (Config, error) {
		if *file != "" {
			return Load(*file)
		}
		eps, err := ParseEndpoints(*urls, *kv)
		if err != nil {
			return Config{}, err
		}
		return Config{Model: *model, Tokenizer: *tok, BlockSize: *bs, Endpoints: eps, Embedded: *n}, nil
	}
}

// Router builds the routing pipeline over f with policy pol, plus metrics and
// a log of the last 256 decisions. For the embedded fleet, an unset
// PeakPrefillTokensPerSec is the simulators' prefill throughput and an unset
// MaxInFlight their batch limit.
func (f *Fleet) Router(pol router.Policy, extra ...router.Option) (*router.Router, *router.Metrics, *router.DecisionLog, error) {
	if f.Sim != nil && len(f.Sim.Replicas) > 0 {
		c := f.Sim.Replicas[0].Config()
		if pol.PeakPrefillTokensPerSec == 0 {
			pol.PeakPrefillTokensPerSec = c.PrefillTokensPerSec
		}
		if pol.MaxInFlight == 0 {
			pol.MaxInFlight = c.MaxNumSeqs
		}
	}
	s, fc, err := pol.Build(f.Pool, f.Index)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("fleet: %w", err)
	}
	m := router.NewMetrics(f.Pool, fc)
	log := router.NewDecisionLog(256)
	opts := []router.Option{router.WithPrefix(f.Hasher, f.Index), router.WithTokenizer(f.Tokenizer),
		router.WithMetrics(m), router.WithDecisionLog(log)}
	if fc != nil {
		opts = append(opts, router.WithFlowControl(fc))
	}
	rt, err := router.New(f.Pool, s, append(opts, extra...)...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("fleet: %w", err)
	}
	return rt, m, log, nil
}
