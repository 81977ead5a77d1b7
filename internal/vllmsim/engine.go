package vllmsim

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zeebo/xxh3"
)

// Engine is one simulated vLLM engine core: a continuous-batching scheduler
// (FIFO waiting queue, max running requests, a token budget per step,
// chunked prefill, recompute preemption) over a prefix-cached KV block pool
// with LRU eviction, and a timing model (see Config).
//
// Engine is a pure state machine driven by its caller, in the manner of
// etcd's raft.RawNode: the caller adds requests, calls Schedule to pick the
// next batch and learn how long it takes, lets that much time pass (really,
// as Server does, or virtually, as fleetsim does), then calls Complete to
// collect the sampled tokens and the KV events of the step. Time is a
// time.Duration since an arbitrary origin chosen by the caller; Engine never
// reads a clock. Given the same inputs and seed it produces the same outputs.
//
// Engine is not safe for concurrent use; Server serialises access.
type Engine struct {
	cfg    Config
	hasher BlockHasher
	seed   uint64
	id     string
	pool   *blockPool

	waiting []*Seq // FIFO; waiting[0] is next
	running []*Seq
	remote  []*Seq          // waiting for remote KV (P/D decode side)
	held    map[string]*Seq // finished P/D prefills holding blocks
	inStep  bool            // between Schedule and Complete
	stepped []*Seq          // sequences scheduled in the current step
	out     StepOutput      // reused
	keys    []uint64        // arena for event keys, reset per step
	hitIDs  []int32         // blocks found by the last prefixHit
	carry   bool            // out.Events hold events of a Schedule that ran nothing
	stats   Counters

	loraHasher LoRABlockHasher // hasher as a LoRABlockHasher; set with Config.LoRA
	loraIDs    map[string]int  // adapter name -> server-local id (from 1)
	loras      []string        // adapters of the current step's batch (reused)
}

// Option configures an Engine.
// Options are immutable values, safe to reuse.
type Option interface{ apply(*Engine) }

type optionFunc func(*Engine)

func (f optionFunc) apply(e *Engine) { f(e) }

// WithHasher sets the block identity function (default FastHasher{Seed: the
// engine seed}). Use a vLLM-compatible hasher (sha256_cbor) when block keys
// must match a router's or a real vLLM's.
func WithHasher(h BlockHasher) Option { return optionFunc(func(e *Engine) { e.hasher = h }) }

// WithSeed sets the seed that output tokens and natural output lengths are
// drawn from (default 0).
func WithSeed(seed uint64) Option { return optionFunc(func(e *Engine) { e.seed = seed }) }

// WithEngineID sets the engine id reported as remote_engine_id in P/D
// responses (default "engine-0").
func WithEngineID(id string) Option { return optionFunc(func(e *Engine) { e.id = id }) }

// NewEngine returns an Engine for cfg, or an error wrapping ErrBadConfig.
func NewEngine(cfg Config, opts ...Option) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, id: "engine-0", held: make(map[string]*Seq)}
	for _, o := range opts {
		o.apply(e)
	}
	if e.hasher == nil {
		e.hasher = FastHasher{Seed: e.seed}
	}
	if cfg.LoRA != nil {
		lh, ok := e.hasher.(LoRABlockHasher)
		if !ok {
			return nil, fmt.Errorf("%w: LoRAs need a LoRABlockHasher, got %T", ErrBadConfig, e.hasher)
		}
		e.loraHasher = lh
		e.loraIDs = make(map[string]int, len(cfg.LoRA.Adapters))
		for i, l := range cfg.LoRA.Adapters {
			e.loraIDs[l.Name] = i + 1
		}
	}
	e.pool = newBlockPool(cfg.NumBlocks)
	return e, nil
}

// Errors returned by Engine.Add. Servers map them to HTTP 400; callers
// should not retry the same request.
var (
	// ErrPromptTooLong reports a prompt plus max tokens that do not fit the
	// context window (MaxModelLen); shorten the prompt or lower max tokens.
	ErrPromptTooLong = errors.New("vllmsim: prompt longer than the context window")
	// ErrEmptyPrompt reports a prompt without tokens.
	ErrEmptyPrompt = errors.New("vllmsim: empty prompt")
	// ErrBadMaxTokens reports max tokens below 1.
	ErrBadMaxTokens = errors.New("vllmsim: max tokens must be at least 1")
	// ErrTooLargeForCache reports a request that could never fit in the KV
	// cache even alone; give the engine more blocks.
	ErrTooLargeForCache = errors.New("vllmsim: request needs more KV blocks than the cache has")
	// ErrUnknownLoRA reports a Request.LoRA that is not one of
	// Config.LoRA.Adapters; it is a bad request, not worth retrying.
	ErrUnknownLoRA = errors.New("vllmsim: unknown LoRA adapter")
)

