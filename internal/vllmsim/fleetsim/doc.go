// Package fleetsim simulates a fleet of vLLM replicas in virtual time, to
// compare routing policies and autoscalers at fleet scale without GPUs.
//
// Each replica is a vllmsim.Engine (continuous batching, chunked prefill,
// prefix cache with LRU eviction, timing model); a discrete-event loop
// drives them and a Workload (SharedPrefix, Chat, or your own) feeds a
// Router you supply. Nothing sleeps: 10,000 requests of the b2b-saas
// workload over 8 replicas simulate in seconds on one core.
//
// Usage:
//
//	w := fleetsim.SharedPrefix{
//		Groups: 150, PromptsPerGroup: 5, SystemPromptLen: 6000, QuestionLen: 1200, OutputLen: 1000,
//		Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: fleetsim.Ladder(3, 60, 3, time.Minute)},
//		NumRequests: 10000, Seed: 1,
//	}.Workload()
//	router := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
//		// st.Replicas: Waiting(), Running(), InFlight(), KVUsage(), Scraped(),
//		// PrefixMatch(req.Keys) (oracle); return nil to reject.
//		return st.Replicas[int(req.ID)%len(st.Replicas)]
//	})
//	sim, err := fleetsim.New(fleetsim.Config{
//		Engine: vllmsim.Qwen3_32B_H100x2(), Replicas: 8, Seed: 1,
//		OnKVEvent: func(r *fleetsim.Replica, at time.Duration, ev vllmsim.KVEvent) { /* feed a precise index */ },
//	}, w, router)
//	rep, err := sim.Run() // rep.TTFT.P90, rep.ITL.P50, rep.OutputTokensPerSec, rep.PrefixHitRate, ...
//
// Routers that also implement PDRouter split requests into a prefill leg
// and a decode leg (vLLM NixlConnector semantics: one-token prefill with
// held blocks, KV pulled at Engine.TransferPerBlock, blocks released on the
// decode side's first token).
//
// Autoscalers set Config.OnTick and Config.TickInterval and use the
// Control to add replicas (ready after Config.StartupDelay) or drain them;
// Config.HoldWhenEmpty queues requests at the gateway while no replica is
// ready (scale from zero; Control.Holding). Report.ReplicaSeconds measures
// the cost and Report.Series the queues. Replica.Scraped gives routers
// metrics as stale as Config.ScrapeInterval makes them, and
// Config.KVEventDelay delays the KV events fed to a precise index.
//
// Concurrency: a Sim runs on the goroutine that calls Run; routers, hooks
// and workloads are called on it, one at a time, and must not retain the
// State, Replica or event slices beyond the call. Run separate Sims in
// parallel for parameter sweeps.
//
// What it does not do: model the network, the router's own latency,
// speculative decoding, LoRA, or the tokenizer (workloads produce token
// ids directly). Requests always run with ignore_eos (exact OutputLen).
package fleetsim
