package vllmsim

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config describes one simulated vLLM engine: its scheduler limits, its KV
// cache and its timing model. The zero value is not usable; start from a
// preset (Qwen3_32B_H100x2, Qwen3_8B_H100, Fast) and adjust fields.
//
// Timing model. One engine step runs the batch the scheduler picked and
// takes
//
//	StepOverhead
//	+ prefill tokens / PrefillTokensPerSec
//	+ decode sequences × DecodePerSeq
//	+ context tokens of the decode sequences × DecodePerContextToken
//
// Prefill tokens are only the uncached prompt tokens scheduled in the step
// (chunked prefill splits long prompts across steps at MaxBatchedTokens), so
// prefix-cache hits show up in TTFT; decode sequences each produce one token
// per step, so the inter-token latency grows with batch size and context, and
// with any prefill chunk that shares the step, as on a GPU.
// It is a plain value, safe to copy and to read from several goroutines.
type Config struct {
	// Model is the served model name (the "model" field and the model_name
	// metrics label).
	Model string
	// MaxModelLen is the context window in tokens (prompt + output).
	MaxModelLen int
	// BlockSize is the KV block size in tokens (vLLM default 16).
	BlockSize int
	// NumBlocks is the KV cache capacity in blocks (vLLM's num_gpu_blocks).
	NumBlocks int
	// MaxNumSeqs is the maximum number of running requests (max_num_seqs).
	MaxNumSeqs int
	// MaxBatchedTokens is the token budget of one step
	// (max_num_batched_tokens); prefills longer than the remaining budget are
	// chunked.
	MaxBatchedTokens int
	// DisablePrefixCaching turns the prefix cache off (vLLM enables it by
	// default).
	DisablePrefixCaching bool

	// PrefillTokensPerSec is the prefill throughput for uncached tokens.
	PrefillTokensPerSec float64
	// StepOverhead is the fixed cost of every step (kernel launches,
	// scheduling, sampling, weight reads for a memory-bound decode).
	StepOverhead time.Duration
	// DecodePerSeq is the added cost of each decoding sequence in a step.
	DecodePerSeq time.Duration
	// DecodePerContextToken is the added cost per context token attended to
	// by the decoding sequences (KV reads).
	DecodePerContextToken time.Duration
	// TransferPerBlock is the cost of pulling one KV block from a remote
	// prefill engine (NixlConnector) instead of computing it.
	TransferPerBlock time.Duration
	// KVLease is how long a prefill engine keeps the blocks of a request it
	// prefilled for remote decode when nobody pulls them (vLLM's
	// VLLM_NIXL_ABORT_REQUEST_TIMEOUT / kv_lease_duration).
	KVLease time.Duration

	// Vocab is the range output token ids are drawn from, [VocabLow,
	// VocabLow+VocabSize). The zero value means printable ASCII (32..126),
	// which ByteTokenizer decodes to readable text.
	VocabLow, VocabSize uint32

	// DataParallelSize is vLLM's --data-parallel-size: how many engine
	// cores, each with its own scheduler and KV cache, sit behind the one
	// API server (Server). 0 and 1 both mean one engine. Engine itself
	// ignores it (it is one core), and so does package fleetsim.
	DataParallelSize int

	// LoRA enables LoRA adapters (vLLM's --enable-lora, whose lora_config
	// is None without it); nil means off. The pointer keeps Config
	// comparable; do not modify the LoRAConfig after passing it.
	LoRA *LoRAConfig
}

// LoRAConfig is the LoRA part of a Config: the served adapters and how many
// may be in one batch. It is plain data: share it only read-only.
type LoRAConfig struct {
	// Adapters are the served adapters (--lora-modules name=path). A request
	// names one by its "model" field; an adapter's server-local id (lora_id
	// in KV events) is its position here plus 1.
	Adapters []LoRA
	// MaxLoRAs is vLLM's --max-loras: the most distinct adapters the
	// running batch may use at once. Zero means 1, vLLM's default.
	MaxLoRAs int
}

// LoRA is one served LoRA adapter.
// It is a plain value, safe to copy and to read from several goroutines.
type LoRA struct {
	// Name is the adapter's served name (the "model" of its requests and
	// lora_name in block hashes and KV events). It must be unique and
	// differ from Config.Model.
	Name string
	// Path is where the adapter was loaded from, reported as "root" in
	// /v1/models; empty means Name.
	Path string
}