// Request is the input of Engine.Add. The engine keeps the pointer; do not
// modify a Request after adding it.
// It is plain data with no internal synchronisation: share it only read-only.
type Request struct {
	// ID identifies the request (vLLM's request_id); it names held P/D
	// blocks for Release.
	ID string
	// Prompt is the prompt token ids. If it has spare capacity for
	// MaxTokens more ids, the engine appends the output there instead of
	// copying the prompt (Seq.Output then aliases that capacity).
	Prompt []uint32
	// MaxTokens is the maximum number of output tokens (>= 1).
	MaxTokens int
	// IgnoreEOS makes the output exactly MaxTokens long (benchmark mode).
	// Otherwise the "natural" length is drawn uniformly from [1, MaxTokens]
	// from the request's seed, and reaching it finishes with "stop".
	IgnoreEOS bool
	// CacheSalt is mixed into the first block's identity (vLLM cache_salt).
	CacheSalt string
	// LoRA is the name of the adapter (one of Config.LoRA.Adapters) the request is
	// served with, or "" for the base model. It is mixed into every block's
	// identity, and the scheduler admits the request only while the batch
	// has room for its adapter (Config.LoRA.MaxLoRAs).
	LoRA string
	// Seed selects the output tokens; 0 derives it from the engine seed and
	// the prompt, so identical prompts give identical outputs.
	Seed uint64
	// RemoteDecode marks a P/D prefill leg (kv_transfer_params.
	// do_remote_decode): the request stops after its first token and its
	// blocks are held for a decode engine to pull (see Release).
	RemoteDecode bool
	// RemotePrefill marks a P/D decode leg whose KV comes from another
	// engine: the prompt blocks not cached locally are transferred at
	// Config.TransferPerBlock each instead of being computed.
	RemotePrefill bool
	// ReportCachedBlocks makes the engine also publish BlockStored for the
	// prefix-cache blocks the request reuses (from block 0, no parent), as
	// vLLM does for vllm_xargs {"kv_cache_report_mode": "full"}.
	ReportCachedBlocks bool
	// Index is opaque to the engine; callers use it to find their own
	// bookkeeping from a *Seq without a map.
	Index int
}

// FinishReason says why a sequence finished.
// It is a plain value, safe to copy and to read from several goroutines.
type FinishReason uint8

// Finish reasons, named as in vLLM's finished_reason metric label.
const (
	// NotFinished: the sequence is still running or waiting.
	NotFinished FinishReason = iota
	// FinishStop: the sequence reached its natural end (EOS).
	FinishStop
	// FinishLength: the sequence reached max tokens (or the context window).
	FinishLength
	// FinishAbort: the sequence was aborted (client disconnect, shutdown).
	FinishAbort
)

// String returns "stop", "length", "abort" or "".
func (f FinishReason) String() string {
	switch f {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	case FinishAbort:
		return "abort"
	}
	return ""
}

// Seq is the engine's state for one added request. Like the Engine it is
// not safe for concurrent use: read it between engine calls, under the
// same lock as the Engine.
type Seq struct {
	Req *Request

	tokens      []uint32 // prompt + output
	keys        []uint64 // keys of the full blocks of tokens hashed so far
	tail        Hash     // full identity of the last hashed block (the next parent)
	blocks      []int32
	numCached   int // full blocks registered in the prefix cache
	numComputed int
	promptLen   int
	outputLen   int // target
	numOutput   int
	scheduled   int
	seed        uint64

	localHit  int // prompt tokens found in the local prefix cache
	remoteHit int // prompt tokens pulled from a remote engine
	admitted  bool
	finish    FinishReason
	readyAt   time.Duration
	preempted int
	hitIDs    []int32 // blocks of the last prefix lookup, while waiting

	// Times (engine time).
	Arrival, Admitted, FirstToken, LastToken time.Duration
}

// Output returns the output tokens sampled so far. The slice aliases the
// sequence's storage; it stays valid (append-only).
func (s *Seq) Output() []uint32 { return s.tokens[s.promptLen:] }

// PromptLen returns the prompt length in tokens.
func (s *Seq) PromptLen() int { return s.promptLen }

// CachedTokens returns the prompt tokens served from the local prefix cache
// at admission (usage.prompt_tokens_details.cached_tokens).
func (s *Seq) CachedTokens() int { return s.localHit }

// RemoteTokens returns the prompt tokens pulled from a remote prefill engine.
func (s *Seq) RemoteTokens() int { return s.remoteHit }

// Finish returns why the sequence finished, or NotFinished.
func (s *Seq) Finish() FinishReason { return s.finish }

