// Package kvevents ingests vLLM's KV-cache events into a KV-block index:
// the msgpack wire format of every vLLM version (a hand-written decoder and
// a byte-exact encoder), and a ZeroMQ subscriber that applies the events in
// order per engine, recovers gaps through vLLM's replay socket, and follows
// a pool's membership.
//
// Wire format. Decode accepts every schema vLLM has published (see Schema):
// the batch [ts, events] or [ts, events, dp_rank] (or a map), events as
// tagged arrays (vLLM ≤ 0.23) or tagged maps (newer), block hashes as
// integers, bin or str. Unknown event types and fields are skipped. It does
// not allocate in steady state and checks every length prefix against the
// payload. AppendBatch writes exactly the bytes vLLM's msgspec encoder
// writes, for tests and for the vLLM stand-in.
//
// Usage, subscribing to every engine of a pool and indexing into kvcache:
//
//	idx, _ := kvcache.New(hasher)
//	sub, err := kvevents.NewSubscriber(kvevents.NewKVCacheIndex(idx),
//		kvevents.WithPool(p, kvevents.PoolSource(5557, 5558))) // PUB and replay ports
//	if err != nil {
//		return err
//	}
//	go sub.Run(ctx) // until ctx is done
//
// or, in llm-d's centralized topology, where engines connect to the router:
//
//	sub, _ := kvevents.NewSubscriber(index, kvevents.WithBind("tcp://*:5557", 1), kvevents.WithTopic("kv@"))
//
// With WithPool, Run follows the pool as each membership change is
// published (pool.Snapshot.Changed; no polling): a new endpoint is
// subscribed at once, a removed one unsubscribed and its blocks dropped.
//
// Ordering and recovery. Each source (one engine: endpoint and
// data-parallel rank) is applied by one shard goroutine, in sequence order.
// A gap in the sequence triggers a replay request (a DEALER to the
// engine's ROUTER; both of vLLM's reply layouts), at most 8 at once and
// each bounded in time, retried when it stalls; while it runs the source's
// live messages wait. On connecting, a subscriber also asks for the
// history the engine still buffers, and asks again (up to 3 times, 500 ms
// apart) until a live message arrives: messages published before the
// subscription reaches the engine are dropped by PUB, and an engine that
// then goes quiet would send nothing to reveal the gap.
// A sequence that goes back, or a jump after a disconnection, means the
// engine restarted: its blocks are cleared and its buffered history
// replayed. A gap that replay cannot fill clears the source. Two watermarks
// (last applied, last received live) keep replayed and live messages from
// being applied twice. Every event reaches the index once, in order:
// duplicate stores of a hash and each of their removals are passed through,
// for the index to count the copies (kvcache.Index does; see KVCacheIndex).
// Messages that do not decode are counted and skipped. See Stats, and
// WriteMetrics for a Prometheus text rendering of them.
//
// Concurrency: Decode and AppendBatch are pure functions. A Subscriber is
// safe for concurrent use; Run owns its goroutines and returns when its
// context is done. The Index it writes to is called for one source from one
// goroutine at a time.
//
// What it does not do: it keeps no state across restarts of the router (the
// replay buffer, not a snapshot, is what an engine offers); it does not
// expand key-only chunk removals of third-party connectors into member
// blocks; a source's topic is trusted (ZeroMQ here has no authentication).
// Restart detection relies on sequence numbers and disconnections: an
// engine that restarts and publishes past the old sequence number while the
// connection never dropped cannot be told from a gap. The bind topology
// takes a source's data-parallel rank from the port its message arrived on.
package kvevents
