// Package kvevents ingests vLLM's KV-cache events: the msgpack wire format
// of every vLLM version (decoder and byte-exact encoder), and a ZeroMQ
// subscriber that applies the events, in order per endpoint, to a KV-block
// index.
//
// Wire format: see Decode, AppendBatch and Schema.
//
// Concurrency: Decode and AppendBatch are pure functions; a Batch is a plain
// value.
package kvevents
