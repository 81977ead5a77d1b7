package autoscalersim

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/autoscaler"
)

var report = flag.Bool("report", false, "run the full simulation matrix and print the BENCHMARKS.md table")

// queueProfile profiles the default engine like an offline benchmark.
func queueProfile(t testing.TB) autoscaler.Profile {
	p, err := ProfileFleet(&QueueFleet{}, 30, 5*time.Minute)
	require.NoError(t, err)
	return p
}

type controllerSpec struct {
	name string
	make func(p autoscaler.Profile, startup time.Duration) Controller
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

func TestSteadyNoOscillation(t *testing.T) {
	p := queueProfile(t)
	sc := SteadyScenario(120 * time.Second)
	sc.Duration = 15 * time.Minute
	cs := controllers()
	r := runOne(t, &QueueFleet{}, p, sc, cs[len(cs)-1])
	assert.Equal(t, 0, r.SteadyFlaps)
	assert.LessOrEqual(t, r.Changes, 2)
	assert.GreaterOrEqual(t, r.Attainment, 0.99)
}

// TestReport prints the full matrix for BENCHMARKS.md:
//
//	go test ./autoscaler/autoscalersim -run TestReport -report -v
func TestReport(t *testing.T) {
	if !*report {
		t.Skip("pass -report to run the full simulation matrix")
	}
	p := queueProfile(t)
	fmt.Printf("profile: MaxRate %.2f req/s, BaseTTFT %v, Concurrency %d; ρ* at %v p90 = %.3f\n\n",
		p.MaxRate, p.BaseTTFT.Round(time.Millisecond), p.Concurrency, Objective, autoscaler.QueueingModel{TTFT: Objective}.Utilization(p))
	var rs []Result
	for _, sc := range []Scenario{SteadyScenario(120 * time.Second), SpikeRampScenario(120 * time.Second),
		SpikeStepScenario(120 * time.Second), DiurnalScenario(120 * time.Second)} {
		for _, c := range controllers() {
			rs = append(rs, runOne(t, &QueueFleet{}, p, sc, c))
		}
	}
	// What holding an instant 2× step with 120 s start-ups costs: headroom.
	sc := SpikeStepScenario(120 * time.Second)
	rs = append(rs, runOne(t, &QueueFleet{}, p, sc, controllerSpec{"routekit queueing, headroom 0.8", func(p autoscaler.Profile, s time.Duration) Controller {
		c := QueueingController(p, s)
		q := c.Config.Analyzer.(autoscaler.QueueingModel)
		q.Headroom = 0.8
		c.Config.Analyzer = q
		return c
	}}))
	fmt.Println(Table(rs))
	rs = nil
	for _, startup := range []time.Duration{0, 30 * time.Second, 60 * time.Second, 120 * time.Second, 180 * time.Second} {
		for _, c := range controllers() {
			sc := SpikeRampScenario(startup)
			sc.Name = fmt.Sprintf("ramp spike, start-up %v", startup)
			rs = append(rs, runOne(t, &QueueFleet{}, p, sc, c))
		}
	}
	fmt.Println(Table(rs))
}