// BlockIDs returns a copy of the physical KV block ids the sequence holds
// (remote_block_ids for P/D).
func (s *Seq) BlockIDs() []int { return intsOf(s.blocks) }

// Preemptions returns how many times the sequence was preempted.
func (s *Seq) Preemptions() int { return s.preempted }

func intsOf(b []int32) []int {
	out := make([]int, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}

// TokenEvent is one sampled token in a StepOutput.
// It belongs to the Engine, which is not safe for concurrent use.
type TokenEvent struct {
	Seq   *Seq
	Token uint32
	// First is true for the sequence's first output token.
	First bool
	// Finish is set when this token finishes the sequence.
	Finish FinishReason
}

// KVEventKind is the type of a KVEvent.
// It is a plain value, safe to copy and to read from several goroutines.
type KVEventKind uint8

// KV event kinds, as vLLM's BlockStored, BlockRemoved and AllBlocksCleared.
const (
	// BlockStored: blocks entered the prefix cache.
	BlockStored KVEventKind = iota + 1
	// BlockRemoved: a block was evicted from the prefix cache.
	BlockRemoved
	// AllBlocksCleared: the prefix cache was reset.
	AllBlocksCleared
)

// KVEvent is one prefix-cache change, in the terms of vLLM's KV events:
// Keys are the published 64-bit block hashes (Hash.Key). Slices alias engine
// storage and are valid until the next Schedule.
// It belongs to the Engine, which is not safe for concurrent use.
type KVEvent struct {
	Kind KVEventKind
	Keys []uint64
	// Parent is the key of the block before Keys[0] (BlockStored), valid if
	// HasParent.
	Parent    uint64
	HasParent bool
	// Tokens are the tokens of the stored blocks (len = len(Keys)×BlockSize).
	Tokens    []uint32
	BlockSize int
	// LoRA is the adapter name of the request that stored the blocks
	// (lora_name, an extra key of every block) and LoRAID its server-local
	// id (lora_id, from 1); "" and 0 without one. BlockStored only.
	LoRA   string
	LoRAID int
	// Salt is the request's cache salt when Keys[0] is the request's first
	// block (it is that block's extra key, after LoRA), else "".
	// BlockStored only.
	Salt string
}

// StepOutput is the result of one engine step. It is reused by the next
// step: copy what you keep.
// It belongs to the Engine, which is not safe for concurrent use.
type StepOutput struct {
	// Start and End are the step's engine times.
	Start, End time.Duration
	Tokens     []TokenEvent
	// Events are the KV events of the step, in the order vLLM produces
	// them (evictions before the stores that needed the space).
	Events []KVEvent
	// Batch sizes of the step.
	PrefillTokens, DecodeSeqs int
}

// Counters are the engine's cumulative counters, named after vLLM metrics.
// It is a plain value, safe to copy and to read from several goroutines.
type Counters struct {
	PromptTokens     int64    // vllm:prompt_tokens_total
	GenerationTokens int64    // vllm:generation_tokens_total
	PrefixQueries    int64    // vllm:prefix_cache_queries_total (tokens)
	PrefixHits       int64    // vllm:prefix_cache_hits_total (tokens)
	ExternalQueries  int64    // vllm:external_prefix_cache_queries_total
	ExternalHits     int64    // vllm:external_prefix_cache_hits_total
	Preemptions      int64    // vllm:num_preemptions_total
	Finished         [4]int64 // by FinishReason (vllm:request_success_total)
	Steps            int64
}

// Stats is a snapshot of the engine's load.
// It is a plain value, safe to copy and to read from several goroutines.
type Stats struct {
	Running, Waiting int
	// WaitingRemote counts P/D decode requests waiting for their KV.
	WaitingRemote int
	// Held counts finished P/D prefills still holding blocks.
	Held       int
	FreeBlocks int
	NumBlocks  int
	// KVUsage is vllm:kv_cache_usage_perc (0..1).
	KVUsage float64
	Counters
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// ID returns the engine id.
func (e *Engine) ID() string { return e.id }

// Stats returns a snapshot of the engine's load and counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Running: len(e.running), Waiting: len(e.waiting), WaitingRemote: len(e.remote),
		Held: len(e.held), FreeBlocks: e.pool.numFree, NumBlocks: len(e.pool.blocks),
		KVUsage: e.pool.usage(), Counters: e.stats,
	}
}

