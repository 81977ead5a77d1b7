// Command routecompare compares routing policies on the virtual-time vLLM
// fleet simulator (internal/vllmsim/fleetsim): random, round robin, least
// loaded, approximate prefix (an index learned from routing decisions),
// precise prefix (an index fed by the simulated servers' KV events), routekit's
// default pipeline, and an oracle that knows every server's cache. Every policy
// is a routekit scheduler, driven the way a gateway drives it (see router.go).
//
// Workloads, all seeded and identical across policies:
//
//   - shared: llm-d's "b2b-saas" shared-prefix benchmark: 150 groups × 5
//     prompts, 6,000-token system prompt, 1,200-token question, 1,000 output
//     tokens, Poisson arrivals over a rate ladder, on 8 replicas of Qwen3-32B on
//     2×H100 (307,328 KV tokens each: the 1.8M-token working set is ~73% of the
//     fleet's KV capacity);
//   - chat: multi-turn conversations (each turn's prompt is the conversation so
//     far), closed loop with think time;
//   - lowshare: distinct 4,000-token prompts with little reuse, where prefix
//     awareness must not hurt.
//
// It prints, per workload, a summary table over the whole ladder (output
// tokens/s, TTFT p90 and mean, prefix-cache hit rate, mean waiting queue, and
// the ratios to the oracle) and TTFT p90 per rate, and writes one SVG plot of
// TTFT p90 against rate per workload.
//
//	go run ./routecompare                 # all workloads, full ladders (minutes)
//	go run ./routecompare -workloads shared -stage 30s -out /tmp
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/prefix"
	"github.com/routekit/routekit/scheduler"
	"math/rand/v2"
)

// policyNames lists the policies in table order.
var policyNames = []string{"random", "round-robin", "least-loaded", "approximate", "precise", "default", "oracle"}

// setup is one simulation's configuration.
type setup struct {
	workload string
	engine   vllmsim.Config
	replicas int
	rates    []float64
	stage    time.Duration
	seed     uint64
	scale    float64 // shrinks prompts (tests): 1 = full size
	groups   float64 // shrinks the number of groups; 0 means scale
	outScale float64 // shrinks output lengths; 0 means scale
	scrape   time.Duration
	kvDelay  time.Duration
}

// stages returns the Poisson ladder.
func (s setup) arrivals() fleetsim.Arrivals {
	a := fleetsim.Arrivals{Poisson: true}
	for _, r := range s.rates {
		a.Stages = append(a.Stages, fleetsim.Stage{Rate: r, Duration: s.stage})
	}
	return a
}

func scaled(n int, f float64) int { return max(1, int(math.Round(float64(n)*f))) }

// newWorkload returns the named workload.
func (s setup) newWorkload() (fleetsim.Workload, error) {
	g, o := s.groups, s.outScale
	if g == 0 {
		g = s.scale
	}
	if o == 0 {
		o = s.scale
	}
	switch s.workload {
	case "shared":
		return fleetsim.SharedPrefix{
			Groups: scaled(150, g), PromptsPerGroup: 5,
			SystemPromptLen: scaled(6000, s.scale), QuestionLen: scaled(1200, s.scale), OutputLen: scaled(1000, o),
			Arrivals: s.arrivals(), Seed: s.seed,
		}.Workload(), nil
	case "chat":
		return fleetsim.Chat{
			SystemPromptLen: scaled(2000, s.scale), SharedSystemPrompts: 8,
			QuestionLen: scaled(300, s.scale), OutputLen: scaled(400, o),
			Turns: 6, ThinkTime: 10 * time.Second,
			Arrivals: s.arrivals(), Seed: s.seed,
		}.Workload(), nil
	case "lowshare":
		return fleetsim.SharedPrefix{
			Groups: scaled(20000, g), PromptsPerGroup: 1,
			SystemPromptLen: scaled(3000, s.scale), QuestionLen: scaled(1000, s.scale), OutputLen: scaled(500, o),
			Arrivals: s.arrivals(), Seed: s.seed,
		}.Workload(), nil
	}
	return nil, fmt.Errorf("routecompare: unknown workload %q (want shared, chat or lowshare)", s.workload)
}

// outcome is one policy's run.
type outcome struct {
	policy     string
	report     *fleetsim.Report
	perStage   []fleetsim.Summary
	kvEvents   int
	kvErrors   int
	firstKVErr error
	wall       time.Duration
}

// validate rejects a setup the simulation cannot run or finish: a stage of
// zero length would make its rate last forever.
func (s setup) validate() error {
	switch {
	case s.stage <= 0:
		return fmt.Errorf("routecompare: stage must be > 0, got %v", s.stage)
	case len(s.rates) == 0:
		return errors.New("routecompare: no rate in the ladder")
	case s.replicas < 1:
		return fmt.Errorf("routecompare: replicas must be at least 1, got %d", s.replicas)
	}
	for _, r := range s.rates {
		if !(r > 0) || math.IsInf(r, 1) {
			return fmt.Errorf("routecompare: rate %v must be a positive number", r)
		}
	}
	return nil
}

