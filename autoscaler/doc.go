// Package autoscaler sizes the pools of model servers behind one model: enough
// vLLM replicas to meet the latency objective at the lowest cost, and no more.
//
// The core is one pure function, [Decide]: configuration, the state returned
// by the previous call, an [Observation] of the fleet and the time go in; a
// [Decision] (desired replicas per pool, each with its reasons) and the next
// [State] come out. No I/O, no goroutines, no clock: anyone can test it,
// replay it against a trace, or embed it in another controller. [Driver] is
// the thin loop around it that observes on an interval and calls an
// [Actuator].
//
// A decision passes three composable stages per group of pools sharing a
// [Role]: an [Analyzer] ([Saturation], [QueueingModel], [TargetTracking], or
// your own [AnalyzerFunc]) proposes counts; guards and constraints correct
// them (pending timeout, warm-up, missing data, the load × N/M scale-down
// check, scale to and from zero, step limits, P/D ratio, min/max, accelerator
// budget); the stabilizer applies the Kubernetes HPA's behaviour exactly
// (tolerance, stabilization windows, rate policies).
//
//	cfg := &autoscaler.Config{
//		Pools: []autoscaler.Pool{
//			{Name: "llama-h100", Min: 1, Max: 16, Cost: 4.0,
//				Profile: autoscaler.Profile{MaxRate: 12, BaseTTFT: 150 * time.Millisecond, Concurrency: 64}},
//			{Name: "llama-l40s", Min: 0, Max: 16, Cost: 1.5,
//				Profile: autoscaler.Profile{MaxRate: 4, BaseTTFT: 300 * time.Millisecond, Concurrency: 32}},
//		},
//		Analyzer: autoscaler.QueueingModel{TTFT: time.Second, Lookahead: 2 * time.Minute},
//	}
//	d, err := autoscaler.NewDriver(cfg, observer, actuator, autoscaler.WithInterval(5*time.Second))
//	if err != nil {
//		return err
//	}
//	return d.Run(ctx) // or, without a loop: dec, st = autoscaler.Decide(cfg, st, obs, now)
//
// Concurrency: Decide is safe for concurrent use and never modifies its
// inputs. A [Driver] is safe for concurrent use; its Run blocks until the
// context is done and the caller owns that goroutine.
//
// What it does not do: talk to Kubernetes (the scale-subresource actuator lives
// in the examples module), scrape metrics (package pool does), learn
// performance profiles online (profiles are offline inputs), or elect a
// leader (run one Driver per model, or gate Run behind your own election).
// It also never fights an HPA: if an HPA owns the target, publish the decision
// as a metric instead of writing spec.replicas, and set the HPA's tolerance to
// 0 or it will drop ±1 changes at ten replicas and above.
package autoscaler
