// Package kvcache is a concurrent, tiered index of which endpoint holds which
// KV-cache block. It answers, in microseconds and without locks, "which of
// these endpoints already holds the longest prefix of this request's blocks,
// and in which tier?", while KV events from every model server update it.
//
//	hasher, _ := prefix.NewHasher(model, prefix.WithBlockSize(16))
//	idx, _ := kvcache.New(hasher, kvcache.WithCapacity(10_000_000))
//	go idx.Run(ctx) // expires learned entries of idle endpoints
//
//	// KV events (package kvcache/kvevents), one goroutine per endpoint:
//	err := idx.Stored(ep.ID, kvcache.TierGPU, &kvcache.BlockStored{
//		EngineHashes: hashes, Parent: parent, HasParent: true, Tokens: tokens})
//	err = idx.Removed(ep.ID, kvcache.TierGPU, hashes)
//	err = idx.Clear(ep.ID) // AllBlocksCleared
//
//	// Routing: keys from the request's tokens, then one lookup.
//	keys = hasher.AppendKeys(keys[:0], tokens, prefix.Extra{})
//	longest, err := idx.Lookup(keys, candidateIDs, matches) // matches[i] ↔ candidateIDs[i]
//	_ = idx.Learn(chosen.ID, keys)                         // speculative until events confirm
//
// # Keys
//
// The index stores our chained block keys (package prefix), never the model
// server's hashes: a KV event's tokens are rehashed by the Keyer given to New,
// chained from the key recorded for the event's parent hash, and each engine
// hash → key mapping is kept per location so BlockRemoved and location-only
// events (CPU offload with no tokens) resolve through it. A BlockRemoved that
// leaves a block in none of the location's tiers drops its mapping; mappings
// of blocks that went otherwise (Remove by key, capacity eviction) are kept,
// still correct for chaining, until they outnumber the location's blocks, when
// a filter pass drops them (so at most 2×blocks+1024 per location). Clear and
// DropEndpoint drop them all.
//
// Stores are reference-counted per (location, tier, engine hash): vLLM can
// hold one block hash in several physical blocks (two requests computed it at
// once) and publishes a BlockStored and, later, a BlockRemoved for each copy,
// so a block stored N times in a tier stays, with its mapping, until the N-th
// BlockRemoved in that tier; N stores then N removals leave nothing. Only
// extra copies cost memory (a small map entry per hash stored while already
// held); a count matters only while the tier still holds the block, so a
// block that went otherwise is removed by the next BlockRemoved whatever its
// count, and stale counts are filtered like stale mappings (at most
// 4×blocks+1024). Callers must therefore pass every store and removal through,
// each once: a caller that drops the removals of duplicate copies itself (or
// applies a store twice) leaves the block held until eviction or Clear.
//
// Keys are rooted in the model name (and the Keyer's block size), so an Index
// holds one model: a gateway serving several models keeps one Index each.
//
// # Tiers and shared storage
//
// A location holds a block in any of GPU, CPU and disk (its own tiers), or as
// a learned entry. A shared storage is a location of its own; an endpoint
// attached to it (Attach) sees the storage's blocks as TierShared, and its
// TierShared writes land in the storage. Lookup counts each matched block in
// its best tier, in the order GPU, CPU, disk, shared, learned.
//
// # Learned entries
//
// Learn marks blocks as presumably held by the endpoint a request was just sent
// to. In precise mode (the default TTL of 2 s) they bridge the time until the
// server's BlockStored arrives. With WithLearnedTTL(0) they never expire and are
// bounded per endpoint (WithLearnedCapacity, SetLearnedCapacity from the
// server's num_gpu_blocks), oldest first: the approximate mode for fleets that
// publish no events. Learning a key again refreshes it (moves it last in the
// capacity order, or extends its deadline) without growing memory. Learn also
// marks the endpoint's confirmed copies of those blocks as recently used,
// which is what the capacity eviction keeps. Unlearn withdraws them when the
// request did not reach that endpoint after all (it was retried elsewhere).
//
// # Design
//
// A radix tree over blocks is the textbook structure, but chained keys make
// the tree implicit: key i already encodes blocks 0..i, so the edge "block i →
// block i+1" is just a lookup of key i+1, and a hash table keyed by chained
// keys is a radix tree with O(1) child access, no parent pointers, no per-node
// child maps, and no lock coupling. A prefix walk is one hash probe per block,
// stopping at the first block no candidate holds.
//
// The block table has 256 shards selected by a key's top byte. Each shard is an
// open-addressing, linear-probing table of 16-byte slots (key, holders). The
// holder word holds two 32-bit holders inline (a 24-bit location id and 8 tier
// bits); a block held by more locations points into a per-shard arena of
// holder records (a []uint32 without Go pointers, so the garbage collector never
// scans it). Writers take the shard's mutex; readers take no lock at all and
// read every word atomically, in an order that makes each block's holder set a
// consistent snapshot; growth builds a new table and swaps an atomic pointer.
// Location names map to dense ids through an immutable registry snapshot
// behind an atomic pointer.
//
// Lookup resolves the candidate names once (and reuses the previous
// resolution when it is handed the very same strings again, as a scheduler
// does), then walks the keys. Per block it
// visits only that block's holders, marks the candidates seen, and keeps per
// candidate the start of its current run of equal tiers, so tiers are summed
// per run, not per block. Before walking a batch of blocks it touches their
// slots, so that their cache and TLB misses overlap. After block 0 it jumps:
// it probes one block 64 ahead, and if every live candidate holds it in the
// tier of its current run, the blocks in between count alike; otherwise it
// bisects down to where a candidate drops out or changes tier and walks the
// last two or three blocks one by one. This is exact when in each
// tier an endpoint holds a prefix of a chain, which vLLM guarantees (a block is
// only used with its prefix and blocks are freed tail first);
// WithJumpSearch(0) walks every block whatever the holdings. Cost: O(Σ holders
// of the probed blocks + candidates), about len(keys)/64 probes for a long
// prompt whose matches end near the end, zero allocations (pooled scratch,
// generation-tagged so it is never cleared).
//
// The table's holder bits are the only record of which tiers a location holds
// a block in, plus a CLOCK reference bit. Each location adds, under its own
// mutex, a FIFO of its keys (the reverse map for Clear and DropEndpoint, which
// cost O(blocks of that location), never a full scan, and the eviction queue;
// stale keys are filtered once they outnumber live ones three to one), its engine-hash map,
// and its learned keys' deadlines. Memory per (block, location) entry,
// measured at 10M entries stored through KV events: about 59 B with one
// holder per block (table slot ≈ 16 B / load, FIFO 8 B, engine mapping) and
// 46 B with two (see BENCHMARKS.md). Capacity is in (block,
// location) entries; past it, the writer evicts from itself if it holds at
// least its share, else from the largest location, in CLOCK order (oldest
// first, a second chance for entries touched by Learn or stored again; within
// one write, the chain's tail is queued first, so it goes before its prefix).
//
// # Concurrency
//
// An Index is safe for concurrent use. Lookup never blocks and never waits for
// a writer; Stats locks each shard for a moment; a write holds its location's
// mutex and, per block, one shard's mutex for a few nanoseconds. Writes for one location are applied in call order when the
// caller issues them in order, as a per-endpoint event loop does.
//
// # What it does not do
//
// It does not subscribe to KV events (package kvcache/kvevents does), compute
// keys (package prefix), or turn matches into scores (the scheduler does:
// weigh Match.Blocks per tier). It does not reproduce vLLM's block hashes. The
// server's block size must be the Keyer's or a multiple of it (an engine block
// then stands for several of ours); a Keyer block coarser than the server's
// is refused with ErrBlockSize. Data-parallel
// ranks and KV-cache groups are not part of a location's identity; give each
// rank its own endpoint ID.
package kvcache