// ErrBadConfig is wrapped by NewEngine's errors for an unusable Config; the
// message names the field to fix.
var ErrBadConfig = errors.New("vllmsim: bad config")

func (c *Config) validate() error {
	switch {
	case c.BlockSize <= 0:
		return fmt.Errorf("%w: BlockSize %d must be > 0", ErrBadConfig, c.BlockSize)
	case c.NumBlocks <= 0:
		return fmt.Errorf("%w: NumBlocks %d must be > 0", ErrBadConfig, c.NumBlocks)
	case c.MaxNumSeqs <= 0:
		return fmt.Errorf("%w: MaxNumSeqs %d must be > 0", ErrBadConfig, c.MaxNumSeqs)
	case c.MaxBatchedTokens <= 0:
		return fmt.Errorf("%w: MaxBatchedTokens %d must be > 0", ErrBadConfig, c.MaxBatchedTokens)
	case c.MaxModelLen <= 0:
		return fmt.Errorf("%w: MaxModelLen %d must be > 0", ErrBadConfig, c.MaxModelLen)
	case !(c.PrefillTokensPerSec > 0):
		return fmt.Errorf("%w: PrefillTokensPerSec %v must be > 0", ErrBadConfig, c.PrefillTokensPerSec)
	case c.StepOverhead < 0 || c.DecodePerSeq < 0 || c.DecodePerContextToken < 0 || c.TransferPerBlock < 0 || c.KVLease < 0:
		return fmt.Errorf("%w: durations must be >= 0", ErrBadConfig)
	case c.DataParallelSize < 0:
		return fmt.Errorf("%w: DataParallelSize %d must be >= 1 (0 means 1)", ErrBadConfig, c.DataParallelSize)
	case c.StepOverhead+c.DecodePerSeq <= 0:
		return fmt.Errorf("%w: StepOverhead + DecodePerSeq must be > 0 so that decoding takes time", ErrBadConfig)
	}
	if err := c.validateLoRAs(); err != nil {
		return err
	}
	if c.VocabSize == 0 {
		c.VocabLow, c.VocabSize = 32, 95
	}
	return nil
}

// validateLoRAs checks c.LoRA and replaces it with a copy holding the
// defaults, so that the caller's LoRAConfig is never written.
func (c *Config) validateLoRAs() error {
	if c.LoRA == nil {
		return nil
	}
	lc := *c.LoRA
	switch {
	case len(lc.Adapters) == 0:
		return fmt.Errorf("%w: LoRA has no Adapters", ErrBadConfig)
	case lc.MaxLoRAs < 0:
		return fmt.Errorf("%w: LoRA.MaxLoRAs %d must be >= 1 (0 means 1)", ErrBadConfig, lc.MaxLoRAs)
	case lc.MaxLoRAs == 0:
		lc.MaxLoRAs = 1
	}
	for i, l := range lc.Adapters {
		switch {
		case l.Name == "":
			return fmt.Errorf("%w: LoRA.Adapters[%d] has no Name", ErrBadConfig, i)
		case l.Name == c.Model:
			return fmt.Errorf("%w: LoRA.Adapters[%d] name %q is the base model's", ErrBadConfig, i, l.Name)
		}
		for _, p := range lc.Adapters[:i] {
			if p.Name == l.Name {
				return fmt.Errorf("%w: LoRA.Adapters[%d] name %q is a duplicate", ErrBadConfig, i, l.Name)
			}
		}
	}
	lc.Adapters = slices.Clone(lc.Adapters)
	c.LoRA = &lc
	return nil
}

// dataParallelSize is DataParallelSize with 0 read as 1.
func (c *Config) dataParallelSize() int { return max(c.DataParallelSize, 1) }

// KVCapacityTokens is NumBlocks × BlockSize (vLLM's kv_cache_size_tokens).
func (c Config) KVCapacityTokens() int { return c.NumBlocks * c.BlockSize }

