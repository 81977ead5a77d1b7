// Package autoscalersim replays request-rate traces against a simulated
// fleet of vLLM replicas in virtual time, with the autoscaler in the loop,
// and scores the result: TTFT objective attainment, TTFT p90 (overall and
// over a spike), replica-seconds, reaction times and flapping.
//
// A fleet model plugs in through the [Fleet] interface. [QueueFleet] is this
// package's own: step-level continuous batching with chunked prefill, paged
// KV memory with recompute preemption, a least-requests gateway that holds
// requests while no replica is ready, start-up delays and draining
// scale-down. A controller plugs in through [Controller];
// [DecideController] wraps autoscaler.Decide.
//
//	p, _ := autoscalersim.ProfileFleet(&autoscalersim.QueueFleet{}, 30, 5*time.Minute)
//	sc := autoscalersim.SpikeRampScenario(120 * time.Second)
//	sc.InitialReplicas = autoscalersim.InitialReplicas(p, sc.RateAt(0))
//	out, err := (&autoscalersim.QueueFleet{}).Run(sc, autoscalersim.QueueingController(p, sc.Startup))
//	if err != nil {
//		return err
//	}
//	r := autoscalersim.Evaluate(sc, "queueing", out, autoscalersim.Objective)
//	fmt.Println(autoscalersim.Table([]autoscalersim.Result{r}))
//
// The full matrix recorded in BENCHMARKS.md:
//
//	go test ./autoscaler/autoscalersim -run TestReport -report -v
//
// Concurrency: a Fleet run is single-threaded and deterministic for a given
// scenario seed; values are not safe for concurrent use, separate runs are
// independent.
//
// It does not model prefix caching, LoRA, P/D disaggregation, several
// variants, node provisioning or network time; the replica model is a
// calibrated stand-in, not vLLM.
package autoscalersim
