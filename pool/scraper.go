package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scraper keeps the [Metrics] and [Status] of every endpoint of a [Pool] fresh
// by fetching their /metrics pages. Each endpoint is scraped on its own
// goroutine with its own timeout, so a slow or dead endpoint never delays the
// others; an endpoint whose previous scrape has not finished is skipped until
// it has. A failed scrape keeps the endpoint's last good metrics and records
// the error in its Status; an endpoint with no good scrape for longer than the
// staleness age is marked Stale.
//
// A Scraper is safe for concurrent use. It starts no goroutine until [Scraper.Run]
// or [Scraper.Scrape] is called.
type Scraper struct {
	pool     *Pool
	cfg      config
	fallback *http.Client // for non-http URLs when cfg.client is nil
	header   http.Header  // shared, read-only
	query    string       // the name[] filter, "" when off

	running atomic.Bool

	mu      sync.Mutex // guards targets, version
	targets map[*live]*target
	version uint64
}

// target is the scraper's private state for one endpoint membership. Whoever
// sets busy (a scrape, or a cleanup) owns ep, url, h1 and buf until it clears
// it.
type target struct {
	busy    atomic.Bool
	removed atomic.Bool // the endpoint left the pool, or Run ended: close h1 when idle

	l    *live // fixed: targets are keyed by membership
	ep   *Endpoint
	base string // the endpoint's metrics URL, from the URL option
	url  string // base with the name filter, or base when full is set
	full bool   // the endpoint did not answer the filtered request: scrape whole pages
	// hold counts the rejected filtered scrapes still to go without trying the
	// whole page, after a whole-page try failed too (holdErr, its error): an
	// endpoint that fails either way gets one request per scrape, not two.
	hold    int
	holdErr error
	h1      atomic.Pointer[http1] // nil when scraping through net/http; read by abortAll
	buf     bytes.Buffer          // reused page buffer
	prev    *Metrics              // last good scrape, for reusing its LoRA name slices
	memo    lineMemo              // its label-heavy lines, for not parsing them again

	// kick wakes Run's worker, if started, for one scrape; closing it stops
	// the worker. Sent to and closed only under Scraper.mu.
	kick chan struct{}
}

// closeIfIdle closes the target's connection unless a scrape is using it (that
// scrape closes it when it ends, having seen removed).
func (tg *target) closeIfIdle() {
	tg.removed.Store(true)
	if tg.busy.CompareAndSwap(false, true) {
		if h := tg.h1.Load(); h != nil {
			h.close()
		}
		tg.busy.Store(false)
	}
}

// release ends a scrape.
func (tg *target) release() {
	tg.busy.Store(false)
	if tg.removed.Load() {
		tg.closeIfIdle()
	}
}

// Option configures a [Scraper].
// Options are immutable; one may be shared by several NewScraper calls,
// also concurrently.
type Option interface{ apply(*config) }

