// Package vllmsim is a faithful stand-in for a vLLM model server, for tests,
// benchmarks, examples and fleet-scale policy comparisons without GPUs.
//
// One engine model, Engine, reproduces what a router can observe of vLLM:
// continuous batching with a max-running-requests limit and a token budget
// per step, a FIFO waiting queue, chunked prefill, recompute preemption, a
// prefix cache of fixed-size chained blocks with LRU eviction of
// unreferenced blocks (freed tail first) and the KV events vLLM would
// publish, LoRA adapters (Config.LoRA: the max_loras admission rule of
// vLLM V1's scheduler, the adapter name as every block's extra hash key,
// lora_id and lora_name in BlockStored), NixlConnector-style remote
// prefill, and a timing model in which prefill costs time per uncached
// token and decode steps slow down with
// batch size and context (Config; presets Qwen3_32B_H100x2, Qwen3_8B_H100,
// Fast, with their calibration documented). Engine is a pure state machine
// over a caller-supplied notion of time, deterministic given its seed, so
// the same model runs in real time behind HTTP (Server) and in virtual
// time (package fleetsim).
//
// Server puts an Engine behind vLLM's OpenAI-compatible API:
// /v1/completions and /v1/chat/completions (JSON and SSE, usage with
// prompt_tokens_details.cached_tokens, stream_options.include_usage,
// max_tokens/max_completion_tokens, ignore_eos, kv_transfer_params),
// /v1/models (with a card per LoRA adapter; a request names an adapter by
// its "model"), /health, /tokenize, /detokenize, /metrics (vLLM's exact
// names, types, labels and number formatting, vllm:lora_requests_info with
// adapters) and vLLM-like errors; it publishes KV events over ZeroMQ in
// vLLM's wire format with sha256_cbor block hashes (internal/kvpublish,
// kvcache/kvevents, prefix/vllmhash).
//
// Data parallelism (Config.DataParallelSize N, vLLM's --data-parallel-size):
// one Server is the API server in front of N engine cores, each with its own
// scheduler, KV cache and KV-event publisher. A request goes to the core
// vLLM V1's DP load-balancing client would pick (lowest 4 × waiting +
// running as last published by the DP coordinator every 100 ms, plus its
// own sends since), or to the rank its X-data-parallel-rank header names
// (out of range: 400). /metrics has every per-engine series once per core
// (engine="r", vllm:cache_config_info included); rank r publishes KV events
// on the endpoint and replay ports + r, numbered from 0, with r as each
// batch's data_parallel_rank (Replica.KVRanks, Server.KVRankEndpoints). In
// P/D each rank is its own NIXL engine, as in vLLM: rank r reports
// remote_engine_id "<engine id>_dp<r>" (Server.EngineIDs) and the
// advertised port plus r as remote_port, and a decode server frees the
// transferred blocks on exactly the rank its remote_engine_id names.
//
// Usage:
//
//	f, err := vllmsim.StartFleet(ctx,
//		vllmsim.ReplicaSpec{Role: "prefill", KVEvents: true},
//		vllmsim.ReplicaSpec{Role: "decode", KVEvents: true})
//	defer f.Close()
//	for _, r := range f.Replicas {
//		// r.URL ("http://127.0.0.1:port"), r.KVEndpoint, r.KVReplayEndpoint, r.KVTopic,
//		// r.KVRanks (every data-parallel rank's), r.Stats(), r.RankStats(rank),
//		// r.BlockKeys(tokens), r.Shutdown()
//	}
//
// or, owning the goroutines:
//
//	srv, err := vllmsim.NewServer(vllmsim.Qwen3_8B_H100(), vllmsim.WithTokenizer(vllmsim.HFTokenizer(tok)))
//	go srv.Run(ctx)
//	http.Serve(ln, srv)
//
// Concurrency: Server and Fleet are safe for concurrent use; Engine is not
// (Server serialises it). BlockHashers and Tokenizers must be.
//
// What it does not do: compute anything a model would (output tokens are
// seeded pseudo-random ids, printable ASCII by default), n > 1, logprobs,
// speculative decoding, LoRA timing (adapters cost nothing; no
// --max-cpu-loras swapping, no dynamic loading), multimodal inputs,
// pipeline parallelism, data parallelism's multi-node and external
// load-balancer modes (--data-parallel-size-local, --data-parallel-external-lb),
// several API servers (--api-server-count, prometheus multiprocess mode),
// MoE lockstep steps across ranks, priority scheduling, or bytes-mode
// KV-event hashes (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0).
package vllmsim
