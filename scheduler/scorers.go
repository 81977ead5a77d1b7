package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/routekit/routekit/pool"
)

// minMaxLow writes, for each value, (max − v)/(max − min): 1 for the lowest, 0
// for the highest, 1 for everyone when all are equal.
func minMaxLow(n int, val func(int) float64, out []float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range n {
		v := val(i)
		lo, hi = min(lo, v), max(hi, v)
	}
	for i := range n {
		if hi == lo {
			out[i] = 1
		} else {
			out[i] = (hi - val(i)) / (hi - lo)
		}
	}
}

// QueueDepth scores endpoints by their scraped waiting queue q
// (vllm:num_requests_waiting), min-max normalised over the candidates:
//
//	score = (max q − q) / (max q − min q), and 1 for all when every q is equal.
//
// It is llm-d's queue-scorer. Safe for concurrent use.
func QueueDepth() Scorer { return queueDepth{} }

type queueDepth struct{}

func (queueDepth) Name() string { return "queue-depth" }

func (queueDepth) Score(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
	minMaxLow(len(cands), func(i int) float64 { return float64(cands[i].Metrics().Waiting) }, out)
	return nil
}

// RunningRequests scores endpoints by their scraped running requests r
// (vllm:num_requests_running), min-max normalised like [QueueDepth]:
//
//	score = (max r − r) / (max r − min r), and 1 for all when every r is equal.
//
// Safe for concurrent use.
func RunningRequests() Scorer { return runningRequests{} }

type runningRequests struct{}

func (runningRequests) Name() string { return "running-requests" }

func (runningRequests) Score(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
	minMaxLow(len(cands), func(i int) float64 { return float64(cands[i].Metrics().Running) }, out)
	return nil
}

// InFlight scores endpoints by the gateway's own in-flight requests n
// (pool.Load.Requests: dispatched and not ended, fresher than any scrape),
// min-max normalised:
//
//	score = (max n − n) / (max n − min n), and 1 for all when every n is equal.
//
// Alone, with [MaxScore], it is "least loaded". Safe for concurrent use.
func InFlight() Scorer { return inFlight{} }

type inFlight struct{}

func (inFlight) Name() string { return "in-flight" }

func (inFlight) Score(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
	minMaxLow(len(cands), func(i int) float64 { return float64(cands[i].Load().Requests) }, out)
	return nil
}

// KVCacheUtilization scores endpoints by free KV cache:
//
//	score = 1 − u, with u = vllm:kv_cache_usage_perc as a fraction, read as 0 below
//	0 and 1 above 1 (a metric outside [0,1] is the server's quirk, not a score bug).
//
// It is llm-d's kv-cache-utilization-scorer. Safe for concurrent use.
func KVCacheUtilization() Scorer { return kvUtil{} }

type kvUtil struct{}

func (kvUtil) Name() string { return "kv-cache-utilization" }

func (kvUtil) Score(_ context.Context, _ *Request, cands []Candidate, out []float64) error {
	for i := range cands {
		u := cands[i].Metrics().KVCacheUsage
		if !(u >= 0) { // NaN or negative
			u = 0
		}
		out[i] = 1 - min(u, 1)
	}
	return nil
}

// DefaultTokenCapacity is [TokenLoad]'s default capacity Q: 128 requests of 32K
// tokens, as llm-d's token-load-scorer (queueThresholdTokens).
const DefaultTokenCapacity = 4_194_304

// TokenLoad scores endpoints by the prefill work they would have if chosen: the
// uncached prompt tokens already in flight to them (pool.Load.UncachedTokens)
// plus this request's uncached tokens there (its prompt minus the candidate's
// matched prefix), against a capacity Q:
//
//	score = 1 − min(1, (inflightUncached + promptLen − cachedTokens) / Q)
//
// capacity ≤ 0 means [DefaultTokenCapacity]. It is llm-d's token-load-scorer.
// Safe for concurrent use.
func TokenLoad(capacity int) Scorer {
	if capacity <= 0 {
		capacity = DefaultTokenCapacity
	}
	return tokenLoad{q: float64(capacity)}
}

type tokenLoad struct{ q float64 }

