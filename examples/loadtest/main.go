// Command loadtest measures what routing costs: requests per second and
// latency of small completions sent (1) straight to the backends, (2) through
// a bare httputil.ReverseProxy that round-robins over them, and (3) through
// routekit's gateway with routing on (parse, tokenize, block keys, KV-index
// lookup, flow control, filters, scorers, picker, in-flight accounting,
// speculative index entries, usage reading), all in one process, on loopback,
// in the same run. The backends answer at once with a fixed JSON completion,
// so every microsecond measured is proxying and routing.
//
//	cd examples && go run ./loadtest -duration 5s -concurrency 32 -rate 2000
//
// Two phases per target: a closed loop (-concurrency workers, as fast as they
// can, for -duration or -requests) gives the throughput; an open loop at a
// fixed -rate gives the latency without saturating the machine. The added
// latency is the gateway's percentile minus the bare proxy's.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/routekit/routekit/examples/internal/proxy"
	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// options are the flags.
type options struct {
	backends    int
	concurrency int
	duration    time.Duration
	requests    int
	rate        int
	rounds      int
	latencyDur  time.Duration
	promptBytes int
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.backends, "backends", 4, "number of backend servers")
	fs.IntVar(&o.concurrency, "concurrency", 32, "closed-loop workers")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "closed-loop phase length per target")
	fs.IntVar(&o.requests, "requests", 200000, "closed-loop phase request cap per target")
	fs.IntVar(&o.rate, "rate", 0, "open-loop request rate (requests/s) for the latency phase (0: half the bare proxy's closed-loop throughput)")
	fs.IntVar(&o.rounds, "rounds", 3, "closed-loop rounds per target (the median is reported)")
	fs.DurationVar(&o.latencyDur, "latency-duration", 2*time.Second, "open-loop phase length per target")
	fs.IntVar(&o.promptBytes, "prompt-bytes", 256, "prompt size (the gateway tokenizes one token per byte)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	before := loadavg()
	res, err := measure(ctx, o)
	if err != nil {
		return err
	}
	o.rate = res[0].rate
	report(out, o, res)
	fmt.Fprintf(out, "load average before / after: %s / %s (other processes share these cores)\n", before, loadavg())
	return nil
}

// maxOpenLoop bounds the requests of one open-loop phase (-rate ×
// -latency-duration): their latencies are preallocated.
const maxOpenLoop = 10_000_000

// validate rejects flag values the measurement cannot run with.
func (o options) validate() error {
	switch {
	case o.backends < 1:
		return fmt.Errorf("loadtest: -backends must be at least 1, got %d", o.backends)
	case o.concurrency < 1:
		return fmt.Errorf("loadtest: -concurrency must be at least 1, got %d", o.concurrency)
	case o.requests < 1:
		return fmt.Errorf("loadtest: -requests must be at least 1, got %d", o.requests)
	case o.rounds < 1:
		return fmt.Errorf("loadtest: -rounds must be at least 1, got %d", o.rounds)
	case o.promptBytes < 0:
		return fmt.Errorf("loadtest: -prompt-bytes must be >= 0, got %d", o.promptBytes)
	case o.rate < 0:
		return fmt.Errorf("loadtest: -rate must be >= 0 (0: automatic), got %d", o.rate)
	case o.duration <= 0:
		return fmt.Errorf("loadtest: -duration must be > 0, got %v", o.duration)
	case o.latencyDur <= 0:
		return fmt.Errorf("loadtest: -latency-duration must be > 0, got %v", o.latencyDur)
	case float64(o.rate)*o.latencyDur.Seconds() > maxOpenLoop:
		return fmt.Errorf("loadtest: -rate × -latency-duration is over %d requests", maxOpenLoop)
	}
	return nil
}

// result is one target's numbers.
type result struct {
	name                     string
	rps                      float64
	closedP50, closedP99     time.Duration
	p50, p99, p999           time.Duration
	errors                   int64
	overheadP50, overheadP99 time.Duration // gateway only: routing overhead
	rate                     int           // open-loop rate used (set on res[0])
	cpuPerReq                time.Duration // process CPU time (user+system) per request, client and servers included
}

type listener struct {
	srv *http.Server
	url string
}

func serve(h http.Handler) (*listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &listener{srv: srv, url: "http://" + ln.Addr().String()}, nil
}

const metricsPage = `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.05
`

const completionJSON = `{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" ok","finish_reason":"length"}],"usage":{"prompt_tokens":256,"completion_tokens":1,"total_tokens":257}}`

