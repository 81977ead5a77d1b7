// Package vllmsim is a faithful stand-in for a vLLM model server, for tests,
// benchmarks, examples and fleet-scale policy comparisons without GPUs.
//
// One engine model, Engine, reproduces what a router can observe of vLLM:
// continuous batching with a max-running-requests limit and a token budget
// per step, a FIFO waiting queue, chunked prefill, recompute preemption, a
// prefix cache of fixed-size, chained blocks with LRU eviction of
// unreferenced blocks (and the KV events vLLM would publish), and a timing
// model in which prefill costs time per uncached token and decode steps
// slow down with batch size and context (Config, with calibrated presets).
// Engine is a pure state machine over a caller-supplied notion of time, so
// the same model runs in real time behind HTTP servers and in virtual time
// in package fleetsim.
//
// Usage (driving an engine by hand):
//
//	eng, err := vllmsim.NewEngine(vllmsim.Qwen3_32B_H100x2())
//	seq, err := eng.Add(&vllmsim.Request{ID: "r1", Prompt: toks, MaxTokens: 100, IgnoreEOS: true}, 0)
//	now := time.Duration(0)
//	for seq.Finish() == vllmsim.NotFinished {
//		d, ok := eng.Schedule(now)
//		if !ok {
//			break
//		}
//		now += d
//		out := eng.Complete(now) // out.Tokens, out.Events (BlockStored/BlockRemoved)
//		_ = out
//	}
//	fmt.Println(seq.FirstToken, seq.CachedTokens(), len(seq.Output()))
//
// Concurrency: Engine is not safe for concurrent use. BlockHashers must be.
//
// What it does not do: compute anything a model would (output tokens are
// seeded pseudo-random ids), speculative decoding, LoRA, multimodal inputs,
// pipeline/data parallelism, or priority scheduling.
package vllmsim