type config struct {
	interval   time.Duration
	timeout    time.Duration
	staleAfter time.Duration
	maxPage    int64
	clock      func() time.Time
	client     *http.Client // nil: http1 for http URLs, defaultClient for others
	url        func(*Endpoint) string
	noFilter   bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithInterval sets how often every endpoint is scraped. The default is 50 ms.
func WithInterval(d time.Duration) Option { return optionFunc(func(c *config) { c.interval = d }) }

// WithTimeout sets the time limit of one scrape, from connecting to reading the
// whole page, a whole-page retry after a rejected name filter included (see
// [WithNameFilter]). The default is 1 s.
func WithTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

// WithStaleAfter sets the age of the last good scrape after which an endpoint
// is marked Stale. The default is 2 s.
func WithStaleAfter(d time.Duration) Option {
	return optionFunc(func(c *config) { c.staleAfter = d })
}

// WithMaxPageSize bounds the bytes read from one /metrics page; a larger page
// fails the scrape with [ErrPageTooLarge]. The default is 4 MiB.
func WithMaxPageSize(n int64) Option { return optionFunc(func(c *config) { c.maxPage = n }) }

// WithClock sets the clock used for ScrapedAt, Status times and staleness.
// The default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }

// WithHTTPClient makes scrapes go through c (for custom TLS, dialing or
// proxies). Its Timeout, if any, applies on top of WithTimeout. By default
// http:// URLs are fetched by the scraper's own minimal HTTP/1.1 client (one
// keep-alive connection per endpoint; several times cheaper in CPU than
// net/http, see BENCHMARKS.md) and https:// URLs by a net/http client that
// ignores proxy environment variables. Both ask for uncompressed pages:
// decompressing costs more CPU than the bytes save on a cluster network.
func WithHTTPClient(c *http.Client) Option { return optionFunc(func(cfg *config) { cfg.client = c }) }

// WithNameFilter turns asking for only the series [ParseMetrics] reads on or
// off; it is on by default. With it on, the scraper adds prometheus_client's
// name[] query parameter, once per name of [SeriesNames], to every metrics
// URL. vLLM (one API server) then renders about 2 KB instead of a 20-100 KB
// page, which saves the engine's API process CPU on every scrape as well as
// the scraper's reading and parsing. A server that does not honour the
// parameter answers with the whole page, which works as before;
// prometheus_client in multiprocess mode (vLLM with several API servers,
// SGLang) answers with an empty page, and some servers reject unknown
// parameters: when a filtered scrape gives a page without the required
// series or a 4xx status, the scraper fetches the whole page at once and, if
// that works, keeps scraping that endpoint unfiltered until its URL changes.
// If the whole page fails too, it is tried again only every 20th scrape, so
// an endpoint that fails either way gets one request per scrape, not two.
func WithNameFilter(on bool) Option { return optionFunc(func(c *config) { c.noFilter = !on }) }

// WithURL sets how an endpoint's metrics URL is built. The default is
// "http://" + ep.ScrapeAddress() + "/metrics".
func WithURL(f func(ep *Endpoint) string) Option { return optionFunc(func(c *config) { c.url = f }) }

// ErrPageTooLarge is the Status.Err (wrapped) of a scrape whose page exceeded
// the maximum page size. Raise the limit with [WithMaxPageSize] if the server's
// page is legitimately that large.
var ErrPageTooLarge = errors.New("pool: metrics page too large")

// ErrAlreadyRunning is returned by [Scraper.Run] when the scraper is already
// running. It is a wiring bug: call Run once, from the goroutine that owns it.
var ErrAlreadyRunning = errors.New("pool: scraper already running")

// NewScraper returns a scraper of p's endpoints.
func NewScraper(p *Pool, opts ...Option) (*Scraper, error) {
	if p == nil {
		return nil, errors.New("pool: NewScraper: nil pool")
	}
	cfg := config{
		interval:   50 * time.Millisecond,
		timeout:    time.Second,
		staleAfter: 2 * time.Second,
		maxPage:    4 << 20,
		clock:      time.Now,
		url:        func(ep *Endpoint) string { return "http://" + ep.ScrapeAddress() + "/metrics" },
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	switch {
	case cfg.interval <= 0:
		return nil, fmt.Errorf("pool: NewScraper: interval %v is not positive", cfg.interval)
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("pool: NewScraper: timeout %v is not positive", cfg.timeout)
	case cfg.staleAfter <= 0:
		return nil, fmt.Errorf("pool: NewScraper: staleness age %v is not positive", cfg.staleAfter)
	case cfg.maxPage <= 0:
		return nil, fmt.Errorf("pool: NewScraper: max page size %d is not positive", cfg.maxPage)
	case cfg.clock == nil || cfg.url == nil:
		return nil, errors.New("pool: NewScraper: nil clock or URL function")
	}
	var fallback *http.Client
	if cfg.client == nil {
		fallback = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   cfg.timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
			ResponseHeaderTimeout: cfg.timeout,
		}}
	}
	h := http.Header{}
	h.Set("Accept", "text/plain;version=0.0.4")
	h.Set("Accept-Encoding", "identity")
	h.Set("User-Agent", "routekit-pool")
	var query string
	if !cfg.noFilter {
		q := make(url.Values)
		q["name[]"] = SeriesNames()
		query = q.Encode()
	}
	return &Scraper{pool: p, cfg: cfg, fallback: fallback, header: h, query: query, targets: map[*live]*target{}}, nil
}

