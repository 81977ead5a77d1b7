// Package kvpublish is a ZeroMQ KV-event publisher that behaves exactly
// like vLLM's ZmqEventPublisher: a PUB socket sending 3-frame messages
// [topic, seq (8 bytes big-endian), msgpack batch], sequence numbers from 0
// per publisher, a bounded replay buffer served by a ROUTER socket in
// vLLM's reply layouts with the END_SEQ marker, vLLM's bind-or-connect
// heuristic and data-parallel port offsets.
//
// It serves the vLLM stand-in (internal/vllmsim) and the tests of
// kvcache/kvevents. It uses the pure-Go github.com/go-zeromq/zmq4.
//
// Usage:
//
//	p, err := kvpublish.New(kvpublish.Config{
//		Endpoint:       "tcp://*:5557", // vLLM's default: bind, since the host is a wildcard
//		ReplayEndpoint: "tcp://*:5558",
//		Topic:          "kv@10.0.0.7:8000@my-model",
//	})
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//	go func() { errc <- p.Run(ctx) }() // answers replay requests (and dials, in connect mode)
//
//	// After every engine step that stored or evicted blocks:
//	batch := kvevents.Batch{TS: stepTime, Events: []kvevents.Event{
//		{Type: kvevents.BlockStored, BlockHashes: hashes, TokenIDs: tokens, BlockSize: 16},
//	}}
//	if _, err := p.Publish(&batch, kvevents.MapCurrent); err != nil {
//		return err // kvpublish.ErrClosed after Close
//	}
//
// Concurrency: a Publisher is safe for concurrent use; Publish calls are
// numbered in the order they take the publisher's lock.
//
// What it does not do: vLLM's in-process queue and publisher thread (Publish
// hands the message to zmq4's own queue, which drops beyond the high-water
// mark as PUB does); other publisher kinds than "zmq".
package kvpublish