// backend answers completions at once, and /metrics like vLLM.
func backend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = io.WriteString(w, metricsPage)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, completionJSON)
	})
}

func measure(ctx context.Context, o options) ([]result, error) {
	var backs []*listener
	defer func() {
		for _, b := range backs {
			_ = b.srv.Close()
		}
	}()
	p := pool.New()
	var targets []string
	for i := range o.backends {
		b, err := serve(backend())
		if err != nil {
			return nil, err
		}
		backs = append(backs, b)
		targets = append(targets, strings.TrimPrefix(b.url, "http://"))
		if err := p.Store(pool.Endpoint{ID: fmt.Sprint("be-", i), Address: targets[i], Models: []string{"m"}}); err != nil {
			return nil, err
		}
	}

	// The gateway: scraper, KV index (approximate mode: speculative entries
	// only, the backends publish no events), router, proxy handler.
	sc, err := pool.NewScraper(p, pool.WithInterval(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	sc.Scrape(ctx)
	for _, e := range p.Snapshot().Endpoints() {
		if e.Stale() {
			return nil, fmt.Errorf("loadtest: backend %s not scraped: %v", e.ID, e.Status().Err)
		}
	}
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = sc.Run(bg) }()
	h, err := prefix.NewHasher("m", prefix.WithBlockSize(16))
	if err != nil {
		return nil, err
	}
	idx, err := kvcache.New(h, kvcache.WithLearnedTTL(0))
	if err != nil {
		return nil, err
	}
	s, fc, err := router.Policy{}.Build(p, idx)
	if err != nil {
		return nil, err
	}
	m := router.NewMetrics(p, fc)
	rt, err := router.New(p, s, router.WithFlowControl(fc), router.WithPrefix(h, idx), router.WithMetrics(m),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}),
		router.WithDecisionLog(router.NewDecisionLog(64)))
	if err != nil {
		return nil, err
	}
	gw, err := serve(proxy.New(rt, proxy.WithMetrics(m)))
	if err != nil {
		return nil, err
	}
	defer gw.srv.Close()

	// The bare reverse proxy: round robin, nothing else.
	var rr atomic.Uint64
	bareTransport := http.DefaultTransport.(*http.Transport).Clone()
	bareTransport.MaxIdleConns, bareTransport.MaxIdleConnsPerHost = 1024, 256
	bare, err := serve(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = targets[rr.Add(1)%uint64(len(targets))]
			pr.SetXForwarded()
		},
		Transport: bareTransport,
	})
	if err != nil {
		return nil, err
	}
	defer bare.srv.Close()

	bodies := makeBodies(o.promptBytes, 64)
	targets3 := []struct {
		name string
		url  func(int) string
	}{
		{"direct to backends", func(i int) string { return backs[i%len(backs)].url }},
		{"bare httputil.ReverseProxy", func(int) string { return bare.url }},
		{"routekit gateway", func(int) string { return gw.url }},
	}
	res := make([]result, len(targets3))
	rps := make([][]float64, len(targets3))
	cpus := make([][]time.Duration, len(targets3))
	cl := newClient(o.concurrency)
	// Closed loops, in rotated order each round (the machine's noise hits
	// every target alike); the median round is reported.
	for round := range o.rounds {
		for k := range targets3 {
			i := (k + round) % len(targets3)
			cpu0 := cpuTime()
			lat, n, errs, el := closedLoop(ctx, cl, targets3[i].url, bodies, o)
			cpu := cpuTime() - cpu0
			rps[i] = append(rps[i], float64(n)/el.Seconds())
			if n > 0 {
				cpus[i] = append(cpus[i], cpu/time.Duration(n))
			}
			res[i].errors += errs
			if round == o.rounds/2 {
				res[i].closedP50, res[i].closedP99 = pct(lat, 0.50), pct(lat, 0.99)
			}
		}
	}
	for i := range res {
		res[i].name = targets3[i].name
		slices.Sort(rps[i])
		res[i].rps = rps[i][len(rps[i])/2]
		if len(cpus[i]) > 0 {
			slices.Sort(cpus[i])
			res[i].cpuPerReq = cpus[i][len(cpus[i])/2]
		}
	}
	// Open loop at a rate every target sustains: latency, not backlog.
	rate := o.rate
	if rate <= 0 {
		rate = max(int(res[1].rps/2), 50)
	}
	o.rate = rate
	for i, tg := range targets3 {
		lat, errs := openLoop(ctx, cl, tg.url, bodies, o)
		res[i].p50, res[i].p99, res[i].p999 = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 0.999)
		res[i].errors += errs
	}
	res[2].overheadP50, res[2].overheadP99 = m.DecisionQuantile(0.50), m.DecisionQuantile(0.99)
	res[0].rate = rate
	return res, nil
}

