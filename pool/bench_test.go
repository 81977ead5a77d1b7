package pool_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/pool/pooltest"
)

// serverEnv makes the test binary serve n fake vLLM endpoints instead of
// running tests: the scrape benchmarks put the servers in a child process so
// that getrusage of the benchmark process counts the scraper's CPU only.
const (
	serverEnv  = "ROUTEKIT_POOL_BENCH_SERVERS"
	enginesEnv = "ROUTEKIT_POOL_BENCH_ENGINES" // engines per page, default 2
)

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(serverEnv)); err == nil {
		engines, err := strconv.Atoi(os.Getenv(enginesEnv))
		if err != nil {
			engines = 2
		}
		serveFleet(n, engines)
		return
	}
	os.Exit(m.Run())
}

// serveFleet listens on n loopback ports, prints their addresses and serves
// a two-engine vLLM page until stdin closes. Like uvicorn, it writes each
// response with one write call; it gzips the body when asked, as
// prometheus_client does.
func serveFleet(n, engines int) {
	page := bigPage(nil, engines)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(page)
	_ = zw.Close()
	const hdr = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"
	plain := append([]byte(fmt.Sprintf(hdr+"content-length: %d\r\n\r\n", len(page))), page...)
	zipped := append([]byte(fmt.Sprintf(hdr+"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n", gz.Len())), gz.Bytes()...)
	// Like prometheus_client, answer a name[] query with the restricted page.
	var mu sync.Mutex
	restricted := map[string][]byte{} // raw query -> response
	respond := func(query string) []byte {
		mu.Lock()
		defer mu.Unlock()
		if r, ok := restricted[query]; ok {
			return r
		}
		q, _ := url.ParseQuery(query)
		body := pooltest.Restrict(string(page), q["name[]"])
		r := append([]byte(fmt.Sprintf(hdr+"content-length: %d\r\n\r\n", len(body))), body...)
		restricted[query] = r
		return r
	}
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			gzipOK, query := false, ""
			for first := true; ; first = false {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if first { // GET /metrics?query HTTP/1.1
					if f := bytes.Fields(line); len(f) == 3 {
						if _, q, ok := strings.Cut(string(f[1]), "?"); ok {
							query = q
						}
					}
				}
				if len(bytes.TrimSpace(line)) == 0 {
					break
				}
				if bytes.HasPrefix(bytes.ToLower(line), []byte("accept-encoding:")) && bytes.Contains(line, []byte("gzip")) {
					gzipOK = true
				}
			}
			resp := plain
			switch {
			case query != "":
				resp = respond(query)
			case gzipOK:
				resp = zipped
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
		fmt.Println(ln.Addr().String())
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startFleet starts the child process and returns its n addresses.
func startFleet(b *testing.B, n, engines int) []string {
	exe, err := os.Executable()
	require.NoError(b, err)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serverEnv+"="+strconv.Itoa(n), enginesEnv+"="+strconv.Itoa(engines))
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	cmd.Stderr = os.Stderr
	require.NoError(b, cmd.Start())
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var addrs []string
	for len(addrs) < n && sc.Scan() {
		addrs = append(addrs, sc.Text())
	}
	require.Len(b, addrs, n)
	return addrs
}

func cpuTime() time.Duration {
	u, s := cpuTimes()
	return u + s
}

func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkParseMetrics parses real-format vLLM pages: the golden sample (one
// engine, 145 series in 31 families, 5 of them histograms) and copies of it
// for 2, 4 and 8 data-parallel engines, with ParseMetrics and with the
// expfmt-based baseline.
func BenchmarkParseMetrics(b *testing.B) {
	var pages [][]byte
	for _, engines := range []int{1, 2, 4, 8} {
		pages = append(pages, bigPage(b, engines))
	}
	for _, engines := range []int{1, 2} { // the answers to the name filter
		pages = append(pages, []byte(pooltest.Restrict(string(bigPage(b, engines)), pool.SeriesNames())))
	}
	for _, page := range pages {
		series := 0 // sample lines
		for line := range bytes.Lines(page) {
			if len(bytes.TrimSpace(line)) > 0 && line[0] != '#' {
				series++
			}
		}
		for _, impl := range []struct {
			name  string
			parse func([]byte) (pool.Metrics, error)
		}{{"routekit", pool.ParseMetrics}, {"expfmt", parseExpfmt}} {
			b.Run(fmt.Sprintf("series=%d/bytes=%d/%s", series, len(page), impl.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(page)))
				for b.Loop() {
					if _, err := impl.parse(page); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkScrapeRound measures one scrape round of n endpoints served by a
// child process over loopback TCP, each page a 2-engine vLLM page (288 series,
// 31 KB; 3.2 KB when name-filtered, as routekit asks by default). Besides wall time per round it reports the scraper process's CPU
// time per round (getrusage) and what that costs as a share of one core at a
// 50 ms interval. "naive" is the straightforward loop: a goroutine per
// endpoint, the default HTTP client (which asks for gzip), and expfmt.
func BenchmarkScrapeRound(b *testing.B) {
	for _, n := range []int{10, 100} {
		addrs := startFleet(b, n, 2)
		for _, filter := range []bool{true, false} {
			name := "routekit"
			if !filter {
				name = "routekit-full-pages"
			}
			b.Run(fmt.Sprintf("endpoints=%d/%s", n, name), func(b *testing.B) {
				p := pool.New()
				for i, a := range addrs {
					require.NoError(b, p.Store(pool.Endpoint{ID: fmt.Sprint("ep-", i), Address: a}))
				}
				s, err := pool.NewScraper(p, pool.WithNameFilter(filter))
				require.NoError(b, err)
				ctx := context.Background()
				s.Scrape(ctx) // warm connections
				for _, e := range p.Snapshot().Endpoints() {
					require.NoError(b, e.Status().Err)
				}
				reportCPU(b, func() { s.Scrape(ctx) })
			})
		}
		b.Run(fmt.Sprintf("endpoints=%d/naive", n), func(b *testing.B) {
			client := &http.Client{Timeout: 30 * time.Second}
			round := func() {
				var wg sync.WaitGroup
				for _, a := range addrs {
					wg.Go(func() {
						resp, err := client.Get("http://" + a + "/metrics")
						if err != nil {
							b.Error(err)
							return
						}
						body, err := io.ReadAll(resp.Body)
						_ = resp.Body.Close()
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := parseExpfmt(body); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			round()
			reportCPU(b, round)
		})
	}
}

func reportCPU(b *testing.B, round func()) {
	b.ReportAllocs()
	u0, s0 := cpuTimes()
	rounds := 0
	for b.Loop() {
		round()
		rounds++
	}
	u1, s1 := cpuTimes()
	perRound := float64((u1-u0)+(s1-s0)) / float64(rounds)
	b.ReportMetric(perRound, "cpu-ns/round")
	b.ReportMetric(float64(s1-s0)/float64(rounds), "sys-ns/round")
	b.ReportMetric(100*perRound/float64(50*time.Millisecond), "%core@50ms")
}

// BenchmarkRun runs the scraper as deployed, Run at a 50 ms interval against
// 100 endpoints serving 1-engine (145 series, 18 KB) or 2-engine (288 series,
// 31 KB) pages, and reports the CPU it used as a share of one core over
// windows of 40 ticks (after a warm-up, so connections are set up before).
// "filtered" asks for the routing series only (WithNameFilter, the default),
// which the fake fleet answers as prometheus_client does (2.2 or 3.2 KB);
// "full" fetches whole pages, as from a server that ignores the filter.
func BenchmarkRun(b *testing.B) {
	for _, engines := range []int{1, 2} {
		for _, filter := range []bool{true, false} {
			page := "filtered"
			if !filter {
				page = "full"
			}
			b.Run(fmt.Sprintf("endpoints=100/engines=%d/%s", engines, page), func(b *testing.B) { benchRun(b, engines, filter) })
		}
	}
	b.Run("endpoints=100/engines=1/floor", benchRunFloor)
	b.Run("endpoints=100/engines=1/floor-epoll", benchRunFloorEpoll)
}

const benchEndpoints, benchTicks = 100, 40

func benchRun(b *testing.B, engines int, filter bool) {
	addrs := startFleet(b, benchEndpoints, engines)
	p := pool.New()
	for i, a := range addrs {
		require.NoError(b, p.Store(pool.Endpoint{ID: fmt.Sprint("ep-", i), Address: a}))
	}
	s, err := pool.NewScraper(p, pool.WithInterval(50*time.Millisecond), pool.WithNameFilter(filter))
	require.NoError(b, err)
	// Run once, as deployed, and measure steady-state windows of 40 ticks:
	// connections are dialled during the warm-up, not per window.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	measureWindows(b)
	cancel()
	<-done
	for _, e := range p.Snapshot().Endpoints() {
		require.NoError(b, e.Status().Err)
	}
}

// measureWindows lets background work warm up, then reports the process's
// CPU time over windows of benchTicks intervals as a share of one core.
func measureWindows(b *testing.B) {
	time.Sleep(20 * 50 * time.Millisecond)
	b.ReportAllocs()
	var cpu, sys, wall time.Duration
	for b.Loop() {
		u0, s0 := cpuTimes()
		w0 := time.Now()
		time.Sleep(benchTicks * 50 * time.Millisecond)
		u1, s1 := cpuTimes()
		wall += time.Since(w0)
		cpu += (u1 - u0) + (s1 - s0)
		sys += s1 - s0
	}
	b.StopTimer()
	b.ReportMetric(100*float64(cpu)/float64(wall), "%core")
	b.ReportMetric(100*float64(sys)/float64(wall), "%core-kernel")
}

// floorRequest is the filtered request the floors send.
func floorRequest() []byte {
	q := make(url.Values)
	q["name[]"] = pool.SeriesNames()
	return []byte("GET /metrics?" + q.Encode() + " HTTP/1.1\r\nHost: x\r\n\r\n")
}

// benchRunFloor is the lower bound BenchmarkRun is judged against: the same
// fleet, interval and filtered request, but only the two system calls an
// exchange cannot do without (write the request, read the answer, which is
// one segment) on a goroutine per endpoint kicked by a ticker: no HTTP
// parsing, no deadline, no metrics parsing, no publishing.
func benchRunFloor(b *testing.B) {
	addrs := startFleet(b, benchEndpoints, 1)
	req := floorRequest()
	kicks := make([]chan struct{}, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		c, err := net.Dial("tcp", a)
		require.NoError(b, err)
		kick := make(chan struct{}, 1)
		kicks[i] = kick
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 64<<10)
			for range kick {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := c.Read(buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				for _, k := range kicks {
					close(k)
				}
				return
			case <-t.C:
				for _, k := range kicks {
					select {
					case k <- struct{}{}:
					default: // still busy with the last one
					}
				}
			}
		}
	}()
	measureWindows(b)
	close(stop)
	wg.Wait()
}