// Add enqueues a request at engine time now and returns its sequence.
func (e *Engine) Add(req *Request, now time.Duration) (*Seq, error) {
	n := len(req.Prompt)
	switch {
	case n == 0:
		return nil, ErrEmptyPrompt
	case req.MaxTokens < 1:
		return nil, fmt.Errorf("%w: got %d", ErrBadMaxTokens, req.MaxTokens)
	case req.MaxTokens > e.cfg.MaxModelLen-n: // not n+MaxTokens, which can overflow
		return nil, fmt.Errorf("%w: %d prompt + %d output tokens > max_model_len %d", ErrPromptTooLong, n, req.MaxTokens, e.cfg.MaxModelLen)
	case (n+req.MaxTokens+e.cfg.BlockSize-1)/e.cfg.BlockSize > e.cfg.NumBlocks:
		return nil, fmt.Errorf("%w: %d tokens, %d blocks of %d", ErrTooLargeForCache, n+req.MaxTokens, e.cfg.NumBlocks, e.cfg.BlockSize)
	case req.LoRA != "" && e.loraIDs[req.LoRA] == 0:
		return nil, fmt.Errorf("%w: %q", ErrUnknownLoRA, req.LoRA)
	}
	s := &Seq{Req: req, promptLen: n, Arrival: now}
	if cap(req.Prompt)-n >= req.MaxTokens {
		s.tokens = req.Prompt[:n] // output goes into the spare capacity
	} else {
		s.tokens = make([]uint32, n, n+min(req.MaxTokens, 4096))
		copy(s.tokens, req.Prompt)
	}
	s.seed = req.Seed
	if s.seed == 0 {
		s.seed = promptSeed(req.Prompt, e.seed)
	}
	s.outputLen = req.MaxTokens
	if !req.IgnoreEOS && !req.RemoteDecode {
		s.outputLen = 1 + int(mix64(s.seed, 0xe05)%uint64(req.MaxTokens))
	}
	if req.RemoteDecode {
		s.outputLen = 1
	}
	e.waiting = append(e.waiting, s)
	return s, nil
}

// promptSeed derives a request's output seed from its prompt, so identical
// prompts produce identical outputs.
func promptSeed(p []uint32, seed uint64) uint64 {
	var buf [256]byte
	h := xxh3.New()
	for len(p) > 0 {
		n := min(len(p), len(buf)/4)
		for i, x := range p[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], x)
		}
		_, _ = h.Write(buf[:4*n])
		p = p[n:]
	}
	return mix64(h.Sum64(), seed^0x5851f42d4c957f2d)
}

