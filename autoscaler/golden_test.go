package autoscaler_test

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/autoscaler"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts under testdata/")

// fluidFleet is a deterministic fluid model of one pool for transcripts:
// every ready replica serves up to mu req/s; excess demand accumulates as a
// backlog spread over the replicas' waiting queues; KV usage grows with
// utilisation. Replicas become ready startup after creation, except those
// whose creation index is in never.
type fluidFleet struct {
	mu      float64
	startup time.Duration
	never   map[int]bool
	created int
	reps    []fleetReplica
	desired int
	backlog float64
}

type fleetReplica struct {
	created time.Time
	readyAt time.Time // zero: never
}

func (f *fluidFleet) scale(now time.Time, n int) {
	for len(f.reps) < n {
		r := fleetReplica{created: now, readyAt: now.Add(f.startup)}
		if f.never[f.created] {
			r.readyAt = time.Time{}
		}
		f.created++
		f.reps = append(f.reps, r)
	}
	// Remove not-ready replicas first (newest first), then ready ones.
	for len(f.reps) > n {
		victim := len(f.reps) - 1
		for i := len(f.reps) - 1; i >= 0; i-- {
			if !f.ready(f.reps[i], now) {
				victim = i
				break
			}
		}
		f.reps = append(f.reps[:victim], f.reps[victim+1:]...)
	}
	f.desired = n
}

func (f *fluidFleet) ready(r fleetReplica, now time.Time) bool {
	return !r.readyAt.IsZero() && !now.Before(r.readyAt)
}

func (f *fluidFleet) observe(now time.Time, rate float64, dt time.Duration) autoscaler.Observation {
	nReady := 0
	for _, r := range f.reps {
		if f.ready(r, now) {
			nReady++
		}
	}
	capacity := float64(nReady) * f.mu
	f.backlog = math.Max(0, f.backlog+(rate-capacity)*dt.Seconds())
	gw := 0
	if nReady == 0 {
		gw = int(math.Ceil(f.backlog))
	}
	obs := autoscaler.Observation{ArrivalRate: rate, GatewayQueue: gw}
	po := autoscaler.PoolObservation{Name: "vllm", Desired: f.desired}
	for i, r := range f.reps {
		rep := autoscaler.Replica{Name: fmt.Sprintf("vllm-%d", i)}
		if f.ready(r, now) {
			u := math.Min(rate/capacity, 1)
			waiting := f.backlog / float64(nReady)
			rep.Ready, rep.Since = true, r.readyAt
			rep.Metrics = autoscaler.Metrics{SampledAt: now, KVUsage: 0.85 * u, Running: 16 * u, Waiting: math.Round(waiting*10) / 10,
				RequestRate: math.Min(rate, capacity) / float64(nReady)}
			if u == 0 {
				rep.Metrics.Running = 0
			}
		} else {
			rep.Since = r.created
		}
		po.Replicas = append(po.Replicas, rep)
	}
	obs.Pools = []autoscaler.PoolObservation{po}
	return obs
}

type scenario struct {
	name     string
	cfg      *autoscaler.Config
	fleet    *fluidFleet
	initial  int
	duration time.Duration
	step     time.Duration
	rate     func(t time.Duration) float64
}

func pool(minR, maxR int) []autoscaler.Pool {
	return []autoscaler.Pool{{Name: "vllm", Min: minR, Max: maxR, Cost: 1,
		Profile: autoscaler.Profile{MaxRate: 4, BaseTTFT: 200 * time.Millisecond}}}
}