func (tokenLoad) Name() string { return "token-load" }

func (s tokenLoad) Score(_ context.Context, req *Request, cands []Candidate, out []float64) error {
	for i := range cands {
		t := float64(cands[i].Load().UncachedTokens) + float64(req.UncachedTokens(cands[i].Prefix.Blocks))
		out[i] = 1 - min(1, max(t, 0)/s.q)
	}
	return nil
}

// TierWeights weigh a prefix match by where its blocks are: a block that must be
// loaded from CPU memory or shared storage saves less prefill than one in GPU
// memory. The zero value means the defaults: GPU 1.0, CPU 0.8, Storage 0.5.
// It is a plain value, safe to copy and to read from several goroutines.
type TierWeights struct{ GPU, CPU, Storage float64 }

// DefaultTierWeights are the weights used for a zero [TierWeights].
var DefaultTierWeights = TierWeights{GPU: 1, CPU: 0.8, Storage: 0.5}

func (w TierWeights) orDefault() TierWeights {
	if w == (TierWeights{}) {
		return DefaultTierWeights
	}
	return w
}

func (w TierWeights) valid() error {
	for _, v := range []float64{w.GPU, w.CPU, w.Storage} {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("scheduler: tier weight %v, want a value in [0,1]", v)
		}
	}
	return nil
}

// of returns the tier-weighted number of matched blocks.
func (w TierWeights) of(m PrefixMatch) float64 {
	return w.GPU*float64(m.GPU) + w.CPU*float64(m.CPU) + w.Storage*float64(m.Storage)
}

// Prefix scores endpoints by how much of the prompt they already hold, from
// [Candidate.Prefix] (filled by the scheduler's [PrefixIndex]: a precise index
// fed by KV events, or an approximate one learned from routing decisions):
//
//	score = (w_gpu·gpuBlocks + w_cpu·cpuBlocks + w_storage·storageBlocks) / len(req.BlockKeys)
//
// counting only blocks consecutive from block 0; 0 for every endpoint when the
// request has no block keys. A zero w means [DefaultTierWeights]; weights must be
// in [0,1]. With every block in GPU memory it is llm-d's prefix-cache-scorer
// at its default matchLengthWeight 0 (matchBlocks/totalBlocks); llm-d's
// optional absolute-length term (matchLengthWeight, matchLengthScaleTokens) is
// not offered. The GPU and CPU weights are those of llm-d's precise scorer;
// Storage 0.5 is routekit's own. Safe for concurrent use.
func Prefix(w TierWeights) (Scorer, error) {
	w = w.orDefault()
	if err := w.valid(); err != nil {
		return nil, err
	}
	return prefixScorer{w: w}, nil
}

type prefixScorer struct{ w TierWeights }

func (prefixScorer) Name() string { return "prefix" }

func (s prefixScorer) Score(_ context.Context, req *Request, cands []Candidate, out []float64) error {
	n := len(req.BlockKeys)
	for i := range cands {
		if n == 0 {
			out[i] = 0
			continue
		}
		out[i] = min(s.w.of(cands[i].Prefix)/float64(n), 1)
	}
	return nil
}

// LoRAAffinity scores endpoints by whether they can serve the request's LoRA
// adapter without swapping (from vllm:lora_requests_info):
//
//	1.0  the adapter is running on the endpoint
//	0.8  the endpoint has a free adapter slot (running + waiting < max_lora)
//	0.6  the adapter is waiting on the endpoint
//	0.0  otherwise
//
// These are llm-d's lora-affinity-scorer values, checked in the same order (a
// free slot outranks the adapter merely waiting). Two deliberate differences:
// every endpoint scores 1 for a request without an adapter (llm-d looks the base
// model up among the adapters, so base-model requests score 0.8 where a LoRA
// slot is free and 0 elsewhere, steering them by a resource they do not use);
// and an endpoint that does not report LoRA metrics scores 0.8 if it lists the
// adapter in pool.Endpoint.LoRAAdapters, else 0 (llm-d: 0). Safe for
// concurrent use.
func LoRAAffinity() Scorer { return loraAffinity{} }

type loraAffinity struct{}