func mix64(a, b uint64) uint64 {
	x := a ^ (b * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Abort cancels a sequence (client disconnect): it leaves the queues, its
// blocks are freed (cached ones stay cached, unreferenced), and it counts as
// finished with "abort". Aborting a finished sequence does nothing. Abort
// may be called between Schedule and Complete; the aborted sequence then
// produces no token.
func (e *Engine) Abort(s *Seq) {
	if s.finish != NotFinished {
		return
	}
	e.waiting = removeSeq(e.waiting, s)
	e.running = removeSeq(e.running, s)
	e.remote = removeSeq(e.remote, s)
	s.finish = FinishAbort
	e.stats.Finished[FinishAbort]++
	e.pool.free(s.blocks)
	s.blocks = s.blocks[:0]
}

func removeSeq(q []*Seq, s *Seq) []*Seq {
	for i, x := range q {
		if x == s {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// Release frees the blocks a finished P/D prefill (RemoteDecode) holds for
// request id, as vLLM does when the decode engine has pulled them. It
// reports whether such a request was held.
func (e *Engine) Release(id string) bool {
	s, ok := e.held[id]
	if !ok {
		return false
	}
	delete(e.held, id)
	e.pool.free(s.blocks)
	s.blocks = s.blocks[:0]
	return true
}

// HasWork reports whether Schedule would run a step at time now.
func (e *Engine) HasWork(now time.Duration) bool {
	if len(e.waiting) > 0 || len(e.running) > 0 {
		return true
	}
	for _, s := range e.remote {
		if s.readyAt <= now {
			return true
		}
	}
	return false
}

// NextWake returns the earliest future time at which the engine has
// something to do without new input: a remote KV transfer completing or a
// held P/D lease expiring. ok is false if there is none.
func (e *Engine) NextWake() (t time.Duration, ok bool) {
	for _, s := range e.remote {
		if !ok || s.readyAt < t {
			t, ok = s.readyAt, true
		}
	}
	for _, s := range e.held {
		if !ok || s.readyAt < t {
			t, ok = s.readyAt, true
		}
	}
	return t, ok
}

// Schedule picks the next batch at engine time now and returns how long the
// step takes. ok is false when there is nothing to run; then Complete must
// not be called. Blocks are allocated (evicting LRU cached blocks) and newly
// full blocks are registered in the prefix cache here, as in vLLM, so a
// request added during the step can hit them.
func (e *Engine) Schedule(now time.Duration) (d time.Duration, ok bool) {
	if e.inStep {
		return 0, false
	}
	e.out.Tokens = e.out.Tokens[:0]
	if !e.carry {
		e.out.Events = e.out.Events[:0]
		e.keys = e.keys[:0]
	}
	e.stepped = e.stepped[:0]
	e.expireLeases(now)
	e.promoteRemote(now)

	budget := e.cfg.MaxBatchedTokens
	prefill, decodeSeqs, ctx := 0, 0, 0
	preempted := false
	// Running requests first, in order.
	for i := 0; i < len(e.running) && budget > 0; i++ {
		s := e.running[i]
		n := min(len(s.tokens)-s.numComputed, budget)
		if n <= 0 {
			continue
		}
		for !e.allocate(s, s.numComputed+n, 0) {
			// Preempt the lowest-priority (last) running request.
			victim := e.running[len(e.running)-1]
			e.running = e.running[:len(e.running)-1]
			e.preempt(victim)
			preempted = true
			if victim == s {
				n = 0
				break
			}
		}
		if n == 0 {
			break
		}
		e.schedule(s, n)
		budget -= n
		if n == 1 && s.numOutput > 0 && s.numComputed == len(s.tokens)-1 {
			decodeSeqs++
			ctx += s.numComputed + n
		} else {
			prefill += n
		}
	}
	// Then the waiting queue, FIFO, unless this step preempted.
	if e.loraIDs != nil {
		e.loras = appendLoRAs(e.loras[:0], e.stepped)
	}
	for i := 0; !preempted && i < len(e.waiting) && budget > 0 && len(e.running) < e.cfg.MaxNumSeqs; {
		s := e.waiting[i]
		// As vLLM V1's Scheduler.schedule: a request whose adapter would
		// exceed max_loras is skipped, not waited for. The scan goes on to
		// the requests behind it (base-model requests and those of adapters
		// already in the batch), and the skipped ones stay at the head of
		// the queue in their order (vLLM pops them into
		// skipped_waiting_requests and prepends them back after the loop).
		if !e.loraFits(s.Req.LoRA) {
			i++
			continue
		}
		hitBlocks := 0
		if !s.admitted || s.numComputed == 0 {
			hitBlocks = e.prefixHit(s)
		}
		if s.Req.RemotePrefill && !s.admitted {
			if !e.admitRemote(s, now, hitBlocks) {
				break
			}
			e.popWaiting(i)
			continue
		}
		computed := hitBlocks * e.cfg.BlockSize
		n := min(len(s.tokens)-computed, budget)
		if !e.allocate(s, computed+n, hitBlocks) {
			break
		}
		e.popWaiting(i)
		e.admit(s, now, computed)
		e.running = append(e.running, s)
		e.schedule(s, n)
		if s.Req.LoRA != "" && !slices.Contains(e.loras, s.Req.LoRA) {
			e.loras = append(e.loras, s.Req.LoRA)
		}
		budget -= n
		prefill += n
	}
	if len(e.stepped) == 0 {
		// Keep events of a step that ran nothing (a remote transfer landed
		// but its sequence could not be scheduled) for the next one.
		e.carry = len(e.out.Events) > 0
		return 0, false
	}
	e.carry = false
	e.inStep = true
	e.stats.Steps++
	e.out.Start = now
	e.out.PrefillTokens, e.out.DecodeSeqs = prefill, decodeSeqs
	d = e.cfg.StepOverhead +
		time.Duration(float64(prefill)/e.cfg.PrefillTokensPerSec*float64(time.Second)) +
		time.Duration(decodeSeqs)*e.cfg.DecodePerSeq +
		time.Duration(ctx)*e.cfg.DecodePerContextToken
	return d, true
}

// popWaiting removes e.waiting[i], keeping the order of the others.
func (e *Engine) popWaiting(i int) {
	if i == 0 {
		e.waiting = e.waiting[1:]
		return
	}
	e.waiting = slices.Delete(e.waiting, i, i+1)
}

// loraFits reports whether a request for adapter lora may join the batch
// whose adapters are e.loras: it has none, its adapter is already there, or
// there are fewer than Config.LoRA.MaxLoRAs.
func (e *Engine) loraFits(lora string) bool {
	return lora == "" || len(e.loras) < e.cfg.LoRA.MaxLoRAs || slices.Contains(e.loras, lora)
}

// appendLoRAs appends the distinct adapters of seqs not yet in dst, in
// order of first appearance.
func appendLoRAs(dst []string, seqs []*Seq) []string {
	for _, s := range seqs {
		if l := s.Req.LoRA; l != "" && !slices.Contains(dst, l) {
			dst = append(dst, l)
		}
	}
	return dst
}

// LoRAs returns the distinct adapters of the running requests and of the
// waiting ones (including P/D decode requests waiting for their KV), each
// in order of first appearance: the running_lora_adapters and
// waiting_lora_adapters of vllm:lora_requests_info. An adapter can be in
// both.
func (e *Engine) LoRAs() (running, waiting []string) {
	running = appendLoRAs(nil, e.running)
	waiting = appendLoRAs(nil, e.waiting)
	waiting = appendLoRAs(waiting, e.remote)
	return running, waiting
}

func (e *Engine) admit(s *Seq, now time.Duration, computed int) {
	s.hitIDs = nil
	if !s.admitted {
		s.admitted = true
		s.Admitted = now
		s.localHit = computed
		e.stats.PrefixQueries += int64(len(s.tokens))
		e.stats.PrefixHits += int64(computed)
	}
	s.numComputed = computed
}

func (e *Engine) schedule(s *Seq, n int) {
	s.scheduled = n
	e.stepped = append(e.stepped, s)
	e.cacheFull(s, s.numComputed+n)
}

// prefixHit returns the number of leading full blocks of s cached, capped
// so that at least one token is left to compute (vLLM's
// max_cache_hit_length = num_tokens - 1).
func (e *Engine) prefixHit(s *Seq) int {
	if e.cfg.DisablePrefixCaching {
		return 0
	}
	maxBlocks := (len(s.tokens) - 1) / e.cfg.BlockSize
	e.ensureHashes(s, maxBlocks)
	// A request stuck at the head of the queue is looked up every step:
	// revalidate its previous hit by block id (cheap) instead of by key.
	hits := s.hitIDs[:0]
	for i, id := range s.hitIDs {
		b := &e.pool.blocks[id]
		if i >= maxBlocks || !b.hashed || b.key != s.keys[i] {
			break
		}
		hits = append(hits, id)
	}
	for n := len(hits); n < maxBlocks; n++ {
		id, ok := e.pool.lookup(s.keys[n])
		if !ok {
			break
		}
		hits = append(hits, id)
	}
	s.hitIDs = hits
	e.hitIDs = hits
	return len(hits)
}

func (e *Engine) ensureHashes(s *Seq, nblocks int) {
	bs := e.cfg.BlockSize
	if cap(s.keys) < nblocks {
		s.keys = slices.Grow(s.keys, (s.promptLen+s.outputLen)/bs+1-len(s.keys))
	}
	for len(s.keys) < nblocks {
		i := len(s.keys)
		salt := ""
		if i == 0 {
			salt = s.Req.CacheSalt
		}
		if s.Req.LoRA != "" {
			s.tail = e.loraHasher.HashBlockLoRA(s.tail, s.tokens[i*bs:(i+1)*bs], s.Req.LoRA, salt)
		} else {
			s.tail = e.hasher.HashBlock(s.tail, s.tokens[i*bs:(i+1)*bs], salt)
		}
		s.keys = append(s.keys, s.tail.Key())
	}
}

// allocate makes s hold enough blocks for upTo tokens. For a sequence being
// admitted, its first hitBlocks blocks are the cached ones. It reports false
// (changing nothing) when the pool cannot supply them.
func (e *Engine) allocate(s *Seq, upTo, hitBlocks int) bool {
	bs := e.cfg.BlockSize
	need := (upTo + bs - 1) / bs
	have := len(s.blocks)
	if hitBlocks > 0 {
		have = hitBlocks
	}
	newBlocks := need - have
	if newBlocks < 0 {
		newBlocks = 0
	}
	// Cached hit blocks that sit in the free queue stop being evictable.
	hits := e.hitIDs[:hitBlocks]
	evictableHits := 0
	for _, id := range hits {
		if e.pool.blocks[id].ref == 0 {
			evictableHits++
		}
	}
	if newBlocks > e.pool.numFree-evictableHits {
		return false
	}
	for _, id := range hits {
		e.pool.touch(id)
		s.blocks = append(s.blocks, id)
	}
	if hitBlocks > 0 {
		s.numCached = hitBlocks
		if s.Req.ReportCachedBlocks && !e.cfg.DisablePrefixCaching {
			bs := e.cfg.BlockSize
			start := len(e.keys)
			e.keys = append(e.keys, s.keys[:hitBlocks]...)
			e.out.Events = append(e.out.Events, e.stored(s, KVEvent{
				Kind: BlockStored, Keys: e.keys[start:len(e.keys):len(e.keys)],
				Tokens: s.tokens[: hitBlocks*bs : hitBlocks*bs], BlockSize: bs,
			}))
		}
	}
	s.blocks = e.pool.allocate(s.blocks, newBlocks)
	e.drainEvictions()
	return true
}

func (e *Engine) drainEvictions() {
	for _, k := range e.pool.evicted {
		start := len(e.keys)
		e.keys = append(e.keys, k)
		e.out.Events = append(e.out.Events, KVEvent{Kind: BlockRemoved, Keys: e.keys[start:len(e.keys):len(e.keys)]})
	}
	e.pool.evicted = e.pool.evicted[:0]
}

// cacheFull registers the full blocks covering the first upTo tokens of s
// (tokens whose ids are known) and emits one BlockStored for them.
func (e *Engine) cacheFull(s *Seq, upTo int) {
	if e.cfg.DisablePrefixCaching {
		return
	}
	bs := e.cfg.BlockSize
	full := min(upTo, len(s.tokens)) / bs
	if full <= s.numCached {
		return
	}
	e.ensureHashes(s, full)
	start := len(e.keys)
	for i := s.numCached; i < full; i++ {
		k := s.keys[i]
		e.pool.cache(s.blocks[i], k)
		e.keys = append(e.keys, k)
	}
	ev := KVEvent{
		Kind:      BlockStored,
		Keys:      e.keys[start:len(e.keys):len(e.keys)],
		Tokens:    s.tokens[s.numCached*bs : full*bs : full*bs],
		BlockSize: bs,
	}
	if s.numCached > 0 {
		ev.Parent, ev.HasParent = s.keys[s.numCached-1], true
	}
	e.out.Events = append(e.out.Events, e.stored(s, ev))
	s.numCached = full
}

// stored fills in the request-level fields of a BlockStored event of s.
func (e *Engine) stored(s *Seq, ev KVEvent) KVEvent {
	if l := s.Req.LoRA; l != "" {
		ev.LoRA, ev.LoRAID = l, e.loraIDs[l]
	}
	if !ev.HasParent {
		ev.Salt = s.Req.CacheSalt
	}
	return ev
}

func (e *Engine) preempt(s *Seq) {
	e.pool.free(s.blocks)
	s.blocks = s.blocks[:0]
	s.numComputed = 0
	s.numCached = 0
	s.scheduled = 0
	s.preempted++
	e.stats.Preemptions++
	e.waiting = append([]*Seq{s}, e.waiting...)
}

// admitRemote admits a P/D decode request: it allocates blocks for the whole
// prompt and starts the transfer of the blocks not cached locally.
func (e *Engine) admitRemote(s *Seq, now time.Duration, hitBlocks int) bool {
	if len(e.running)+len(e.remote) >= e.cfg.MaxNumSeqs {
		return false
	}
	if !e.allocate(s, s.promptLen, hitBlocks) {
		return false
	}
	local := hitBlocks * e.cfg.BlockSize
	e.admit(s, now, local)
	xfer := len(s.blocks) - hitBlocks
	s.remoteHit = s.promptLen - local
	e.stats.ExternalQueries += int64(s.promptLen - local)
	e.stats.ExternalHits += int64(s.remoteHit)
	s.readyAt = now + time.Duration(xfer)*e.cfg.TransferPerBlock
	e.remote = append(e.remote, s)
	return true
}

// promoteRemote moves decode requests whose KV has arrived to running: all
// prompt tokens but the last count as computed, as in vLLM.
func (e *Engine) promoteRemote(now time.Duration) {
	if len(e.remote) == 0 {
		return
	}
	if e.loraIDs != nil {
		e.loras = appendLoRAs(e.loras[:0], e.running)
	}
	j := 0
	for _, s := range e.remote {
		if s.readyAt > now || len(e.running) >= e.cfg.MaxNumSeqs || !e.loraFits(s.Req.LoRA) {
			e.remote[j] = s
			j++
			continue
		}
		s.numComputed = s.promptLen - 1
		e.cacheFull(s, s.numComputed)
		e.running = append(e.running, s)
		if s.Req.LoRA != "" && !slices.Contains(e.loras, s.Req.LoRA) {
			e.loras = append(e.loras, s.Req.LoRA)
		}
	}
	clear(e.remote[j:])
	e.remote = e.remote[:j]
}

func (e *Engine) expireLeases(now time.Duration) {
	if len(e.held) == 0 {
		return
	}
	var expired []*Seq
	for _, s := range e.held {
		if s.readyAt <= now {
			expired = append(expired, s)
		}
	}
	// Free in a deterministic order: the free queue's order decides evictions.
	slices.SortFunc(expired, func(a, b *Seq) int {
		if c := cmp.Compare(a.readyAt, b.readyAt); c != 0 {
			return c
		}
		return strings.Compare(a.Req.ID, b.Req.ID)
	})
	for _, s := range expired {
		e.Release(s.Req.ID)
	}
}

// Complete finishes the step started by Schedule at engine time now (which
// should be the start plus the returned duration): scheduled tokens become
// computed, sequences whose prompt is done sample a token, and finished
// sequences free their blocks. The returned output is valid until the next
// Schedule.
func (e *Engine) Complete(now time.Duration) *StepOutput {
	if !e.inStep {
		e.out.Tokens = e.out.Tokens[:0]
		return &e.out
	}
	e.inStep = false
	e.out.End = now
	finished := false
	for _, s := range e.stepped {
		if s.finish != NotFinished { // aborted during the step
			continue
		}
		s.numComputed += s.scheduled
		s.scheduled = 0
		if s.numComputed < len(s.tokens) {
			continue // partial prefill chunk
		}
		tok := e.cfg.VocabLow + uint32(mix64(s.seed, uint64(s.numOutput+1))%uint64(e.cfg.VocabSize))
		s.tokens = append(s.tokens, tok)
		s.numOutput++
		e.stats.GenerationTokens++
		ev := TokenEvent{Seq: s, Token: tok, First: s.numOutput == 1}
		if ev.First {
			s.FirstToken = now
			e.stats.PromptTokens += int64(s.promptLen)
		}
		s.LastToken = now
		if s.numOutput >= s.outputLen {
			ev.Finish = FinishLength
			if s.outputLen < s.Req.MaxTokens && !s.Req.RemoteDecode {
				ev.Finish = FinishStop
			}
		} else if len(s.tokens) >= e.cfg.MaxModelLen {
			ev.Finish = FinishLength
		}
		if ev.Finish != NotFinished {
			s.finish = ev.Finish
			e.stats.Finished[ev.Finish]++
			finished = true
			if s.Req.RemoteDecode {
				s.readyAt = now + e.cfg.KVLease
				if old, ok := e.held[s.Req.ID]; ok { // duplicate id: free the older hold
					delete(e.held, s.Req.ID)
					e.pool.free(old.blocks)
					old.blocks = old.blocks[:0]
				}
				e.held[s.Req.ID] = s
			} else {
				e.pool.free(s.blocks)
				s.blocks = s.blocks[:0]
			}
		}
		e.out.Tokens = append(e.out.Tokens, ev)
	}
	if finished {
		j := 0
		for _, s := range e.running {
			if s.finish == NotFinished {
				e.running[j] = s
				j++
			}
		}
		clear(e.running[j:])
		e.running = e.running[:j]
	}
	return &e.out
}

// CachedPrefix returns how many of keys, from the first, are cached
// (referenced or evictable): the prefix hit a request with these block keys
// would get now. It is the oracle view of the cache.
func (e *Engine) CachedPrefix(keys []uint64) int {
	if e.cfg.DisablePrefixCaching {
		return 0
	}
	for i, k := range keys {
		if _, ok := e.pool.lookup(k); !ok {
			return i
		}
	}
	return len(keys)
}

// Cached reports whether the block with key is in the prefix cache.
func (e *Engine) Cached(key uint64) bool {
	_, ok := e.pool.lookup(key)
	return ok
}

// NumCachedBlocks returns the number of distinct cached block keys.
func (e *Engine) NumCachedBlocks() int { return e.pool.cached.n }

// RangeCached calls f for each cached block key until f returns false.
func (e *Engine) RangeCached(f func(key uint64) bool) {
	e.pool.cached.rangeKeys(f)
}

// BlockKeys appends to dst the keys of the full blocks of tokens as this
// engine identifies them for a request with adapter lora ("" for none) and
// salt (on the first block). An adapter needs Config.LoRA (any name is
// hashed, served or not); without, lora is ignored.
func (e *Engine) BlockKeys(dst []uint64, tokens []uint32, lora, salt string) []uint64 {
	bs := e.cfg.BlockSize
	var parent Hash
	for i := 0; (i+1)*bs <= len(tokens); i++ {
		s := ""
		if i == 0 {
			s = salt
		}
		if lora != "" && e.loraHasher != nil {
			parent = e.loraHasher.HashBlockLoRA(parent, tokens[i*bs:(i+1)*bs], lora, s)
		} else {
			parent = e.hasher.HashBlock(parent, tokens[i*bs:(i+1)*bs], s)
		}
		dst = append(dst, parent.Key())
	}
	return dst
}

// ResetPrefixCache drops every cached identity and returns the
// AllBlocksCleared event, like vLLM's reset_prefix_cache. As in vLLM it
// fails (returns false) while any request holds blocks.
func (e *Engine) ResetPrefixCache() (KVEvent, bool) {
	if e.pool.numFree != len(e.pool.blocks) {
		return KVEvent{}, false
	}
	e.pool.clear()
	return KVEvent{Kind: AllBlocksCleared}, true
}
