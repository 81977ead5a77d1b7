package kvevents_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix"
)

// benchBatch builds a realistic batch: events BlockStored events of
// blocks blocks of 16 tokens each (Qwen-sized vocabulary), as vLLM ≥ 0.26
// publishes them.
func benchBatch(events, blocks int) *kvevents.Batch { return benchBatchSeed(events, blocks, 1) }

func benchBatchSeed(events, blocks int, seed uint64) *kvevents.Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := &kvevents.Batch{TS: 1767225600.5, DataParallelRank: kvevents.Some(int64(0))}
	for range events {
		e := kvevents.Event{Type: kvevents.BlockStored, BlockSize: 16, Medium: kvevents.Some("GPU"),
			ParentBlockHash: kvevents.Some(kvevents.HashUint64(rng.Uint64())),
			GroupIdx:        kvevents.Some(int64(0)), KVCacheSpecKind: kvevents.Some("full_attention")}
		for range blocks {
			e.BlockHashes = append(e.BlockHashes, kvevents.HashUint64(rng.Uint64()))
		}
		for range 16 * blocks {
			e.TokenIDs = append(e.TokenIDs, uint32(rng.IntN(151000)))
		}
		extra := []byte{0xdc, 0, byte(blocks)}
		for range blocks {
			extra = append(extra, 0xc0)
		}
		e.ExtraKeys = extra
		b.Events = append(b.Events, e)
	}
	return b
}

var benchShapes = []struct {
	name           string
	events, blocks int
}{
	{"1x1blk", 1, 1},
	{"1x32blk", 1, 32},
	{"16x32blk", 16, 32},
}

func BenchmarkDecode(b *testing.B) {
	for _, schema := range []kvevents.Schema{kvevents.MapCurrent, kvevents.ArrayLast} {
		for _, sh := range benchShapes {
			payload, err := kvevents.AppendBatch(nil, benchBatch(sh.events, sh.blocks), schema)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%v/%s/routekit", schema, sh.name), func(b *testing.B) {
				var batch kvevents.Batch
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					if err := kvevents.Decode(payload, &batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(sh.events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
			// The baseline: a generic msgpack library decoding into []any, as
			// llm-d does, before any field extraction.
			b.Run(fmt.Sprintf("%v/%s/vmihailenco-any", schema, sh.name), func(b *testing.B) {
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					var v []any
					if err := msgpack.Unmarshal(payload, &v); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(sh.events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	batch := benchBatch(16, 32)
	buf, _ := kvevents.AppendBatch(nil, batch, kvevents.MapCurrent)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = kvevents.AppendBatch(buf[:0], batch, kvevents.MapCurrent)
	}
}

// countingIndex counts applied events, in total and per source (sources
// are named by their number); safe for concurrent use.
type countingIndex struct {
	n     atomic.Int64
	per   []atomic.Int64
	inner kvevents.Index // applies the events too when set
}

func (c *countingIndex) Apply(ep string, e *kvevents.Event) error {
	c.n.Add(1)
	if i, err := strconv.Atoi(ep); err == nil && i < len(c.per) {
		c.per[i].Add(1)
	}
	if c.inner != nil {
		return c.inner.Apply(ep, e)
	}
	return nil
}
func (c *countingIndex) Clear(string) error { return nil }
func (c *countingIndex) Drop(string) error  { return nil }

// BenchmarkEndToEnd: publishers → ZeroMQ over loopback → subscriber →
// index; each op is one batch of one 4-block BlockStored, published by
// one of the publishers in turn, and the clock stops when all are applied.
func BenchmarkEndToEnd(b *testing.B) {
	for _, real := range []bool{false, true} {
		for _, npub := range []int{1, 100} {
			name := fmt.Sprintf("index=counting/publishers=%d", npub)
			if real {
				name = fmt.Sprintf("index=kvcache/publishers=%d", npub)
			}
			b.Run(name, func(b *testing.B) { benchEndToEnd(b, npub, real) })
		}
	}
}

func benchEndToEnd(b *testing.B, npub int, real bool) {
	idx := &countingIndex{per: make([]atomic.Int64, npub)}
	if real {
		hasher, err := prefix.NewHasher("m", prefix.WithBlockSize(16))
		if err != nil {
			b.Fatal(err)
		}
		x, err := kvcache.New(hasher)
		if err != nil {
			b.Fatal(err)
		}
		idx.inner = kvevents.NewKVCacheIndex(x)
	}
	sub, err := kvevents.NewSubscriber(idx)
	if err != nil {
		b.Fatal(err)
	}
	pubs := make([]*kvpublish.Publisher, npub)
	for i := range pubs {
		pubs[i] = newPublisher(b, kvpublish.Config{HWM: 1 << 30})
		if err := sub.Add(kvevents.Source{ID: fmt.Sprint(i), Endpoint: pubs[i].Endpoint()}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// 1024 distinct batches of one 4-block BlockStored from block 0.
	payloads := make([][]byte, 1024)
	for i := range payloads {
		batch := benchBatchSeed(1, 4, uint64(i))
		batch.Events[0].ParentBlockHash = kvevents.Null[kvevents.Hash]{}
		payloads[i], _ = kvevents.AppendBatch(nil, batch, kvevents.MapCurrent)
	}
	payload := payloads[0]
	// Warm up until every publisher's subscription is live.
	seen := make([]bool, npub)
	deadline := time.Now().Add(20 * time.Second)
	for left := npub; left > 0; {
		for i, p := range pubs {
			if !seen[i] {
				_, _ = p.PublishPayload(payload)
			}
		}
		time.Sleep(10 * time.Millisecond)
		left = 0
		for i := range pubs {
			if !seen[i] {
				seen[i] = idx.per[i].Load() > 0
				if !seen[i] {
					left++
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("publishers never connected")
		}
	}
	time.Sleep(50 * time.Millisecond)
	start := idx.n.Load()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_, _ = pubs[i%npub].PublishPayload(payloads[i%len(payloads)])
		i++
	}
	for idx.n.Load()-start < int64(i) {
		if time.Now().After(deadline.Add(time.Minute)) {
			b.Fatalf("applied %d of %d", idx.n.Load()-start, i)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
}
