package autoscalersim

import (
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/autoscaler"
)

var (
	report     = flag.Bool("report", false, "run the full simulation matrix and print the BENCHMARKS.md table")
	controller = flag.String("controller", "", "with -report: only controllers whose name contains this")
)

// queueProfile profiles the default engine like an offline benchmark.
func queueProfile(t testing.TB) autoscaler.Profile {
	p, err := ProfileFleet(&QueueFleet{}, 60, 3*time.Minute)
	require.NoError(t, err)
	return p
}

type controllerSpec struct {
	name string
	make func(p autoscaler.Profile, startup time.Duration) Controller
}

// reportControllers is controllers() filtered by -controller.
func reportControllers() []controllerSpec {
	var out []controllerSpec
	for _, c := range controllers() {
		if strings.Contains(c.name, *controller) {
			out = append(out, c)
		}
	}
	return out
}

func controllers() []controllerSpec {
	return []controllerSpec{
		{"HPA baseline (waiting=5)", func(p autoscaler.Profile, _ time.Duration) Controller { return HPABaseline(p) }},
		{"HPA baseline (running=70% of batch)", func(p autoscaler.Profile, _ time.Duration) Controller {
			return HPARunningBaseline(p, 0.7*float64(p.Concurrency))
		}},
		{"routekit saturation", func(p autoscaler.Profile, _ time.Duration) Controller { return SaturationController(p) }},
		{"routekit queueing", func(p autoscaler.Profile, s time.Duration) Controller { return QueueingController(p, s) }},
	}
}

func runOne(t testing.TB, f Fleet, p autoscaler.Profile, sc Scenario, c controllerSpec) Result {
	sc.InitialReplicas = InitialReplicas(p, sc.RateAt(0))
	out, err := f.Run(sc, c.make(p, sc.Startup))
	require.NoError(t, err)
	return Evaluate(sc, c.name, out, Objective)
}

func TestProfileQueueFleet(t *testing.T) {
	p := queueProfile(t)
	assert.InDelta(t, 7.9, p.MaxRate, 0.4)
	assert.InDelta(t, 44, p.Concurrency, 4)
	assert.InDelta(t, 45*time.Millisecond, p.BaseTTFT, float64(15*time.Millisecond))
}

// TestSpikeGoals runs the 2× spikes with 120 s start-ups against the goals:
// TTFT p90 held through the ramped spike, reaction to the instant spike
// under 60 s up and 120 s down, and better attainment than the HPA.
func TestSpikeGoals(t *testing.T) {
	if raceEnabled {
		t.Skip("single-goroutine simulation: 75 s under -race, 4 s without")
	}
	p := queueProfile(t)
	cs := controllers()
	rk := cs[len(cs)-1]
	ramp := SpikeRampScenario(120 * time.Second)
	hpa := runOne(t, &QueueFleet{}, p, ramp, cs[0])
	rkRamp := runOne(t, &QueueFleet{}, p, ramp, rk)
	rkStep := runOne(t, &QueueFleet{}, p, SpikeStepScenario(120*time.Second), rk)
	t.Logf("\n%s", Table([]Result{hpa, rkRamp, rkStep}))
	assert.LessOrEqual(t, rkRamp.SpikeP90, Objective, "TTFT p90 through the spike")
	assert.Greater(t, rkRamp.Attainment, hpa.Attainment)
	assert.Less(t, rkRamp.ReplicaSeconds, hpa.ReplicaSeconds)
	assert.Less(t, rkStep.UpReaction, 60*time.Second)
	assert.GreaterOrEqual(t, rkStep.UpReaction, time.Duration(0))
	assert.Less(t, rkStep.DownReaction, 120*time.Second)
	assert.GreaterOrEqual(t, rkStep.DownReaction, time.Duration(0))
}

// TestSteadyNoOscillation holds 30 req/s for 30 minutes on QueueFleet
// with 120 s start-ups: neither routekit analyzer may change
// direction, nor change the count more than twice. The saturation analyzer
// used to flap five times here: its linear KV redistribution approved
// removing the replica that kept the fleet under its throughput limit, and
// while the replacement started it kept adding one replica per decision.
func TestSteadyNoOscillation(t *testing.T) {
	p := queueProfile(t)
	cs := controllers()
	for _, c := range []controllerSpec{cs[2], cs[3]} {
		t.Run(c.name, func(t *testing.T) {
			r := runOne(t, &QueueFleet{}, p, SteadyScenario(120*time.Second), c)
			assert.Equal(t, 0, r.Flaps, "direction changes")
			assert.LessOrEqual(t, r.Changes, 2)
			assert.GreaterOrEqual(t, r.Attainment, 0.99)
		})
	}
	// From twice the needed fleet, the saturation analyzer walks down
	// without ever turning back up, and stops above the throughput limit.
	t.Run("routekit saturation from 2x over-provisioned", func(t *testing.T) {
		sc := SteadyScenario(120 * time.Second)
		sc.InitialReplicas = 2 * InitialReplicas(p, sc.RateAt(0))
		out, err := (&QueueFleet{}).Run(sc, cs[2].make(p, sc.Startup))
		require.NoError(t, err)
		r := Evaluate(sc, cs[2].name, out, Objective)
		assert.Equal(t, 0, r.Flaps, "direction changes")
		last := out.Ticks[len(out.Ticks)-1].Desired
		assert.Less(t, last, sc.InitialReplicas)
		assert.Greater(t, float64(last)*p.MaxRate*0.85, Base, "kept under 85 % of profiled throughput")
		assert.GreaterOrEqual(t, r.Attainment, 0.99)
	})
}

