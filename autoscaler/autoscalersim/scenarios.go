package autoscalersim

import (
	"math"
	"time"

	"github.com/routekit/routekit/autoscaler"
)

// Objective is the TTFT p90 objective of the standard scenarios.
const Objective = 500 * time.Millisecond

// Base is the base load of the standard scenarios, in requests/s.
const Base = 30.0

// SteadyScenario is Base req/s for 30 min; direction changes after 5 min
// count as oscillation.
func SteadyScenario(startup time.Duration) Scenario {
	return Scenario{Name: "steady", Rate: []Point{{Rate: Base}}, Duration: 30 * time.Minute, Startup: startup,
		Seed: 1, Steady: 5 * time.Minute}
}

// SpikeRampScenario doubles the load over 5 minutes from minute 10, holds it
// until minute 25, returns to Base within a minute, and runs to minute 40.
func SpikeRampScenario(startup time.Duration) Scenario {
	return Scenario{Name: "2x spike, 5 min ramp", Rate: []Point{
		{At: 0, Rate: Base}, {At: 10 * time.Minute, Rate: Base}, {At: 15 * time.Minute, Rate: 2 * Base},
		{At: 25 * time.Minute, Rate: 2 * Base}, {At: 26 * time.Minute, Rate: Base}},
		Duration: 40 * time.Minute, Startup: startup, Seed: 2,
		Spike: [2]time.Duration{10 * time.Minute, 26 * time.Minute}, Rise: 10 * time.Minute, Fall: 25 * time.Minute}
}

// SpikeStepScenario doubles the load within one second at minute 10, holds
// it for 10 minutes, drops back and runs to minute 30.
func SpikeStepScenario(startup time.Duration) Scenario {
	return Scenario{Name: "2x spike, instant", Rate: []Point{
		{At: 0, Rate: Base}, {At: 10 * time.Minute, Rate: Base}, {At: 10*time.Minute + time.Second, Rate: 2 * Base},
		{At: 20 * time.Minute, Rate: 2 * Base}, {At: 20*time.Minute + time.Second, Rate: Base}},
		Duration: 30 * time.Minute, Startup: startup, Seed: 3,
		Spike: [2]time.Duration{10 * time.Minute, 21 * time.Minute}, Rise: 10 * time.Minute, Fall: 20 * time.Minute}
}

// DiurnalScenario is one compressed day in 60 minutes: 10 → 60 → 10 req/s.
func DiurnalScenario(startup time.Duration) Scenario {
	var pts []Point
	for m := 0; m <= 60; m++ {
		x := 0.5 - 0.5*math.Cos(2*math.Pi*float64(m)/60)
		pts = append(pts, Point{At: time.Duration(m) * time.Minute, Rate: 10 + 50*x})
	}
	return Scenario{Name: "diurnal", Rate: pts, Duration: 60 * time.Minute, Startup: startup, Seed: 4}
}

// Pool returns the simulated pool with a profile.
func Pool(p autoscaler.Profile) autoscaler.Pool {
	return autoscaler.Pool{Name: PoolName, Min: 1, Max: 40, Cost: 1, Profile: p}
}

// HPABaseline is the Kubernetes HPA as most vLLM guides configure it:
// target 5 waiting requests per replica (vllm:num_requests_waiting),
// tolerance 0.1, 15 s sync period, default behaviour (scale up by
// max(4 pods, 100 %) per 15 s, 300 s down window), no routekit guards.
func HPABaseline(p autoscaler.Profile) *DecideController {
	return &DecideController{Every: 15 * time.Second, Config: &autoscaler.Config{
		Pools:    []autoscaler.Pool{Pool(p)},
		Analyzer: autoscaler.TargetTracking{Metric: autoscaler.WaitingRequests, Name: "waiting", Target: 5, Tolerance: autoscaler.HPATolerance},
		Guards:   autoscaler.Guards{PendingTimeout: -1, WarmUp: -1, ScaleDownKV: -1, ScaleDownQueue: -1},
	}}
}

// HPARunningBaseline is the HPA on batch size, GKE's advice for tighter
// latency: target running requests per replica (vllm:num_requests_running),
// otherwise as HPABaseline.
func HPARunningBaseline(p autoscaler.Profile, target float64) *DecideController {
	c := HPABaseline(p)
	c.Config.Analyzer = autoscaler.TargetTracking{Metric: autoscaler.RunningRequests, Name: "running", Target: target, Tolerance: autoscaler.HPATolerance}
	return c
}

// fastDown is routekit's recommended scale-down behaviour for a 5 s loop: a
// 60 s window (the load × N/M guard makes a short window safe) and the
// HPA's default policy.
func fastDown() *autoscaler.ScalingRules {
	r := autoscaler.DefaultScaleDown()
	r.StabilizationWindow = 60 * time.Second
	return r
}

// QueueingController is routekit's queueing-model controller: TTFT p90
// objective, forecast over the replicas' start-up time, 5 s loop.
func QueueingController(p autoscaler.Profile, startup time.Duration) *DecideController {
	return &DecideController{Every: 5 * time.Second, Config: &autoscaler.Config{
		Pools:     []autoscaler.Pool{Pool(p)},
		Analyzer:  autoscaler.QueueingModel{TTFT: Objective, Lookahead: startup + 30*time.Second},
		ScaleDown: fastDown(),
	}}
}

// SaturationController is routekit's saturation analyzer (llm-d defaults)
// with routekit's guards, 5 s loop.
func SaturationController(p autoscaler.Profile) *DecideController {
	return &DecideController{Every: 5 * time.Second, Config: &autoscaler.Config{
		Pools:     []autoscaler.Pool{Pool(p)},
		Analyzer:  autoscaler.Saturation{},
		ScaleDown: fastDown(),
	}}
}

// InitialReplicas is the fleet size every controller starts from: what the
// queueing model sizes for the opening rate.
func InitialReplicas(p autoscaler.Profile, rate float64) int {
	per := autoscaler.QueueingModel{TTFT: Objective}.Utilization(p) * p.MaxRate
	if per <= 0 {
		return 1
	}
	return max(1, int(math.Ceil(rate/per)))
}