func (loraAffinity) Name() string { return "lora-affinity" }

func (loraAffinity) Score(_ context.Context, req *Request, cands []Candidate, out []float64) error {
	for i := range cands {
		out[i] = loraScore(req.LoRA, &cands[i])
	}
	return nil
}

func loraScore(adapter string, c *Candidate) float64 {
	if adapter == "" {
		return 1
	}
	m := c.Metrics()
	if !m.Has(pool.FieldLoRA) {
		if slices.Contains(c.LoRAAdapters, adapter) {
			return 0.8
		}
		return 0
	}
	switch {
	case slices.Contains(m.RunningLoRAs, adapter):
		return 1
	case len(m.RunningLoRAs)+len(m.WaitingLoRAs) < m.MaxLoRA:
		return 0.8
	case slices.Contains(m.WaitingLoRAs, adapter):
		return 0.6
	}
	return 0
}

// SessionAffinity keeps a conversation on the endpoint that served its previous
// turn (where its KV cache is). It remembers, per [Request.Session], the endpoint
// chosen last (it is an [Observer]) for ttl after that choice:
//
//	score = 1 for the session's endpoint, 0 for the others (0 for all without a
//	session or a live binding).
//
// At most maxSessions bindings are kept (the least recently bound is dropped
// first). ttl ≤ 0 means 5 minutes, maxSessions ≤ 0 means 100,000; now is the
// clock (nil: time.Now). It is llm-d's session-affinity-scorer with its
// session_id strategy (300 s TTL); the caller reads the session header into
// [Request.Session]. Safe for concurrent use.
func SessionAffinity(ttl time.Duration, maxSessions int, now func() time.Time) *Sessions {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if maxSessions <= 0 {
		maxSessions = 100_000
	}
	if now == nil {
		now = time.Now
	}
	return &Sessions{ttl: ttl, max: maxSessions, now: now, m: make(map[string]*binding)}
}

// Sessions is the session-affinity scorer returned by [SessionAffinity]. It is
// safe for concurrent use.
type Sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu   sync.Mutex // guards m, head
	m    map[string]*binding
	head binding // sentinel of a doubly linked list, most recent first
}

type binding struct {
	session    string
	endpoint   string
	expires    time.Time
	prev, next *binding
}

// Name returns "session-affinity".
func (*Sessions) Name() string { return "session-affinity" }

// Score implements [Scorer].
func (s *Sessions) Score(_ context.Context, req *Request, cands []Candidate, out []float64) error {
	clear(out)
	if req.Session == "" {
		return nil
	}
	id, ok := s.Lookup(req.Session)
	if !ok {
		return nil
	}
	for i := range cands {
		if cands[i].ID == id {
			out[i] = 1
		}
	}
	return nil
}

// Lookup returns the endpoint ID bound to session, if the binding is live.
func (s *Sessions) Lookup(session string) (string, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[session]
	if !ok {
		return "", false
	}
	if !now.Before(b.expires) {
		s.unlink(b)
		delete(s.m, session)
		return "", false
	}
	return b.endpoint, true
}

// Observe binds the request's session to the chosen endpoint.
func (s *Sessions) Observe(req *Request, res *Result) {
	if req.Session == "" || res.Endpoint == nil {
		return
	}
	exp := s.now().Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head.next == nil {
		s.head.next, s.head.prev = &s.head, &s.head
	}
	b, ok := s.m[req.Session]
	if ok {
		s.unlink(b)
		b.endpoint, b.expires = res.Endpoint.ID, exp
	} else {
		b = &binding{session: req.Session, endpoint: res.Endpoint.ID, expires: exp}
		s.m[req.Session] = b
	}
	b.next, b.prev = s.head.next, &s.head
	s.head.next.prev = b
	s.head.next = b
	for len(s.m) > s.max {
		old := s.head.prev
		s.unlink(old)
		delete(s.m, old.session)
	}
}

// Len returns the number of bindings held (live or not yet swept).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Sessions) unlink(b *binding) {
	if b.prev != nil {
		b.prev.next = b.next
		b.next.prev = b.prev
	}
	b.prev, b.next = nil, nil
}