// Run scrapes every endpoint of the pool at the configured interval until ctx
// is done, then waits for scrapes under way to stop and returns ctx's error.
// It returns [ErrAlreadyRunning] if the scraper is already running.
func (s *Scraper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer s.running.Store(false)
	var wg sync.WaitGroup
	t := time.NewTicker(s.cfg.interval)
	defer t.Stop()
	for {
		s.tick(ctx, &wg, true)
		select {
		case <-ctx.Done():
			s.abortAll()
			s.mu.Lock()
			for _, tg := range s.targets {
				if tg.kick != nil {
					close(tg.kick) // its worker drains it, then returns
					tg.kick = nil
				}
			}
			s.mu.Unlock()
			wg.Wait()
			s.closeIdle()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// abortAll makes every exchange under way fail at once (Run is ending).
func (s *Scraper) abortAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tg := range s.targets {
		if h := tg.h1.Load(); h != nil {
			h.abort()
		}
	}
}

// work is the goroutine that scrapes one endpoint for Run, each time tick
// kicks it, until kick is closed (Run is ending, or the endpoint left the
// pool). A long-lived worker per endpoint costs less than a goroutine per
// scrape (no stack growth each time), and waiting on one channel less than a
// select over several (see BENCHMARKS.md). A kick that arrives after Run's
// context is done or the endpoint was removed is not served; its busy flag
// is given back.
func (s *Scraper) work(ctx context.Context, tg *target, kick <-chan struct{}) {
	for range kick {
		if ctx.Err() == nil && !tg.removed.Load() {
			s.scrape(ctx, tg, false)
		}
		tg.release()
	}
}

// Scrape scrapes every endpoint of the current snapshot once, concurrently,
// and returns when all have finished. Endpoints whose scrape (by Run) is
// already under way are not scraped again. Outcomes are in each endpoint's
// Status. It is for tests, examples and programs that drive scrapes
// themselves.
func (s *Scraper) Scrape(ctx context.Context) {
	var wg sync.WaitGroup
	s.tick(ctx, &wg, false)
	wg.Wait()
}

// tick marks stale endpoints and starts a scrape of each endpoint that has
// none under way: through the endpoint's worker for Run, on a new goroutine
// for Scrape.
func (s *Scraper) tick(ctx context.Context, wg *sync.WaitGroup, run bool) {
	if ctx.Err() != nil {
		return
	}
	snap := s.pool.Snapshot()
	now := s.cfg.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.version != s.version || len(s.targets) != len(snap.eps) {
		s.reconcile(snap)
	}
	for _, ep := range snap.eps {
		l := ep.live
		if st := l.status.Load(); !st.Stale && now.Sub(st.LastSuccess) > s.cfg.staleAfter {
			l.markStale(st)
		}
		tg := s.targets[l]
		if !tg.busy.CompareAndSwap(false, true) {
			continue
		}
		if tg.ep != ep { // first scrape, or the endpoint's description changed
			s.setEndpoint(tg, ep)
		}
		if !run {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.scrape(ctx, tg, true)
				tg.release()
			}()
			continue
		}
		if tg.kick == nil {
			kick := make(chan struct{}, 1)
			tg.kick = kick
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.work(ctx, tg, kick)
			}()
		}
		tg.kick <- struct{}{} // cannot block: busy was free, so the buffer is empty
	}
}

// reconcile makes targets match snap; s.mu must be held.
func (s *Scraper) reconcile(snap *Snapshot) {
	seen := make(map[*live]bool, len(snap.eps))
	for _, ep := range snap.eps {
		seen[ep.live] = true
		if s.targets[ep.live] == nil {
			s.targets[ep.live] = &target{l: ep.live}
		}
	}
	for l, tg := range s.targets {
		if !seen[l] {
			delete(s.targets, l)
			if tg.kick != nil {
				close(tg.kick)
				tg.kick = nil
			}
			tg.closeIfIdle()
		}
	}
	s.version = snap.version
}

// CloseIdleConnections closes the kept-alive connections of endpoints that
// are not being scraped. Run does this when it returns; call it after using
// Scrape alone. Later scrapes open new connections.
func (s *Scraper) CloseIdleConnections() { s.closeIdle() }

func (s *Scraper) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tg := range s.targets {
		if tg.busy.CompareAndSwap(false, true) {
			if h := tg.h1.Load(); h != nil {
				h.close()
			}
			tg.busy.Store(false)
		}
	}
}

// setEndpoint points tg at ep's (possibly new) URL; tg must be busy.
func (s *Scraper) setEndpoint(tg *target, ep *Endpoint) {
	base := s.cfg.url(ep)
	if base == tg.base && tg.ep != nil {
		tg.ep = ep
		return
	}
	tg.ep, tg.base, tg.full, tg.hold = ep, base, false, 0
	s.setURL(tg, s.filtered(base))
}

// filtered returns u with the name filter added, or u if filtering is off.
func (s *Scraper) filtered(u string) string {
	switch {
	case s.query == "":
		return u
	case strings.Contains(u, "?"):
		return u + "&" + s.query
	default:
		return u + "?" + s.query
	}
}

// setURL points tg at u; tg must be busy. A connection to the same address
// is kept.
func (s *Scraper) setURL(tg *target, u string) {
	tg.url = u
	if s.cfg.client != nil {
		return
	}
	h := tg.h1.Load()
	if pu, err := url.Parse(u); err == nil && pu.Scheme == "http" && pu.Host != "" && pu.User == nil {
		addr := pu.Host
		if pu.Port() == "" {
			addr = net.JoinHostPort(pu.Hostname(), "80")
		}
		if h != nil && h.addr == addr {
			h.setRequest(pu.RequestURI(), pu.Host)
			return
		}
		if h != nil {
			h.close()
		}
		tg.h1.Store(newHTTP1(addr, pu.RequestURI(), pu.Host))
		return
	}
	if h != nil {
		h.close()
		tg.h1.Store(nil)
	}
}

