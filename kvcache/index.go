package kvcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Index records which endpoints hold which KV blocks, in which tier, and
// answers longest-prefix lookups over chained block keys.
//
// Locations are endpoints (pool.Endpoint.ID strings) and shared storages (any
// name, in a separate namespace). A block stored in a shared storage counts for
// every endpoint attached to it. Endpoints and storages are registered on first
// use; DropEndpoint and DropStorage forget them.
//
// An Index is safe for concurrent use. Lookup takes no lock and never waits for
// writers. Writes for one location are serialized by that location's lock, so
// one goroutine per endpoint (as a KV-event subscriber runs) applies its writes
// in order; writes for different locations proceed in parallel.
type Index struct {
	keyer Keyer
	cfg   config

	shards [numShards]shard

	mu   sync.Mutex               // guards registry changes (adding, dropping, attaching locations)
	reg  atomic.Pointer[registry] // immutable snapshot read by Lookup and writers
	free []uint32                 // location ids free for reuse; guarded by mu

	entries atomic.Int64 // (block, location) entries, confirmed or learned
	learned atomic.Int64 // learned entries
	evicted atomic.Int64 // entries evicted for capacity
	dropped atomic.Int64 // engine hashes that could not be resolved

	scratch sync.Pool // *lookupScratch
	sets    sync.Pool // *keySet, for filterFIFOLocked
}

// Keyer computes our chained block keys from tokens. *prefix.Hasher implements
// it; the Index uses it on Stored to turn a KV event's tokens into keys.
// Implementations must be safe for concurrent use: an Index calls them from
// concurrent Stored calls. A *prefix.Hasher is immutable and is.
type Keyer interface {
	// BlockSize reports the block size in tokens.
	BlockSize() int
	// Root reports the parent key of block 0.
	Root() uint64
	// AppendKeysFrom appends the keys of the full blocks of tokens, chaining
	// from parent; cacheSalt applies only when parent is Root.
	AppendKeysFrom(dst []uint64, parent uint64, tokens []uint32, lora, cacheSalt string) []uint64
}

// Tier is where a location holds a block. Lower tiers are better: a block held
// in several tiers counts in the lowest.
// Tier values are immutable and safe for concurrent use.
type Tier uint8

const (
	// TierGPU is the model server's GPU memory (vLLM medium "GPU").
	TierGPU Tier = iota
	// TierCPU is the server's local CPU offload (vLLM medium "CPU").
	TierCPU
	// TierDisk is the server's local disk offload.
	TierDisk
	// TierShared is a shared storage (for example an LMCache or NIXL store) that
	// every endpoint attached to it can load from. Writes to TierShared go to
	// the storage attached to the writing endpoint.
	TierShared
	// TierLearned is a block presumed in GPU memory because the router sent a
	// request with this prefix to the endpoint (Learn), not confirmed by an event.
	TierLearned

	// NumTiers is the number of tiers, the length of Match.Blocks.
	NumTiers = 5
)

var tierNames = [NumTiers]string{"gpu", "cpu", "disk", "shared", "learned"}

// String returns "gpu", "cpu", "disk", "shared" or "learned".
func (t Tier) String() string {
	if t < NumTiers {
		return tierNames[t]
	}
	return "Tier(" + strconv.Itoa(int(t)) + ")"
}

// ParseMedium maps a KV event's medium to a Tier: "" (null), "GPU", "CUDA" and
// "HBM" are TierGPU, "CPU" and "CPU_PINNED" TierCPU, "DISK" and "LOCAL_DISK"
// TierDisk, and "SHARED", "REMOTE", "LMCACHE", "NIXL" and "STORAGE" TierShared,
// case-insensitively. Other media return ErrMedium.
func ParseMedium(medium string) (Tier, error) {
	switch strings.ToUpper(medium) {
	case "", "GPU", "CUDA", "HBM":
		return TierGPU, nil
	case "CPU", "CPU_PINNED":
		return TierCPU, nil
	case "DISK", "LOCAL_DISK":
		return TierDisk, nil
	case "SHARED", "REMOTE", "LMCACHE", "NIXL", "STORAGE":
		return TierShared, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrMedium, medium)
}

// Match is one endpoint's result of a Lookup: how many blocks, from block 0 and
// without a gap, it holds, each counted in the best tier it holds it in.
// A Match is a plain value, safe to share read-only.
type Match struct {
	// Blocks counts the matched blocks by tier, indexed by Tier.
	Blocks [NumTiers]int32
}

// Total reports the number of consecutive blocks matched from block 0.
func (m Match) Total() int {
	n := 0
	for _, b := range m.Blocks {
		n += int(b)
	}
	return n
}

// Errors returned by the Index. Callers branch on ErrUnknownParent (drop the
// event and, if it persists, resynchronize the endpoint by replay or Clear).
var (
	// ErrUnknownParent is returned by Stored when the event's parent block hash
	// has no key (its store was missed, or evicted long ago). The event is not
	// applied; resynchronize the endpoint (replay, or Clear) if it persists.
	ErrUnknownParent = errors.New("kvcache: unknown parent block hash")
	// ErrBlockSize is returned by Stored when the event's block size is not a
	// multiple of the Keyer's, or its token count is not the block size times
	// its number of hashes.
	ErrBlockSize = errors.New("kvcache: block size mismatch")
	// ErrNoStorage is returned for a TierShared write from an endpoint that is
	// attached to no shared storage; Attach the endpoint first.
	ErrNoStorage = errors.New("kvcache: endpoint attached to no shared storage")
	// ErrTier is returned for a tier the operation does not accept (TierLearned
	// is written only by Learn). It is a caller bug: pass a tier the operation
	// documents.
	ErrTier = errors.New("kvcache: invalid tier")
	// ErrMedium is returned by ParseMedium for a medium it does not know.
	ErrMedium = errors.New("kvcache: unknown medium")
	// ErrEmptyID is returned for an empty endpoint or storage ID. It is a
	// caller bug: give every endpoint and storage a non-empty ID.
	ErrEmptyID = errors.New("kvcache: empty location id")
	// ErrTooManyLocations is returned when more than 2^24-1 endpoints and
	// storages would be registered. Drop endpoints and storages that have left
	// the fleet (DropEndpoint, DropStorage).
	ErrTooManyLocations = errors.New("kvcache: too many locations")
	// ErrShortOutput is returned by Lookup when out is shorter than endpoints.
	// It is a caller bug: size out to len(endpoints).
	ErrShortOutput = errors.New("kvcache: output shorter than endpoints")
)