// run simulates one policy on s.
func run(s setup, policy string) (*outcome, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	w, err := s.newWorkload()
	if err != nil {
		return nil, err
	}
	hasher, err := prefix.NewHasher(s.engine.Model, prefix.WithBlockSize(s.engine.BlockSize))
	if err != nil {
		return nil, err
	}
	now := new(time.Duration)
	clock := func() time.Time { return epoch.Add(*now) }
	src := rand.NewPCG(s.seed, s.seed^0x51ed27)
	blend := func(idx scheduler.PrefixIndex) (*scheduler.Scheduler, error) {
		p, err := scheduler.Prefix(scheduler.TierWeights{})
		if err != nil {
			return nil, err
		}
		// llm-d's scorer blend: queue 2, KV utilisation 2, prefix 3.
		return scheduler.New(scheduler.Profile{
			Scorers: []scheduler.WeightedScorer{
				scheduler.Weighted(2, scheduler.QueueDepth()),
				scheduler.Weighted(2, scheduler.KVCacheUtilization()),
				scheduler.Weighted(3, p),
			},
			Picker: scheduler.MaxScore(src),
		}, scheduler.WithPrefixIndex(idx))
	}
	var (
		sched *scheduler.Scheduler
		idx   *kvcache.Index
		learn learnMode
		rt    *router
	)
	cfg := fleetsim.Config{
		Engine: s.engine, Replicas: s.replicas, Seed: s.seed,
		ScrapeInterval: s.scrape, KVEventDelay: s.kvDelay,
	}
	switch policy {
	case "random":
		sched, err = scheduler.New(scheduler.Profile{Picker: scheduler.Random(src)})
	case "round-robin":
		sched, err = scheduler.New(scheduler.Profile{Picker: scheduler.RoundRobin()})
	case "least-loaded":
		sched, err = scheduler.New(scheduler.Profile{
			Scorers: []scheduler.WeightedScorer{scheduler.Weighted(1, scheduler.InFlight())},
			Picker:  scheduler.MaxScore(src),
		})
	case "approximate":
		idx, err = kvcache.New(nil, kvcache.WithLearnedTTL(0), kvcache.WithClock(clock))
		if err == nil {
			learn = learnApproximate
			sched, err = blend(scheduler.KVIndex(idx))
		}
	case "precise", "default":
		idx, err = kvcache.New(hasher, kvcache.WithClock(clock))
		if err != nil {
			break
		}
		learn = learnSpeculative
		if policy == "precise" {
			sched, err = blend(scheduler.KVIndex(idx))
		} else {
			sched, err = scheduler.New(scheduler.DefaultProfile(src), scheduler.WithPrefixIndex(scheduler.KVIndex(idx)))
		}
	case "oracle":
		// The default pipeline with perfect knowledge of every server's cache.
		var o *router
		sched, err = scheduler.New(scheduler.DefaultProfile(src), scheduler.WithPrefixIndex(scheduler.PrefixIndexFunc(
			func(req *scheduler.Request, cands []scheduler.Candidate) { o.oracle(req, cands) })))
		if err == nil {
			rt = newRouter(sched, hasher, nil, learnNone, now, s.engine)
			o = rt
		}
	default:
		return nil, fmt.Errorf("routecompare: unknown policy %q", policy)
	}
	if err != nil {
		return nil, fmt.Errorf("routecompare: %s: %w", policy, err)
	}
	if rt == nil {
		rt = newRouter(sched, hasher, idx, learn, now, s.engine)
	}
	if idx != nil && learn == learnSpeculative {
		cfg.OnKVEvent = rt.kvEvent
	}
	cfg.OnComplete = rt.complete
	sim, err := fleetsim.New(cfg, w, rt)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := sim.Run()
	if err != nil {
		return nil, fmt.Errorf("routecompare: %s: %w", policy, err)
	}
	o := &outcome{policy: policy, report: rep, kvEvents: rt.kvEvents, kvErrors: rt.kvErrors, firstKVErr: rt.firstKVErr, wall: time.Since(start)}
	for i := range s.rates {
		from := time.Duration(i) * s.stage
		o.perStage = append(o.perStage, fleetsim.Summarize(rep.Results, from, from+s.stage))
	}
	return o, nil
}