// Qwen3_32B_H100x2 returns a Config roughly calibrated to Qwen3-32B (BF16)
// served by vLLM with tensor parallelism 2 on two H100-80GB GPUs, the setup
// of llm-d's published "KV-cache wins you can see" and optimized-baseline
// benchmarks (../shared/reference/scheduler-anchors.md §8.2):
//
//   - KV capacity 307,328 tokens per server (19,208 blocks of 16), as
//     reported there;
//   - peak prefill about 16,000 tokens/s, so a cold 10k-token prompt takes
//     about 0.6 s alone;
//   - decode: weights are 64 GB, read once per step at about 2 × 3.35 TB/s
//     → ≈ 10 ms, plus launch/sampling overhead → StepOverhead 14 ms; KV is
//     64 layers × 8 KV heads × 128 × 2 (K,V) × 2 bytes = 256 KiB per token
//     → ≈ 40 ns per context token read; DecodePerSeq 0.15 ms covers the
//     per-sequence compute. A lone decode then runs at ≈ 14 ms/token, and
//     64 sequences with 7k context each at ≈ 42 ms/token, in line with the
//     43.9 ms NTPOT p50 published for that setup under load;
//   - vLLM defaults max_num_seqs 256, max_num_batched_tokens 8192, block 16,
//     max_model_len 40,960 (Qwen3's native context).
//
// The numbers are estimates for comparing routing policies, not a GPU model.
// Check against the published run: in fleetsim, 8 replicas on the
// b2b-saas workload (150×5, 6000+1200 → 1000 tokens, Poisson ladder 3→60
// QPS) saturate at ≈6.6k output tokens/s with random routing and ≈10.7k
// with a prefix-cache oracle, KV-capacity-bound as in the blog (≈37
// concurrent 8k-token requests per server); llm-d published 4.4k (random)
// and 8.7k (precise prefix). The ranking and the gap are reproduced; the
// simulator is ~20-50% optimistic in absolute throughput.
func Qwen3_32B_H100x2() Config {
	return Config{
		Model:                 "Qwen/Qwen3-32B",
		MaxModelLen:           40960,
		BlockSize:             16,
		NumBlocks:             19208,
		MaxNumSeqs:            256,
		MaxBatchedTokens:      8192,
		PrefillTokensPerSec:   16000,
		StepOverhead:          14 * time.Millisecond,
		DecodePerSeq:          150 * time.Microsecond,
		DecodePerContextToken: 40 * time.Nanosecond,
		TransferPerBlock:      20 * time.Microsecond,
		KVLease:               30 * time.Second,
	}
}

// Qwen3_8B_H100 returns a Config roughly calibrated to Qwen3-8B (BF16) on
// one H100-80GB: 28,672 blocks (458,752 tokens, the num_gpu_blocks of the
// metrics sample in ../shared/reference/vllm-golden/metrics-sample.txt),
// prefill ≈ 40,000 tokens/s (4× fewer FLOPs per token than 32B on 2× the
// GPUs), decode 16 GB of weights at 3.35 TB/s ≈ 5 ms + overhead → 7 ms, KV
// 36 layers × 8 × 128 × 2 × 2 bytes = 144 KiB per token → ≈ 45 ns per
// context token.
func Qwen3_8B_H100() Config {
	return Config{
		Model:                 "Qwen/Qwen3-8B",
		MaxModelLen:           40960,
		BlockSize:             16,
		NumBlocks:             28672,
		MaxNumSeqs:            256,
		MaxBatchedTokens:      8192,
		PrefillTokensPerSec:   40000,
		StepOverhead:          7 * time.Millisecond,
		DecodePerSeq:          80 * time.Microsecond,
		DecodePerContextToken: 45 * time.Nanosecond,
		TransferPerBlock:      10 * time.Microsecond,
		KVLease:               30 * time.Second,
	}
}

// Fast returns a small, fast Config for tests and examples that run in real
// time: 4,096 blocks of 16, 1M prefill tokens/s and 1 ms steps, so a
// 100-token completion takes about 0.1 s.
func Fast() Config {
	return Config{
		Model:                 "sim-model",
		MaxModelLen:           8192,
		BlockSize:             16,
		NumBlocks:             4096,
		MaxNumSeqs:            64,
		MaxBatchedTokens:      2048,
		PrefillTokensPerSec:   1e6,
		StepOverhead:          time.Millisecond,
		DecodePerSeq:          10 * time.Microsecond,
		DecodePerContextToken: 0,
		TransferPerBlock:      5 * time.Microsecond,
		KVLease:               5 * time.Second,
	}
}