// DefaultCapacity is the default bound on (block, location) entries.
const DefaultCapacity = 1 << 24

// DefaultLearnedTTL is how long a learned entry lives by default.
const DefaultLearnedTTL = 2 * time.Second

// DefaultLearnedCapacity is the default bound on learned entries per endpoint.
const DefaultLearnedCapacity = 1 << 16

type config struct {
	capacity   int
	learnedTTL time.Duration
	learnedCap int
	clock      func() time.Time
	jump       int
}

// DefaultJumpStride is Lookup's default jump search stride (WithJumpSearch).
const DefaultJumpStride = 64

// Option configures an Index.
// Options are immutable; one may be shared by several New calls, also
// concurrently.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithCapacity bounds the number of (block, location) entries (default
// DefaultCapacity). Past it, writes evict each location's least recently
// stored or learned entries that no Learn or repeated store has touched since (a CLOCK policy),
// starting with locations holding more than their share.
func WithCapacity(entries int) Option { return optionFunc(func(c *config) { c.capacity = entries }) }

// WithLearnedTTL sets how long a learned entry lives (default DefaultLearnedTTL:
// speculative entries that bridge the gap between a routing decision and the
// server's KV events), rounded up to a sixteenth of the TTL. Zero means learned entries never expire and are bounded
// only by their per-endpoint capacity: the approximate mode, for fleets that
// publish no KV events.
func WithLearnedTTL(d time.Duration) Option { return optionFunc(func(c *config) { c.learnedTTL = d }) }

// WithLearnedCapacity bounds learned entries per endpoint (default
// DefaultLearnedCapacity); SetLearnedCapacity overrides it per endpoint, for
// example with the server's num_gpu_blocks.
func WithLearnedCapacity(n int) Option { return optionFunc(func(c *config) { c.learnedCap = n }) }

// WithJumpSearch makes Lookup probe one block every stride blocks instead of
// every block while all candidates keep matching in the same tier, bisecting
// to where one drops out or changes tier (Dynamo's jump search, with the
// binary search inside a jump that Dynamo lists as future work). It is exact when, in each tier, an endpoint holds a prefix of a
// chain, which is what vLLM's prefix cache guarantees (a block is used only
// with its prefix, and freed tail first). Where that does not hold (say a hole
// left by WithCapacity eviction), a match may count up to stride-1 blocks the
// endpoint lacks. It cuts the cost of long prompts by up to the stride. The default is DefaultJumpStride; 0 walks every block, exactly
// whatever the holdings.
func WithJumpSearch(stride int) Option { return optionFunc(func(c *config) { c.jump = stride }) }

// WithClock sets the clock used for learned entries' TTL (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }

// New returns an empty Index. keyer turns KV events' tokens into keys and must
// be configured like the hasher that computes request keys (same model, block
// size); it may be nil if Stored is never called.
func New(keyer Keyer, opts ...Option) (*Index, error) {
	cfg := config{
		capacity:   DefaultCapacity,
		learnedTTL: DefaultLearnedTTL,
		learnedCap: DefaultLearnedCapacity,
		clock:      time.Now,
		jump:       DefaultJumpStride,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	switch {
	case cfg.capacity < 1:
		return nil, fmt.Errorf("kvcache: capacity %d: must be positive", cfg.capacity)
	case cfg.learnedTTL < 0:
		return nil, fmt.Errorf("kvcache: learned TTL %v: must not be negative", cfg.learnedTTL)
	case cfg.learnedCap < 0:
		return nil, fmt.Errorf("kvcache: learned capacity %d: must not be negative", cfg.learnedCap)
	case cfg.clock == nil:
		return nil, errors.New("kvcache: nil clock")
	case cfg.jump < 0 || cfg.jump == 1:
		return nil, fmt.Errorf("kvcache: jump stride %d: must be 0 (off) or at least 2", cfg.jump)
	}
	x := &Index{keyer: keyer, cfg: cfg}
	for i := range x.shards {
		x.shards[i].init()
	}
	x.reg.Store(&registry{
		endpoints: map[string]uint32{},
		storages:  map[string]uint32{},
		locs:      []*location{nil},
		storageOf: []uint32{0},
	})
	x.scratch.New = func() any { return new(lookupScratch) }
	x.sets.New = func() any { return new(keySet) }
	return x, nil
}

// idQuarantine is how many dropped locations' ids wait before one is reused, so
// that a Lookup still holding an older registry snapshot never attributes a
// new endpoint's blocks to a dropped one.
const idQuarantine = 4096

// registry is an immutable snapshot of the locations.
type registry struct {
	endpoints map[string]uint32
	storages  map[string]uint32
	locs      []*location // by id; nil for free ids
	storageOf []uint32    // endpoint id → attached storage id, 0 for none
}

func (r *registry) clone() *registry {
	n := &registry{
		endpoints: make(map[string]uint32, len(r.endpoints)+1),
		storages:  make(map[string]uint32, len(r.storages)+1),
		locs:      append(make([]*location, 0, len(r.locs)+1), r.locs...),
		storageOf: append(make([]uint32, 0, len(r.storageOf)+1), r.storageOf...),
	}
	for k, v := range r.endpoints {
		n.endpoints[k] = v
	}
	for k, v := range r.storages {
		n.storages[k] = v
	}
	return n
}

// location is the writer-side state of one endpoint or storage. The block
// table itself says which blocks the location holds and in which tiers; the
// location keeps only what the table cannot: its keys in insertion order (the
// reverse map for Clear and the CLOCK queue for eviction), its engine hash
// mappings and its learned entries' deadlines.
type location struct {
	mu      sync.Mutex // guards every field below; serializes the location's writes
	id      uint32
	name    string
	storage bool
	dropped bool

	fifo    []uint64          // keys in insertion order; may hold stale keys (filtered lazily)
	head    int               // fifo[head:] is live
	entries int               // blocks this location holds
	engine  map[uint64]uint64 // engine block hash → key; may hold stale mappings (filtered lazily)
	// spans maps an engine hash to all of its keys when the server's block is
	// several of ours (engine holds the last one, the parent of what follows).
	spans map[uint64][]uint64
	// dups counts, per (engine hash, tier), the copies beyond the first that
	// the server reported stored and has not removed yet: vLLM can hold one
	// block hash in several physical blocks and reports each copy's store and
	// removal. Only hashes stored while already held have an entry; a count
	// matters only while the tier still holds the block (see Removed).
	dups map[dupKey]uint32

	learned map[uint64]int64 // learned key → deadline, unique per reference (see Learn; a sequence number without a TTL)
	lq      []learnedRef     // learned keys in learning order, for TTL and capacity
	lqHead  int
	lcap    int
	lseq    int64 // learn counter, the deadline stand-in without a TTL

	keybuf []uint64 // scratch for Stored
	oldbuf []uint8  // scratch for Stored: each key's bits before the write

	// Changes to Index.entries and Index.learned not yet published: one
	// atomic add per write call instead of one per block (see unlock).
	dEntries, dLearned int64
}

// unlock publishes l's pending counter changes and unlocks it. Every write
// section ends with it.
func (x *Index) unlock(l *location) {
	if l.dEntries != 0 {
		x.entries.Add(l.dEntries)
		l.dEntries = 0
	}
	if l.dLearned != 0 {
		x.learned.Add(l.dLearned)
		l.dLearned = 0
	}
	l.mu.Unlock()
}

// dupKey identifies an engine hash in one tier of a location.
type dupKey struct {
	hash uint64
	tier Tier
}

// countCopyLocked records one more stored copy of engine hash h (key k) in
// tier at l: an extra copy if l already held k in tier under the same
// mapping (held is k's bits before the write), else the first one. The
// caller holds l.mu and has not yet updated l.engine[h].
func (l *location) countCopyLocked(h, k uint64, tier Tier, held uint8) {
	if held&(1<<tier) != 0 {
		if old, ok := l.engine[h]; ok && old == k {
			if l.dups == nil {
				l.dups = map[dupKey]uint32{}
			}
			d := dupKey{h, tier}
			if n := l.dups[d]; n < ^uint32(0) {
				l.dups[d] = n + 1
			}
			return
		}
	}
	if len(l.dups) > 0 {
		delete(l.dups, dupKey{h, tier})
	}
}

type learnedRef struct {
	key      uint64
	deadline int64
}

// loc returns the location for name, creating it when create is set.
func (x *Index) loc(name string, storage, create bool) (*location, error) {
	if name == "" {
		return nil, ErrEmptyID
	}
	r := x.reg.Load()
	m := r.endpoints
	if storage {
		m = r.storages
	}
	if id, ok := m[name]; ok {
		return r.locs[id], nil
	}
	if !create {
		return nil, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	r = x.reg.Load()
	m = r.endpoints
	if storage {
		m = r.storages
	}
	if id, ok := m[name]; ok {
		return r.locs[id], nil
	}
	n := r.clone()
	var id uint32
	if len(x.free) > idQuarantine {
		id = x.free[0] // the longest freed: no lookup still resolves to it
		x.free = x.free[1:]
	} else {
		if len(n.locs) > maxLoc {
			return nil, ErrTooManyLocations
		}
		id = uint32(len(n.locs))
		n.locs = append(n.locs, nil)
		n.storageOf = append(n.storageOf, 0)
	}
	l := &location{
		id: id, name: name, storage: storage,
		engine: map[uint64]uint64{}, learned: map[uint64]int64{},
		lcap: x.cfg.learnedCap,
	}
	n.locs[id] = l
	n.storageOf[id] = 0
	if storage {
		n.storages[name] = id
	} else {
		n.endpoints[name] = id
	}
	x.reg.Store(n)
	return l, nil
}

// target returns the location a write for endpoint in tier goes to: the
// endpoint itself, or its attached storage for TierShared.
func (x *Index) target(endpoint string, tier Tier) (ep, t *location, err error) {
	if tier >= TierLearned {
		return nil, nil, fmt.Errorf("%w: %v", ErrTier, tier)
	}
	ep, err = x.loc(endpoint, false, true)
	if err != nil {
		return nil, nil, err
	}
	if tier != TierShared {
		return ep, ep, nil
	}
	r := x.reg.Load()
	sid := r.storageOf[ep.id]
	if sid == 0 {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoStorage, endpoint)
	}
	return ep, r.locs[sid], nil
}

// Add records that endpoint holds the blocks keys in tier (TierShared: its
// attached storage holds them). Adding a block already held is a no-op apart
// from marking it recently used.
func (x *Index) Add(endpoint string, tier Tier, keys []uint64) error {
	_, t, err := x.target(endpoint, tier)
	if err != nil {
		return fmt.Errorf("kvcache: add for %q: %w", endpoint, err)
	}
	t.mu.Lock()
	if t.dropped {
		x.unlock(t)
		return nil
	}
	x.warm(keys)
	// Tail first: the eviction queue then drops a chain's tail before its prefix.
	for i := len(keys) - 1; i >= 0; i-- {
		x.setLocked(t, fixKey(keys[i]), 1<<tier)
	}
	x.unlock(t)
	x.maybeEvict(t)
	return nil
}

// Remove records that endpoint no longer holds keys in tier.
func (x *Index) Remove(endpoint string, tier Tier, keys []uint64) error {
	_, t, err := x.target(endpoint, tier)
	if err != nil {
		return fmt.Errorf("kvcache: remove for %q: %w", endpoint, err)
	}
	x.remove(t, tier, keys)
	return nil
}

// remove clears tier for keys at t, unless t was dropped since the caller
// found it: its id may then belong to another location already.
func (x *Index) remove(t *location, tier Tier, keys []uint64) {
	x.warm(keys)
	t.mu.Lock()
	if !t.dropped {
		for _, k := range keys {
			x.clearLocked(t, fixKey(k), 1<<tier)
		}
	}
	x.unlock(t)
}

// BlockStored is a model server's KV event: blocks computed and cached, in
// order, each chained to the previous one.
// It is plain data with no internal synchronisation: the Index only reads it,
// and it may be shared read-only.
type BlockStored struct {
	// EngineHashes are the server's hashes of the stored blocks (vLLM's
	// block_hashes as uint64: the int, or the last 8 bytes of the digest read
	// big-endian).
	EngineHashes []uint64
	// Parent is the engine hash of the block before the first stored one; it is
	// meaningful only when HasParent is set (vLLM's parent_block_hash is not null).
	Parent    uint64
	HasParent bool
	// Tokens are the stored blocks' token ids, BlockSize per hash. Empty for a
	// location-only store (a copy of known blocks into another tier, such as
	// CPU offload), which is resolved through the engine hashes already known.
	Tokens []uint32
	// BlockSize is the event's block size; 0 means the Keyer's. It may be a
	// multiple of the Keyer's: each engine block then covers several of our
	// blocks, all added and removed together.
	BlockSize int
	// LoRA is the adapter name (vLLM lora_name), "" for none.
	LoRA string
	// CacheSalt is the cache_salt from block 0's extra keys, "" for none; it is
	// used only when HasParent is false.
	CacheSalt string
}

// Stored applies a BlockStored event from endpoint for tier: it computes our
// keys from the tokens, chaining from the key recorded for the parent hash
// (or the Keyer's root when there is none), records each engine hash → key
// mapping, and adds the blocks. A location-only event (no tokens) resolves its
// engine hashes through the mappings; hashes never seen are skipped and
// counted in Stats.UnresolvedHashes. Each stored engine hash counts one copy
// in tier: a hash stored again while the tier holds its block needs one more
// BlockRemoved before the block goes (see Removed). It returns
// ErrUnknownParent when the parent hash has no mapping, and ErrBlockSize when
// sizes disagree; in both cases nothing is applied.
func (x *Index) Stored(endpoint string, tier Tier, ev *BlockStored) error {
	if ev == nil {
		return fmt.Errorf("kvcache: stored from %q: nil event", endpoint)
	}
	ep, t, err := x.target(endpoint, tier)
	if err != nil {
		return fmt.Errorf("kvcache: stored from %q: %w", endpoint, err)
	}
	if len(ev.Tokens) == 0 {
		x.storedLocationOnly(ep, t, tier, ev.EngineHashes)
		return nil
	}
	if x.keyer == nil {
		return fmt.Errorf("kvcache: stored from %q: no Keyer configured", endpoint)
	}
	bs := x.keyer.BlockSize()
	evbs := ev.BlockSize
	if evbs == 0 {
		evbs = bs
	}
	// Division, not evbs*len(hashes): a huge or negative block size must not
	// wrap around to the token count.
	if evbs < bs || evbs%bs != 0 || len(ev.Tokens)%evbs != 0 || len(ev.Tokens)/evbs != len(ev.EngineHashes) {
		return fmt.Errorf("kvcache: stored from %q: %w: %d tokens for %d hashes, event block size %d, index block size %d",
			endpoint, ErrBlockSize, len(ev.Tokens), len(ev.EngineHashes), ev.BlockSize, bs)
	}
	m := evbs / bs // our blocks per engine block
	parent := x.keyer.Root()
	if ev.HasParent {
		k, ok := x.resolve(ep, t, ev.Parent)
		if !ok {
			return fmt.Errorf("kvcache: stored from %q: %w: %#x", endpoint, ErrUnknownParent, ev.Parent)
		}
		parent = k
	}
	t.mu.Lock()
	if t.dropped {
		x.unlock(t)
		return nil
	}
	t.keybuf = x.keyer.AppendKeysFrom(t.keybuf[:0], parent, ev.Tokens, ev.LoRA, ev.CacheSalt)
	x.warm(t.keybuf)
	if cap(t.oldbuf) < len(t.keybuf) {
		t.oldbuf = make([]uint8, len(t.keybuf), 2*len(t.keybuf))
	}
	t.oldbuf = t.oldbuf[:len(t.keybuf)]
	for i := len(t.keybuf) - 1; i >= 0; i-- { // tail first, as in Add
		t.keybuf[i] = fixKey(t.keybuf[i])
		t.oldbuf[i] = x.setLocked(t, t.keybuf[i], 1<<tier)
	}
	for i, h := range ev.EngineHashes {
		j := (i+1)*m - 1
		t.countCopyLocked(h, t.keybuf[j], tier, t.oldbuf[j])
		t.engine[h] = t.keybuf[j]
		if m > 1 {
			if t.spans == nil {
				t.spans = map[uint64][]uint64{}
			}
			t.spans[h] = append([]uint64(nil), t.keybuf[i*m:(i+1)*m]...)
		}
	}
	x.filterEngineLocked(t)
	x.unlock(t)
	x.maybeEvict(t)
	return nil
}

// storedLocationOnly adds already-known blocks to another tier.
func (x *Index) storedLocationOnly(ep, t *location, tier Tier, hashes []uint64) {
	for _, h := range hashes {
		k, span, ok := x.resolveSpan(ep, t, h)
		if !ok {
			x.dropped.Add(1)
			continue
		}
		t.mu.Lock()
		if !t.dropped {
			// k, the span's last key, first: tail first, and its bits
			// before the write tell whether this is another copy.
			t.countCopyLocked(h, k, tier, x.setLocked(t, k, 1<<tier))
			for i := len(span) - 1; i >= 0; i-- {
				if span[i] != k {
					x.setLocked(t, span[i], 1<<tier)
				}
			}
			t.engine[h] = k
			if span != nil {
				if t.spans == nil {
					t.spans = map[uint64][]uint64{}
				}
				t.spans[h] = span
			}
		}
		x.unlock(t)
	}
	t.mu.Lock()
	x.filterEngineLocked(t)
	x.unlock(t)
	x.maybeEvict(t)
}

// resolve maps an engine hash to our key through t's mappings, then the
// endpoint's, then its storage's.
func (x *Index) resolve(ep, t *location, h uint64) (uint64, bool) {
	k, _, ok := x.resolveSpan(ep, t, h)
	return k, ok
}

// resolveSpan is resolve that also returns all the keys of an engine block
// that spans several of ours (nil otherwise; the slice is never modified).
func (x *Index) resolveSpan(ep, t *location, h uint64) (uint64, []uint64, bool) {
	try := func(l *location) (uint64, []uint64, bool) {
		if l == nil {
			return 0, nil, false
		}
		l.mu.Lock()
		k, ok := l.engine[h]
		span := l.spans[h]
		x.unlock(l)
		return k, span, ok
	}
	if k, span, ok := try(t); ok {
		return k, span, true
	}
	if ep != t {
		if k, span, ok := try(ep); ok {
			return k, span, true
		}
	}
	r := x.reg.Load()
	if sid := r.storageOf[ep.id]; sid != 0 && r.locs[sid] != t {
		return try(r.locs[sid])
	}
	return 0, nil, false
}

// Removed applies a BlockRemoved event from endpoint for tier: each engine
// hash is resolved through the mappings and its block removed from that tier.
// Stores and removals are counted per (engine hash, tier): vLLM can hold one
// block hash in several physical blocks and reports each copy, so a block
// stored N times in a tier stays until its N-th removal. A mapping is
// forgotten once its block is in none of the location's tiers. Unknown hashes
// are skipped and counted in Stats.UnresolvedHashes.
func (x *Index) Removed(endpoint string, tier Tier, engineHashes []uint64) error {
	_, t, err := x.target(endpoint, tier)
	if err != nil {
		return fmt.Errorf("kvcache: removed from %q: %w", endpoint, err)
	}
	t.mu.Lock()
	t.keybuf = t.keybuf[:0]
	for _, h := range engineHashes {
		t.keybuf = append(t.keybuf, t.engine[h]) // 0 (never a key) if unknown
	}
	x.warm(t.keybuf)
	for i, h := range engineHashes {
		k := t.keybuf[i]
		if k == 0 {
			x.dropped.Add(1)
			continue
		}
		if len(t.dups) > 0 {
			d := dupKey{h, tier}
			if n, ok := t.dups[d]; ok {
				if n > 1 {
					t.dups[d] = n - 1
				} else {
					delete(t.dups, d)
				}
				if x.tiersOf(t, k)&(1<<tier) != 0 {
					continue // another copy is still stored
				}
				// A stale count (the block went otherwise): remove as usual.
			}
		}
		for _, sk := range t.spans[h] {
			if sk != k {
				x.clearLocked(t, sk, 1<<tier)
			}
		}
		if left := x.clearLocked(t, k, 1<<tier); left&(realBits&^bitLearned) == 0 {
			delete(t.engine, h)
			delete(t.spans, h)
			if len(t.dups) > 0 {
				for tr := range Tier(TierLearned) {
					delete(t.dups, dupKey{h, tr})
				}
			}
		}
	}
	x.unlock(t)
	return nil
}

// Learn records that endpoint presumably holds keys in GPU memory because a
// request with this prefix was just sent to it: learned entries live for the
// learned TTL (or, with a zero TTL, until evicted by the endpoint's learned
// capacity). Blocks the endpoint already holds are marked recently used.
func (x *Index) Learn(endpoint string, keys []uint64) error {
	l, err := x.loc(endpoint, false, true)
	if err != nil {
		return fmt.Errorf("kvcache: learn for %q: %w", endpoint, err)
	}
	now := x.cfg.clock().UnixNano()
	l.mu.Lock()
	if l.dropped || l.lcap == 0 {
		x.unlock(l)
		return nil
	}
	x.expireLocked(l, now)
	x.warm(keys)
	// Tail first: the learned capacity then drops a prefix's tail before its head.
	// With a TTL, deadlines are rounded up to a sixteenth of it, so that a
	// prefix learned again within that time (a popular system prompt, a chat
	// turn after turn) costs a map lookup and a lock-free read per block.
	ttl := int64(x.cfg.learnedTTL)
	var rounded, g int64
	if ttl > 0 {
		g = x.granule()
		rounded = (now + ttl + g - 1) / g * g
	}
	for i := len(keys) - 1; i >= 0; i-- {
		k := fixKey(keys[i])
		// The deadline also identifies the newest reference of a key in l.lq,
		// so each new reference gets its own: the rounded deadline plus a
		// per-location counter modulo the granule g (a key unlearned and
		// learned again within one granule must not make its older
		// reference live again). Without a TTL the counter alone stands in.
		l.lseq++
		deadline := l.lseq
		if ttl > 0 {
			if d, ok := l.learned[k]; ok && d-d%g == rounded {
				// Learned already with this deadline, so queued already:
				// only mark it recently used.
				if x.tiersOf(l, k)&bitRef == 0 {
					x.setLocked(l, k, bitLearned)
				}
				continue
			}
			deadline = rounded + l.lseq%g
		}
		x.setLocked(l, k, bitLearned)
		l.learned[k] = deadline
		if len(l.lq)-l.lqHead > 2*len(l.learned)+64 {
			l.filterLearnedLocked()
		}
		l.lq = append(l.lq, learnedRef{key: k, deadline: deadline})
		for len(l.learned) > l.lcap {
			x.popLearnedLocked(l)
		}
	}
	l.compactLearnedLocked()
	x.unlock(l)
	x.maybeEvict(l)
	return nil
}

// Unlearn withdraws what [Index.Learn] presumed of keys at endpoint, for a
// request that never reached it (the connection failed and the request went
// elsewhere): without it, the endpoint would keep attracting that prefix
// until the entries expire, or, with no TTL, until capacity pushes them out.
// Blocks the endpoint's own events stored are kept. Keys not learned, and an
// endpoint the index does not know, are no-ops; it fails only for an empty ID.
func (x *Index) Unlearn(endpoint string, keys []uint64) error {
	l, err := x.loc(endpoint, false, false)
	if err != nil {
		return fmt.Errorf("kvcache: unlearn for %q: %w", endpoint, err)
	}
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if !l.dropped {
		for _, k := range keys {
			k = fixKey(k)
			if _, ok := l.learned[k]; ok {
				x.clearLocked(l, k, bitLearned) // its queue reference turns stale
			}
		}
	}
	x.unlock(l)
	return nil
}

// SetLearnedCapacity bounds endpoint's learned entries, for example to the
// server's num_gpu_blocks (vllm:cache_config_info); 0 disables learning for it.
func (x *Index) SetLearnedCapacity(endpoint string, blocks int) error {
	if blocks < 0 {
		return fmt.Errorf("kvcache: learned capacity %d for %q: must not be negative", blocks, endpoint)
	}
	l, err := x.loc(endpoint, false, true)
	if err != nil {
		return fmt.Errorf("kvcache: learned capacity for %q: %w", endpoint, err)
	}
	l.mu.Lock()
	l.lcap = blocks
	for len(l.learned) > l.lcap {
		x.popLearnedLocked(l)
	}
	l.compactLearnedLocked()
	x.unlock(l)
	return nil
}

// Expire drops learned entries whose TTL has passed. Learn expires the
// endpoint's own entries as it goes (other writes do not); Run calls Expire
// periodically so that entries of endpoints no longer learned to expire too.
// Lookup does not read deadlines: a learned entry counts until it is expired.
func (x *Index) Expire() {
	if x.cfg.learnedTTL == 0 {
		return
	}
	now := x.cfg.clock().UnixNano()
	r := x.reg.Load()
	for _, l := range r.locs {
		if l == nil || l.storage {
			continue
		}
		l.mu.Lock()
		x.expireLocked(l, now)
		x.unlock(l)
	}
}

// Run calls Expire every quarter of the learned TTL until ctx is done, and
// returns ctx's error. It is the Index's only background work; the caller
// owns the goroutine. Without a TTL it just waits for ctx.
func (x *Index) Run(ctx context.Context) error {
	if x.cfg.learnedTTL == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	tick := time.NewTicker(max(x.cfg.learnedTTL/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			x.Expire()
		}
	}
}

func (x *Index) expireLocked(l *location, now int64) {
	if x.cfg.learnedTTL == 0 {
		return
	}
	g := x.granule()
	for l.lqHead < len(l.lq) {
		if d := l.lq[l.lqHead].deadline; d-d%g > now { // d-d%g: the rounded deadline (see Learn)
			break
		}
		x.popLearnedLocked(l)
	}
	l.compactLearnedLocked()
}

// granule is what learned deadlines are rounded up to: a sixteenth of the
// TTL, at least a millisecond.
func (x *Index) granule() int64 {
	return max(int64(x.cfg.learnedTTL)/16, int64(time.Millisecond))
}

// popLearnedLocked removes the oldest learned reference; its entry goes away
// unless it was learned again later.
func (x *Index) popLearnedLocked(l *location) {
	if l.lqHead >= len(l.lq) {
		return
	}
	ref := l.lq[l.lqHead]
	l.lqHead++
	if d, ok := l.learned[ref.key]; ok && d == ref.deadline {
		x.clearLocked(l, ref.key, bitLearned)
	}
}

// filterLearnedLocked drops stale references from l's learned queue, keeping
// order, once they outnumber live ones: a key learned again (with a later
// deadline, or without a TTL a new sequence number) leaves its older
// reference behind, and so does a learned entry that went otherwise
// (removed, evicted for capacity). A reference is live when it carries its
// key's current deadline, and each learned key has exactly one, so the
// queue stays under 2×learned+66 references whatever the TTL, however often
// the same keys are learned. Amortized O(1) per reference added. The caller
// holds l.mu.
func (l *location) filterLearnedLocked() {
	live := l.lq[:0]
	for _, ref := range l.lq[l.lqHead:] {
		if d, ok := l.learned[ref.key]; ok && d == ref.deadline {
			live = append(live, ref)
		}
	}
	l.lq, l.lqHead = live, 0
}

func (l *location) compactLearnedLocked() {
	if l.lqHead > 64 && l.lqHead*2 > len(l.lq) {
		n := copy(l.lq, l.lq[l.lqHead:])
		l.lq = l.lq[:n]
		l.lqHead = 0
	}
	if l.lqHead == len(l.lq) {
		l.lq, l.lqHead = l.lq[:0], 0
	}
}

// setLocked sets bits for block k at location l, marking it recently used if
// l already held it, and returns l's bits for k before. The caller holds l.mu.
func (x *Index) setLocked(l *location, k uint64, bits uint8) uint8 {
	sh := &x.shards[k>>shardShift]
	sh.mu.Lock()
	old, new := sh.update(k, l.id, bits, 0, true)
	sh.mu.Unlock()
	if old == 0 {
		if len(l.fifo)-l.head > 4*l.entries+1024 {
			x.filterFIFOLocked(l)
		}
		l.fifo = append(l.fifo, k)
		l.entries++
		l.dEntries++
	}
	if new&bitLearned != 0 && old&bitLearned == 0 {
		l.dLearned++
	}
	return old
}

// filterFIFOLocked drops stale and duplicate keys from l's queue, keeping
// order, once they outnumber l's blocks three to one: keys removed and added
// again leave stale copies behind. Each pass probes every queued key, so the
// ratio trades queue memory (at most 4×8 B per block under heavy churn) for
// write speed (4/3 probes per key added, against 2 at one to one). The caller
// holds l.mu.
func (x *Index) filterFIFOLocked(l *location) {
	seen := x.sets.Get().(*keySet)
	seen.reset(l.entries)
	live := l.fifo[:0]
	q := l.fifo[l.head:]
	for c := 0; c < len(q); c += maxBatch {
		chunk := q[c:min(c+maxBatch, len(q))]
		x.warm(chunk)
		for _, k := range chunk {
			if x.tiersOf(l, k) == 0 || !seen.add(k) {
				continue
			}
			live = append(live, k)
		}
	}
	x.sets.Put(seen)
	clear(l.fifo[len(live):])
	l.fifo, l.head = live, 0
}

// clearLocked clears bits for block k at location l and returns the bits
// left; l forgets the block when none is. The caller holds l.mu.
func (x *Index) clearLocked(l *location, k uint64, bits uint8) uint8 {
	sh := &x.shards[k>>shardShift]
	sh.mu.Lock()
	old, new := sh.update(k, l.id, 0, bits, false)
	sh.mu.Unlock()
	x.forgetLocked(l, k, old, new)
	return new
}

// forgetLocked does the bookkeeping of a change of l's bits for k from old to new.
func (x *Index) forgetLocked(l *location, k uint64, old, new uint8) {
	if old&bitLearned != 0 && new&bitLearned == 0 {
		l.dLearned--
		delete(l.learned, k)
	}
	if old != 0 && new == 0 {
		l.entries--
		l.dEntries--
	}
}

// keySet is a reusable open-addressing set of keys (never 0), cheaper than a
// map for the one-shot deduplication of filterFIFOLocked.
type keySet struct{ s []uint64 }

// reset empties the set and sizes it for n keys.
func (ks *keySet) reset(n int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	if cap(ks.s) >= size && cap(ks.s) <= 4*size {
		ks.s = ks.s[:size]
		clear(ks.s)
		return
	}
	ks.s = make([]uint64, size)
}

// add inserts k and reports whether it was absent. The set must have room.
func (ks *keySet) add(k uint64) bool {
	mask := uint64(len(ks.s) - 1)
	for i := (k * 0x9e3779b97f4a7c15) >> 32 & mask; ; i = (i + 1) & mask {
		switch ks.s[i] {
		case 0:
			ks.s[i] = k
			return true
		case k:
			return false
		}
	}
}

// filterEngineLocked drops stale engine mappings (blocks l no longer holds,
// for example evicted for capacity) once they outnumber l's blocks, so the
// mappings stay bounded by the location's share of the capacity. Amortized
// O(1) per mapping added. The caller holds l.mu.
func (x *Index) filterEngineLocked(l *location) {
	if len(l.dups) > 4*l.entries+1024 { // live counts are at most one per (block, own tier)
		// Counts of copies whose block the tier no longer holds are stale.
		for d := range l.dups {
			if k, ok := l.engine[d.hash]; !ok || x.tiersOf(l, k)&(1<<d.tier) == 0 {
				delete(l.dups, d)
			}
		}
	}
	if len(l.engine) <= 2*l.entries+1024 {
		return
	}
	for h, k := range l.engine {
		if x.tiersOf(l, k) == 0 {
			delete(l.engine, h)
			delete(l.spans, h)
		}
	}
}

// tiersOf reports l's bits for block k. The caller holds l.mu, so no one
// else changes l's holder; it reads the table like Lookup, without the shard
// lock.
func (x *Index) tiersOf(l *location, k uint64) uint8 {
	sh := &x.shards[k>>shardShift]
	for {
		t := sh.tab.Load()
		i := t.findAtomic(k)
		if i < 0 {
			return 0
		}
		hw := atomic.LoadUint64(&t.s[2*i+1])
		if hw&overflowBit == 0 {
			for _, h := range [2]uint32{uint32(hw), uint32(hw >> 32)} {
				if h != 0 && holderLoc(h) == l.id {
					return holderTiers(h)
				}
			}
			return 0
		}
		ar := sh.ar.Load().a
		r := uint32(hw)
		var got uint8
		if int(r) < len(ar) {
			n := atomic.LoadUint32(&ar[r]) & hdrLenMask
			for j := uint32(0); j < n && int(r+1+j) < len(ar); j++ {
				if h := atomic.LoadUint32(&ar[r+1+j]); holderLoc(h) == l.id {
					got = holderTiers(h)
					break
				}
			}
		}
		if atomic.LoadUint64(&t.s[2*i+1]) == hw { // the record was not replaced under us
			return got
		}
	}
}

// warm touches the table slots of keys ahead of a write loop over them, so
// that their cache misses overlap (see Index.prefetch).
func (x *Index) warm(keys []uint64) {
	var pre [maxBatch]uint64
	for len(keys) > 0 {
		n := min(len(keys), maxBatch)
		x.prefetch(keys[:n], &pre)
		keys = keys[n:]
	}
}

// clearAllLocked forgets everything l holds. The caller holds l.mu.
func (x *Index) clearAllLocked(l *location) {
	for _, k := range l.fifo[l.head:] {
		sh := &x.shards[k>>shardShift]
		sh.mu.Lock()
		old, new := sh.update(k, l.id, 0, 0xff, false)
		sh.mu.Unlock()
		x.forgetLocked(l, k, old, new)
	}
	l.engine = map[uint64]uint64{}
	l.spans = nil
	l.dups = nil
	l.learned = map[uint64]int64{}
	l.fifo, l.head = nil, 0
	l.lq, l.lqHead = nil, 0
}

// Clear forgets every block endpoint holds in its own tiers and its engine
// hash mappings, as on vLLM's AllBlocksCleared. Blocks in an attached shared
// storage are not the endpoint's to clear; use ClearStorage.
func (x *Index) Clear(endpoint string) error {
	l, err := x.loc(endpoint, false, false)
	if err != nil || l == nil {
		return err
	}
	l.mu.Lock()
	x.clearAllLocked(l)
	x.unlock(l)
	return nil
}

// ClearStorage forgets every block in the shared storage.
func (x *Index) ClearStorage(storage string) error {
	l, err := x.loc(storage, true, false)
	if err != nil || l == nil {
		return err
	}
	l.mu.Lock()
	x.clearAllLocked(l)
	x.unlock(l)
	return nil
}

// DropEndpoint forgets endpoint entirely: its blocks, mappings, learned
// entries and storage attachment. A later write registers it afresh.
func (x *Index) DropEndpoint(endpoint string) error { return x.drop(endpoint, false) }

// DropStorage forgets a shared storage and detaches its endpoints.
func (x *Index) DropStorage(storage string) error { return x.drop(storage, true) }

func (x *Index) drop(name string, storage bool) error {
	l, err := x.loc(name, storage, false)
	if err != nil || l == nil {
		return err
	}
	// Unregister first, so that no new write finds it, then clear it.
	x.mu.Lock()
	r := x.reg.Load()
	if r.locs[l.id] != l {
		x.mu.Unlock()
		return nil
	}
	n := r.clone()
	if storage {
		delete(n.storages, name)
		for i, s := range n.storageOf {
			if s == l.id {
				n.storageOf[i] = 0
			}
		}
	} else {
		delete(n.endpoints, name)
	}
	n.storageOf[l.id] = 0
	n.locs[l.id] = nil
	x.reg.Store(n)
	x.mu.Unlock()

	l.mu.Lock()
	l.dropped = true
	x.clearAllLocked(l)
	x.unlock(l)

	x.mu.Lock()
	x.free = append(x.free, l.id)
	x.mu.Unlock()
	return nil
}

// Attach attaches endpoint to a shared storage, creating either if needed: from
// now on blocks the storage holds count, in TierShared, for the endpoint, and
// the endpoint's TierShared writes go to it. An endpoint is attached to at most
// one storage; attaching again replaces the attachment.
func (x *Index) Attach(endpoint, storage string) error {
	ep, err := x.loc(endpoint, false, true)
	if err != nil {
		return fmt.Errorf("kvcache: attach %q: %w", endpoint, err)
	}
	st, err := x.loc(storage, true, true)
	if err != nil {
		return fmt.Errorf("kvcache: attach %q to %q: %w", endpoint, storage, err)
	}
	return x.setStorage(ep, st.id)
}

// Detach detaches endpoint from its shared storage, if any.
func (x *Index) Detach(endpoint string) error {
	ep, err := x.loc(endpoint, false, false)
	if err != nil || ep == nil {
		return err
	}
	return x.setStorage(ep, 0)
}

func (x *Index) setStorage(ep *location, sid uint32) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.reg.Load()
	if r.locs[ep.id] != ep || (sid != 0 && r.locs[sid] == nil) {
		return nil // dropped concurrently
	}
	n := r.clone()
	n.storageOf[ep.id] = sid
	x.reg.Store(n)
	return nil
}