// fallbackEvery is how often (in scrapes) an endpoint that rejects the name
// filter and also failed without it gets the whole page tried again: once a
// second at the default interval.
const fallbackEvery = 20

// scrape fetches and parses one page and records the outcome in l.
func (s *Scraper) scrape(ctx context.Context, tg *target, watch bool) {
	l := tg.l
	// One deadline for the scrape, the whole-page retry included: a scrape
	// never takes longer than the timeout. Deadlines on connections follow
	// the real clock, not the injected one.
	deadline := time.Now().Add(s.cfg.timeout)
	r, err := s.fetch(ctx, tg, watch, deadline)
	switch {
	case err == nil:
		tg.hold = 0
	case ctx.Err() != nil || s.query == "" || tg.full || !rejectedFilter(err):
	case tg.hold > 0:
		tg.hold--
		err = fmt.Errorf("%w (without the name filter, at most every %d scrapes: %w)", err, fallbackEvery, tg.holdErr)
	default:
		// See WithNameFilter: try the whole page, and stay with it if it
		// works.
		s.setURL(tg, tg.base)
		if r, err = s.fetch(ctx, tg, watch, deadline); err == nil {
			tg.full = true
		} else {
			s.setURL(tg, s.filtered(tg.base))
			tg.hold, tg.holdErr = fallbackEvery-1, err
		}
	}
	if ctx.Err() != nil {
		return // shutting down: not the endpoint's fault
	}
	if h := tg.h1.Load(); err != nil && h != nil && h.aborted.Load() {
		return // Run ended during this Scrape's exchange: not the endpoint's fault either
	}
	now := s.cfg.clock()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("pool: scrape %q: timed out after %v: %w (%w)", tg.ep.ID, s.cfg.timeout, context.DeadlineExceeded, err)
		} else {
			err = fmt.Errorf("pool: scrape %q: %w", tg.ep.ID, err)
		}
		st := l.status.Load()
		l.storeFailure(err, now, now.Sub(st.LastSuccess) > s.cfg.staleAfter)
		return
	}
	r.m.ScrapedAt = now
	l.storeScraped(r, now)
}

func (s *Scraper) fetch(ctx context.Context, tg *target, watch bool, deadline time.Time) (*scraped, error) {
	var page []byte
	if h := tg.h1.Load(); h != nil {
		code, reason, body, err := h.get(ctx, watch, deadline, s.cfg.maxPage, &tg.buf)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", tg.base, err)
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %w", tg.base, &statusError{code, strconv.Itoa(code) + " " + reason})
		}
		page = body
	} else {
		if err := s.fetchNetHTTP(ctx, tg, deadline); err != nil {
			return nil, err
		}
		page = tg.buf.Bytes()
	}
	m, err := parseMetrics(page, tg.prev, &tg.memo)
	if tg.buf.Cap() > 1<<20 { // do not hold on to a huge buffer per endpoint
		tg.buf = bytes.Buffer{}
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", tg.base, err)
	}
	r := &scraped{m: m}
	tg.prev = &r.m
	return r, nil
}

// fetchNetHTTP reads the page into tg.buf through net/http.
func (s *Scraper) fetchNetHTTP(ctx context.Context, tg *target, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tg.url, nil)
	if err != nil {
		return err
	}
	req.Header = s.header
	client := s.cfg.client
	if client == nil {
		client = s.fallback
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read a little so a short error page does not cost the connection.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return fmt.Errorf("GET %s: %w", tg.base, &statusError{resp.StatusCode, resp.Status})
	}
	if resp.ContentLength > s.cfg.maxPage {
		return fmt.Errorf("GET %s: %w: Content-Length %d > %d bytes", tg.base, ErrPageTooLarge, resp.ContentLength, s.cfg.maxPage)
	}
	tg.buf.Reset()
	if resp.ContentLength > 0 {
		tg.buf.Grow(int(resp.ContentLength))
	}
	n, err := tg.buf.ReadFrom(io.LimitReader(resp.Body, s.cfg.maxPage+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading page: %w", tg.base, err)
	}
	if n > s.cfg.maxPage {
		return fmt.Errorf("GET %s: %w: more than %d bytes", tg.base, ErrPageTooLarge, s.cfg.maxPage)
	}
	return nil
}

// statusError is an answer other than 200 OK.
type statusError struct {
	code   int
	status string // "404 Not Found"
}

func (e *statusError) Error() string { return "HTTP " + e.status }

// rejectedFilter reports whether err, from a filtered scrape, may be the
// server's way of not supporting the name filter: a page without the
// required series, or a client-error status other than a request timeout or
// rate limiting (asking again at once would only add load).
func rejectedFilter(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 400 && se.code < 500 && se.code != http.StatusRequestTimeout && se.code != http.StatusTooManyRequests
	}
	return errors.Is(err, ErrMissingMetrics)
}