// TestVLLMFleetSpike runs a short instant 2× spike on internal/vllmsim's
// fleet simulator with 60 s start-ups: the adapter works end to end and the
// controller reacts within the goals.
func TestVLLMFleetSpike(t *testing.T) {
	if raceEnabled {
		t.Skip("single-goroutine simulation: too slow under -race")
	}
	p, err := ProfileFleet(&VLLMFleet{}, 60, 3*time.Minute)
	require.NoError(t, err)
	sc := Scenario{Name: "vllmsim 2x step", Duration: 10 * time.Minute, Startup: 60 * time.Second, Seed: 7,
		Rate: []Point{{At: 0, Rate: 60}, {At: 3 * time.Minute, Rate: 60}, {At: 3*time.Minute + time.Second, Rate: 120},
			{At: 6 * time.Minute, Rate: 120}, {At: 6*time.Minute + time.Second, Rate: 60}},
		Spike: [2]time.Duration{3 * time.Minute, 7 * time.Minute}, Rise: 3 * time.Minute, Fall: 6 * time.Minute}
	cs := controllers()
	r := runOne(t, &VLLMFleet{}, p, sc, cs[len(cs)-1])
	t.Logf("profile %+v\n%s", p, Table([]Result{r}))
	assert.InDelta(t, 15.6, p.MaxRate, 2)
	assert.GreaterOrEqual(t, r.UpReaction, time.Duration(0))
	assert.Less(t, r.UpReaction, 60*time.Second)
	assert.GreaterOrEqual(t, r.DownReaction, time.Duration(0))
	assert.Less(t, r.DownReaction, 120*time.Second)
	// An instant 2× step with 60 s start-ups cannot hold the objective
	// without headroom; a 5-minute ramp to 2× with 60 s start-ups can (with 120 s start-ups the
	// fleet crosses its capacity 90 s into the ramp, before any replica ordered
	// at the first sign of the rise is ready; see BENCHMARKS.md).
	ramp := sc
	ramp.Name = "vllmsim 2x ramp"
	ramp.Startup = 60 * time.Second
	ramp.Duration = 12 * time.Minute
	ramp.Rate = []Point{{At: 0, Rate: 60}, {At: 3 * time.Minute, Rate: 60}, {At: 8 * time.Minute, Rate: 120},
		{At: 10 * time.Minute, Rate: 120}, {At: 10*time.Minute + time.Second, Rate: 60}}
	ramp.Spike = [2]time.Duration{3 * time.Minute, 10 * time.Minute}
	ramp.Rise, ramp.Fall = 3*time.Minute, 10*time.Minute
	rr := runOne(t, &VLLMFleet{}, p, ramp, cs[len(cs)-1])
	t.Logf("\n%s", Table([]Result{rr}))
	assert.LessOrEqual(t, rr.SpikeP90, Objective)
	assert.Greater(t, rr.Attainment, 0.95)
}

// TestReport prints the full matrix for BENCHMARKS.md:
//
//	go test ./autoscaler/autoscalersim -run TestReport -report -v -timeout 30m
//
// -controller NAME keeps only the controllers whose name contains NAME.
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("pass -report to run the full simulation matrix")
	}
	fleets := []struct {
		name  string
		f     func() Fleet
		scale float64
	}{
		{"QueueFleet (own step-level model)", func() Fleet { return &QueueFleet{} }, 1},
		{"VLLMFleet (internal/vllmsim fleetsim, SmallGPU)", func() Fleet { return &VLLMFleet{} }, 2},
	}
	for _, fl := range fleets {
		p, err := ProfileFleet(fl.f(), 60, 3*time.Minute)
		require.NoError(t, err)
		fmt.Printf("### %s, rates ×%v\n\nprofile: MaxRate %.2f req/s, BaseTTFT %v, Concurrency %d; ρ* at %v p90 = %.3f\n\n",
			fl.name, fl.scale, p.MaxRate, p.BaseTTFT.Round(time.Millisecond), p.Concurrency, Objective, autoscaler.QueueingModel{TTFT: Objective}.Utilization(p))
		var rs []Result
		for _, sc := range []Scenario{SteadyScenario(120 * time.Second), SpikeRampScenario(120 * time.Second),
			SpikeStepScenario(120 * time.Second), DiurnalScenario(120 * time.Second)} {
			for _, c := range reportControllers() {
				rs = append(rs, runOne(t, fl.f(), p, sc.Scaled(fl.scale), c))
			}
		}
		// What holding an instant 2× step with 120 s start-ups costs: headroom.
		sc := SpikeStepScenario(120 * time.Second).Scaled(fl.scale)
		if strings.Contains("routekit queueing, headroom 0.8", *controller) {
			rs = append(rs, runOne(t, fl.f(), p, sc, controllerSpec{"routekit queueing, headroom 0.8", func(p autoscaler.Profile, s time.Duration) Controller {
				c := QueueingController(p, s)
				q := c.Config.Analyzer.(autoscaler.QueueingModel)
				q.Headroom = 0.8
				c.Config.Analyzer = q
				return c
			}}))
		}
		fmt.Println(Table(rs))
		rs = nil
		for _, startup := range []time.Duration{0, 30 * time.Second, 60 * time.Second, 120 * time.Second, 180 * time.Second} {
			for _, c := range reportControllers() {
				sc := SpikeRampScenario(startup).Scaled(fl.scale)
				sc.Name = fmt.Sprintf("ramp spike, start-up %v", startup)
				rs = append(rs, runOne(t, fl.f(), p, sc, c))
			}
		}
		fmt.Println(Table(rs))
	}
}