// maybeEvict evicts entries while the index is over capacity. w is the
// location that just wrote; it evicts its own entries if it holds at least its
// share, otherwise the largest location's.
func (x *Index) maybeEvict(w *location) {
	over := x.entries.Load() - int64(x.cfg.capacity)
	if over <= 0 {
		return
	}
	// Evict a little more than needed, to amortize the victim search.
	batch := int(over) + x.cfg.capacity/256 + 1
	r := x.reg.Load()
	nlocs := 0
	var largest *location
	largestN := -1
	for _, l := range r.locs {
		if l == nil {
			continue
		}
		nlocs++
		l.mu.Lock()
		n := l.entries
		x.unlock(l)
		if n > largestN {
			largest, largestN = l, n
		}
	}
	victim := largest
	w.mu.Lock()
	if int64(w.entries)*int64(nlocs) >= x.entries.Load() {
		victim = w
	}
	x.unlock(w)
	if victim == nil {
		return
	}
	victim.mu.Lock()
	x.evictLocked(victim, batch)
	x.unlock(victim)
}

// evictLocked evicts up to n entries of l in CLOCK order: the oldest first,
// giving entries touched since the last pass (bitRef) a second chance. It
// also drops stale keys from the queue.
func (x *Index) evictLocked(l *location, n int) {
	budget := 2*(len(l.fifo)-l.head) + 1
	for n > 0 && budget > 0 && l.head < len(l.fifo) {
		budget--
		k := l.fifo[l.head]
		l.head++
		sh := &x.shards[k>>shardShift]
		sh.mu.Lock()
		old, new := sh.update(k, l.id, 0, bitRef, false)
		if old != 0 && old&bitRef == 0 {
			old, new = sh.update(k, l.id, 0, 0xff, false)
		}
		sh.mu.Unlock()
		if old == 0 {
			continue // stale: no longer held
		}
		if new != 0 {
			l.fifo = append(l.fifo, k) // second chance
			continue
		}
		x.forgetLocked(l, k, old, new)
		x.evicted.Add(1)
		n--
	}
	l.compactFIFOLocked()
}