// runAll runs every policy on s, in parallel.
func runAll(s setup, policies []string, parallel int) ([]*outcome, error) {
	outs := make([]*outcome, len(policies))
	errs := make([]error, len(policies))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			outs[i], errs[i] = run(s, p)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// printTables writes the summary and per-rate tables of one workload.
func printTables(w io.Writer, s setup, outs []*outcome) {
	var oracle *outcome
	for _, o := range outs {
		if o.policy == "oracle" {
			oracle = o
		}
	}
	fmt.Fprintf(w, "\n### %s: %d replicas of %s, Poisson ladder %v req/s, %v per rate, seed %d\n\n",
		s.workload, s.replicas, s.engine.Model, s.rates, s.stage, s.seed)
	fmt.Fprintln(w, "| policy | output tok/s | TTFT p90 (s) | TTFT mean (s) | prefix hit | mean waiting | p90 / oracle | tok/s / oracle | finished | KV events rejected |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, o := range outs {
		r := o.report
		rp90, rtput := "", ""
		if oracle != nil && oracle.report.TTFT.P90 > 0 && oracle.report.OutputTokensPerSec > 0 {
			rp90 = fmt.Sprintf("%.2f", r.TTFT.P90.Seconds()/oracle.report.TTFT.P90.Seconds())
			rtput = fmt.Sprintf("%.3f", r.OutputTokensPerSec/oracle.report.OutputTokensPerSec)
		}
		kv := "–"
		if o.kvEvents > 0 {
			kv = fmt.Sprintf("%d/%d", o.kvErrors, o.kvEvents)
		}
		fmt.Fprintf(w, "| %s | %.1f | %s | %s | %.1f%% | %.1f | %s | %s | %d/%d | %s |\n", o.policy, r.OutputTokensPerSec,
			secs(r.TTFT.P90), secs(r.TTFT.Mean), 100*r.PrefixHitRate, r.MeanWaiting, rp90, rtput, r.Finished, r.Requests, kv)
	}
	fmt.Fprintf(w, "\nTTFT p90 (s) by arrival rate (req/s; conversations/s for chat):\n\n| policy |")
	for _, r := range s.rates {
		fmt.Fprintf(w, " %g |", r)
	}
	fmt.Fprint(w, "\n|---|")
	for range s.rates {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, o := range outs {
		fmt.Fprintf(w, "| %s |", o.policy)
		for _, st := range o.perStage {
			fmt.Fprintf(w, " %s |", secs(st.TTFT.P90))
		}
		fmt.Fprintln(w)
	}
}

func main() {
	var (
		workloads = flag.String("workloads", "shared,chat,lowshare", "comma-separated workloads: shared, chat, lowshare")
		policies  = flag.String("policies", strings.Join(policyNames, ","), "comma-separated policies")
		stage     = flag.Duration("stage", 60*time.Second, "duration of each rate of the ladder")
		rates     = flag.String("rates", "", "override the rate ladder of every workload (comma-separated req/s)")
		seed      = flag.Uint64("seed", 1, "seed of workloads and random choices")
		out       = flag.String("out", ".", "directory for the SVG plots")
		parallel  = flag.Int("parallel", runtime.GOMAXPROCS(0), "simulations run at once")
		replicas  = flag.Int("replicas", 0, "override the number of replicas (default 8)")
	)
	flag.Parse()
	var override []float64
	if *rates != "" {
		for _, f := range strings.Split(*rates, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v <= 0 {
				log.Fatalf("routecompare: bad rate %q", f)
			}
			override = append(override, v)
		}
	}
	pols := strings.Split(*policies, ",")
	for _, p := range pols {
		if !slices.Contains(policyNames, p) {
			log.Fatalf("routecompare: unknown policy %q (want %s)", p, strings.Join(policyNames, ", "))
		}
	}
	for _, wl := range strings.Split(*workloads, ",") {
		s := defaultSetup(wl, *seed, *stage)
		if override != nil {
			s.rates = override
		}
		if *replicas > 0 {
			s.replicas = *replicas
		}
		outs, err := runAll(s, pols, *parallel)
		if err != nil {
			log.Fatal(err)
		}
		printTables(os.Stdout, s, outs)
		path := filepath.Join(*out, "routecompare-"+wl+".svg")
		f, err := os.Create(path)
		if err != nil {
			log.Fatal(err)
		}
		xlabel := "arrival rate (requests/s)"
		if wl == "chat" {
			xlabel = "conversation starts/s"
		}
		if err := plot(f, fmt.Sprintf("%s: TTFT p90 vs arrival rate, %d replicas", wl, s.replicas), xlabel, s.rates, outs); err != nil {
			log.Fatal(err)
		}
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\nplot: %s\n", path)
	}
}

// defaultSetup returns the full-size configuration of a workload.
func defaultSetup(workload string, seed uint64, stage time.Duration) setup {
	s := setup{
		workload: workload, engine: vllmsim.Qwen3_32B_H100x2(), replicas: 8, stage: stage, seed: seed, scale: 1,
		scrape: 50 * time.Millisecond, kvDelay: 5 * time.Millisecond,
	}
	switch workload {
	case "shared":
		// llm-d's ladder runs 3→60 req/s on real H100s, whose client caps
		// concurrency; the simulated fleet is past saturation for every policy
		// beyond ~25 req/s (≈12k output tokens/s, close to the 14.9k published
		// peak), so the ladder stops at 20, just below the best policies'
		// knee, as llm-d's published run stays below its best policy's knee.
		s.rates = []float64{3, 5, 10, 15, 20}
	case "chat":
		s.rates = []float64{1, 2, 4, 6, 8, 10}
	case "lowshare":
		s.rates = []float64{2, 5, 10, 15, 20, 25}
	}
	return s
}