func makeBodies(promptBytes, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		// Distinct prompts: every request is a cache miss, the index walk and
		// the scoring run in full, and load spreads over the backends.
		p := fmt.Sprintf("%08d ", i*7919) + strings.Repeat("lorem ipsum dolor sit amet ", promptBytes/27+1)
		p = p[:promptBytes]
		out[i] = fmt.Appendf(nil, `{"model":"m","prompt":%q,"max_tokens":1}`, p)
	}
	return out
}

func newClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.DisableCompression = 4*conns+64, 2*conns+16, true
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

func do(ctx context.Context, c *http.Client, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return d, err
}

// closedLoop runs o.concurrency workers back to back.
func closedLoop(ctx context.Context, c *http.Client, url func(int) string, bodies [][]byte, o options) ([]time.Duration, int, int64, time.Duration) {
	var (
		next   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		all    []time.Duration
		wg     sync.WaitGroup
		start  = time.Now()
		cutoff = start.Add(o.duration)
	)
	for w := range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for {
				i := int(next.Add(1))
				if i > o.requests || time.Now().After(cutoff) || ctx.Err() != nil {
					break
				}
				d, err := do(ctx, c, url(i+w), bodies[i%len(bodies)])
				if err != nil {
					errs.Add(1)
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, len(all), errs.Load(), time.Since(start)
}

// openLoop sends requests at o.rate per second, whatever the latency.
func openLoop(ctx context.Context, c *http.Client, url func(int) string, bodies [][]byte, o options) ([]time.Duration, int64) {
	n := int(float64(o.rate) * o.latencyDur.Seconds())
	lat := make([]time.Duration, n)
	var (
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	interval := time.Second / time.Duration(max(o.rate, 1))
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := do(ctx, c, url(i), bodies[i%len(bodies)])
			if err != nil {
				errs.Add(1)
				d = -1
			}
			lat[i] = d
		}()
	}
	wg.Wait()
	ok := lat[:0]
	for _, d := range lat {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	return ok, errs.Load()
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func report(w io.Writer, o options, res []result) {
	fmt.Fprintf(w, "GOMAXPROCS=%d, %d backends, prompt %d bytes, closed loop %d workers × %v × %d rounds (median), open loop %d req/s for %v\n\n",
		runtime.GOMAXPROCS(0), o.backends, o.promptBytes, o.concurrency, o.duration, o.rounds, o.rate, o.latencyDur)
	fmt.Fprintf(w, "| target | req/s (closed loop) | CPU per request (whole process) | p50 / p99 closed | p50 / p99 / p99.9 at %d req/s | errors |\n|---|---|---|---|---|---|\n", o.rate)
	for _, r := range res {
		fmt.Fprintf(w, "| %s | %.0f | %v | %v / %v | %v / %v / %v | %d |\n", r.name, r.rps, rd(r.cpuPerReq), rd(r.closedP50), rd(r.closedP99), rd(r.p50), rd(r.p99), rd(r.p999), r.errors)
	}
	if len(res) == 3 {
		b, g := res[1], res[2]
		fmt.Fprintf(w, "\nadded by the gateway vs the bare proxy at %d req/s: p50 %+v, p99 %+v; throughput %.0f%% of the bare proxy\n",
			o.rate, rd(g.p50-b.p50), rd(g.p99-b.p99), 100*g.rps/b.rps)
		if g.cpuPerReq > 0 && b.cpuPerReq > 0 {
			fmt.Fprintf(w, "CPU added per request by the gateway vs the bare proxy: %v; the gateway's own share (its CPU minus the direct run's client and backend CPU) is %v, i.e. %.0f req/s per dedicated core\n",
				rd(g.cpuPerReq-b.cpuPerReq), rd(g.cpuPerReq-res[0].cpuPerReq), float64(time.Second)/float64(g.cpuPerReq-res[0].cpuPerReq))
		}
		fmt.Fprintf(w, "router overhead per request (parse, tokenize, hash, index, schedule, dispatch; histogram bucket bounds over all gateway requests): p50 ≤ %v, p99 ≤ %v\n",
			g.overheadP50, g.overheadP99)
	}
}

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadavg returns the 1-minute load average, or "?" where /proc has none.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func rd(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