// compactFIFOLocked reclaims the consumed front of the queue.
func (l *location) compactFIFOLocked() {
	if l.head > 1024 && l.head*2 > len(l.fifo) {
		m := copy(l.fifo, l.fifo[l.head:])
		l.fifo = l.fifo[:m]
		l.head = 0
	}
}

// Blocks reports how many blocks endpoint holds in its own tiers, confirmed
// or learned (0 for an unknown endpoint): its share of the index, for example
// to break ties toward the endpoint with the smaller cache, as Dynamo does.
func (x *Index) Blocks(endpoint string) int {
	l, err := x.loc(endpoint, false, false)
	if err != nil || l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries
}

// Stats is a snapshot of an Index's size and counters.
// A Stats is a copy, not a live view: a plain value, safe to share read-only.
type Stats struct {
	// Entries is the number of (block, location) entries, confirmed or learned.
	Entries int64
	// Learned is the number of entries with a learned bit.
	Learned int64
	// Blocks is the number of distinct blocks held anywhere.
	Blocks int64
	// Endpoints and Storages count registered locations.
	Endpoints, Storages int
	// Evicted counts entries evicted for capacity since New.
	Evicted int64
	// UnresolvedHashes counts engine hashes in Removed and location-only
	// Stored events that had no mapping.
	UnresolvedHashes int64
	// Capacity is the configured bound on Entries.
	Capacity int
}

// Stats returns a snapshot of the Index's size and counters. It locks each
// shard of the block table briefly, one at a time; Lookup is never blocked.
func (x *Index) Stats() Stats {
	r := x.reg.Load()
	s := Stats{
		Entries:          x.entries.Load(),
		Learned:          x.learned.Load(),
		Endpoints:        len(r.endpoints),
		Storages:         len(r.storages),
		Evicted:          x.evicted.Load(),
		UnresolvedHashes: x.dropped.Load(),
		Capacity:         x.cfg.capacity,
	}
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		s.Blocks += int64(sh.used)
		sh.mu.Unlock()
	}
	return s
}