// TestRunRejectsBadInput: a scenario or workload the fleets cannot simulate
// is an error from Run, never a panic (rand.IntN of a negative span), a hang
// (a NaN or infinite rate stalls the arrival sampler) or an allocation sized
// by the input.
func TestRunRejectsBadInput(t *testing.T) {
	ok := Scenario{Name: "ok", Rate: []Point{{Rate: 1}}, Duration: time.Minute, InitialReplicas: 1}
	okWL := Workload{PromptMin: 10, PromptMax: 20, OutputMin: 1, OutputMax: 2}
	with := func(f func(*Scenario)) Scenario { sc := ok; f(&sc); return sc }
	tests := []struct {
		name string
		sc   Scenario
		wl   Workload
		msg  string
	}{
		{"prompt bounds reversed", ok, Workload{PromptMin: 500, PromptMax: 100, OutputMin: 1, OutputMax: 2}, "prompt"},
		{"output bounds reversed", ok, Workload{PromptMin: 1, PromptMax: 10, OutputMin: 9, OutputMax: 1}, "output"},
		{"empty prompt", ok, Workload{PromptMin: 0, PromptMax: 10, OutputMin: 1, OutputMax: 1}, "prompt"},
		{"prompt too long", ok, Workload{PromptMin: 1, PromptMax: 1 << 40, OutputMin: 1, OutputMax: 1}, "prompt"},
		{"NaN rate", with(func(sc *Scenario) { sc.Rate = []Point{{Rate: math.NaN()}} }), okWL, "rate"},
		{"infinite rate", with(func(sc *Scenario) { sc.Rate = []Point{{Rate: 1}, {At: time.Second, Rate: math.Inf(1)}} }), okWL, "rate"},
		{"negative rate", with(func(sc *Scenario) { sc.Rate = []Point{{Rate: -1}} }), okWL, "rate"},
		{"too many arrivals", with(func(sc *Scenario) { sc.Rate = []Point{{Rate: 1e9}} }), okWL, "arrivals"},
		{"too many replicas", with(func(sc *Scenario) { sc.InitialReplicas = 1 << 40 }), okWL, "replica"},
		{"negative replicas", with(func(sc *Scenario) { sc.InitialReplicas = -1 }), okWL, "replica"},
		{"no duration", with(func(sc *Scenario) { sc.Duration = 0 }), okWL, "duration"},
	}
	fleets := []struct {
		name string
		make func(Workload) Fleet
	}{
		{"QueueFleet", func(wl Workload) Fleet { return &QueueFleet{Workload: wl} }},
		{"VLLMFleet", func(wl Workload) Fleet { return &VLLMFleet{Workload: wl} }},
	}
	for _, fl := range fleets {
		for _, tt := range tests {
			t.Run(fl.name+"/"+tt.name, func(t *testing.T) {
				out, err := fl.make(tt.wl).Run(tt.sc, Hold(time.Second))
				require.Error(t, err)
				assert.Nil(t, out)
				assert.Contains(t, err.Error(), tt.msg)
			})
		}
		t.Run(fl.name+"/valid input runs", func(t *testing.T) {
			out, err := fl.make(okWL).Run(ok, Hold(time.Second))
			require.NoError(t, err)
			assert.NotEmpty(t, out.Ticks)
		})
	}
	t.Run("QueueFleet engine without KV cache", func(t *testing.T) {
		_, err := (&QueueFleet{Engine: Engine{MaxSeqs: 8, MaxBatchedTokens: 512}}).Run(ok, Hold(time.Second))
		assert.ErrorContains(t, err, "KV tokens 0")
	})
	t.Run("Arrivals of a non-finite rate is empty", func(t *testing.T) {
		for _, r := range []float64{math.NaN(), math.Inf(1)} {
			assert.Empty(t, with(func(sc *Scenario) { sc.Rate = []Point{{Rate: r}} }).Arrivals())
		}
	})
}