func scenarios() []scenario {
	queueing := autoscaler.QueueingModel{TTFT: time.Second}
	fast := &autoscaler.ScalingRules{StabilizationWindow: 60 * time.Second}
	return []scenario{
		{
			name: "ramp_saturation", cfg: &autoscaler.Config{Pools: pool(1, 12), Analyzer: autoscaler.Saturation{}},
			fleet: &fluidFleet{mu: 4, startup: 30 * time.Second}, initial: 1, duration: 20 * time.Minute, step: 15 * time.Second,
			rate: func(t time.Duration) float64 { return 1 + 19*math.Min(t.Minutes()/10, 1) }, // 1 → 20 req/s over 10 min
		},
		{
			name: "spike_queueing", cfg: &autoscaler.Config{Pools: pool(1, 12), Analyzer: queueing, ScaleDown: fast},
			fleet: &fluidFleet{mu: 4, startup: 60 * time.Second}, initial: 3, duration: 15 * time.Minute, step: 15 * time.Second,
			rate: func(t time.Duration) float64 {
				if t >= 3*time.Minute && t < 8*time.Minute {
					return 16
				}
				return 8
			},
		},
		{
			name: "diurnal_queueing_scale_to_zero", cfg: &autoscaler.Config{Pools: pool(0, 12), Analyzer: autoscaler.QueueingModel{TTFT: time.Second, Lookahead: time.Minute}, ScaleToZero: true, ScaleDown: fast},
			fleet: &fluidFleet{mu: 4, startup: 60 * time.Second}, initial: 2, duration: 60 * time.Minute, step: 30 * time.Second,
			rate: func(t time.Duration) float64 {
				// One compressed day: night (zero) → morning peak → evening → night.
				x := math.Sin(2 * math.Pi * (t.Minutes() - 10) / 45)
				return math.Max(0, math.Round(14*x*10)/10)
			},
		},
		{
			name: "never_ready_saturation", cfg: &autoscaler.Config{Pools: pool(1, 8), Analyzer: autoscaler.Saturation{}, Guards: autoscaler.Guards{PendingTimeout: 5 * time.Minute}},
			fleet: &fluidFleet{mu: 4, startup: 45 * time.Second, never: map[int]bool{2: true}}, initial: 2, duration: 12 * time.Minute, step: 15 * time.Second,
			rate: func(time.Duration) float64 { return 9 },
		},
		{
			name: "slow_start_120s_queueing_lookahead", cfg: &autoscaler.Config{Pools: pool(1, 16), Analyzer: autoscaler.QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute}, ScaleDown: fast},
			fleet: &fluidFleet{mu: 4, startup: 120 * time.Second}, initial: 2, duration: 16 * time.Minute, step: 15 * time.Second,
			rate: func(t time.Duration) float64 { // ramp 5 → 20 req/s over 4 min, hold, drop
				switch {
				case t < 2*time.Minute:
					return 5
				case t < 6*time.Minute:
					return 5 + 15*(t-2*time.Minute).Minutes()/4
				case t < 11*time.Minute:
					return 20
				}
				return 5
			},
		},
	}
}

// transcript runs a scenario and returns one line per decision.
func transcript(sc scenario) string {
	var b strings.Builder
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var st autoscaler.State
	sc.fleet.scale(start.Add(-time.Hour), sc.initial) // initial replicas long ready
	for t := time.Duration(0); t <= sc.duration; t += sc.step {
		now := start.Add(t)
		rate := sc.rate(t)
		obs := sc.fleet.observe(now, rate, sc.step)
		dec, next := autoscaler.Decide(sc.cfg, st, obs, now)
		st = next
		p := dec.Pools[0]
		ready, pending := 0, 0
		for _, r := range obs.Pools[0].Replicas {
			if r.Ready {
				ready++
			} else {
				pending++
			}
		}
		mark := "  "
		switch {
		case p.Desired > p.Current:
			mark = "▲ "
		case p.Desired < p.Current:
			mark = "▼ "
		}
		fmt.Fprintf(&b, "t=%5.0fs rate=%5.1f ready=%2d notready=%d queue=%2d  %s%2d -> %2d | %s\n",
			t.Seconds(), rate, ready, pending, obs.GatewayQueue, mark, p.Current, p.Desired, strings.Join(p.Reasons, "; "))
		if dec.Err != nil {
			fmt.Fprintf(&b, "  error: %v\n", dec.Err)
		}
		sc.fleet.scale(now, p.Desired)
	}
	return b.String()
}

func TestGoldenTranscripts(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got := transcript(sc)
			path := filepath.Join("testdata", sc.name+".txt")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -run TestGoldenTranscripts -update")
			wantLines, gotLines := strings.Split(string(want), "\n"), strings.Split(got, "\n")
			for i := range min(len(wantLines), len(gotLines)) {
				if wantLines[i] != gotLines[i] {
					t.Fatalf("%s:%d differs (rerun with -update if intended)\nwant: %s\n got: %s", path, i+1, wantLines[i], gotLines[i])
				}
			}
			assert.Len(t, gotLines, len(wantLines), "line count")
		})
	}
}
