package kvevents_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

func newSubscriber(t testing.TB, idx kvevents.Index, opts ...kvevents.Option) *kvevents.Subscriber {
	t.Helper()
	s, err := kvevents.NewSubscriber(idx, opts...)
	require.NoError(t, err)
	return s
}

// TestEndToEndKVCache: our publisher → ZeroMQ → subscriber → the real
// kvcache index, which then answers lookups; then offload, removal and
// clear events.
func TestEndToEndKVCache(t *testing.T) {
	hasher, err := prefix.NewHasher("m", prefix.WithBlockSize(16))
	require.NoError(t, err)
	idx, err := kvcache.New(hasher)
	require.NoError(t, err)
	p := newPublisher(t, kvpublish.Config{ReplayEndpoint: "tcp://127.0.0.1:0"})
	runPublisher(t, p)
	sub := newSubscriber(t, kvevents.NewKVCacheIndex(idx))
	require.NoError(t, sub.Add(kvevents.Source{ID: "pod-a", Endpoint: p.Endpoint(), ReplayEndpoint: p.ReplayEndpoint()}))
	runSubscriber(t, sub)

	tokens := make([]uint32, 64)
	for i := range tokens {
		tokens[i] = uint32(1000 + i)
	}
	keys := hasher.AppendKeys(nil, tokens, prefix.Extra{})
	lookup := func() kvcache.Match {
		m := make([]kvcache.Match, 1)
		_, err := idx.Lookup(keys, []string{"pod-a"}, m)
		require.NoError(t, err)
		return m[0]
	}
	publish := func(events ...kvevents.Event) {
		_, err := p.Publish(&kvevents.Batch{TS: 1, Events: events}, kvevents.MapCurrent)
		require.NoError(t, err)
	}
	hashes := []kvevents.Hash{kvevents.HashUint64(1 << 63), kvevents.HashUint64(2), kvevents.HashUint64(3), kvevents.HashUint64(4)}
	// Two events chained through the parent hash, then a CPU offload of
	// block 0 without tokens. The first publishes may precede the
	// subscription; the replay on the first message received recovers them.
	publish(kvevents.Event{Type: kvevents.BlockStored, BlockHashes: hashes[:2], TokenIDs: tokens[:32], BlockSize: 16, Medium: kvevents.Some("GPU")})
	publish(kvevents.Event{Type: kvevents.BlockStored, BlockHashes: hashes[2:], ParentBlockHash: kvevents.Some(hashes[1]),
		TokenIDs: tokens[32:], BlockSize: 16, Medium: kvevents.Some("GPU"), KVCacheSpecKind: kvevents.Some("full_attention")})
	publish(kvevents.Event{Type: kvevents.BlockStored, BlockHashes: hashes[:1], Medium: kvevents.Some("CPU")})
	waitFor(t, 10*time.Second, "4 GPU blocks, live delivery", func() bool {
		if lookup().Total() < 4 || sub.Stats().Messages == 0 {
			_, err := p.PublishPayload(futureEvent) // an unknown type: skipped
			require.NoError(t, err)
			return false
		}
		return true
	})
	m := lookup()
	assert.Equal(t, int32(4), m.Blocks[kvcache.TierGPU])

	// Evict GPU blocks 2-3: the prefix shrinks to 2.
	publish(kvevents.Event{Type: kvevents.BlockRemoved, BlockHashes: hashes[2:], Medium: kvevents.Some("GPU")})
	start := time.Now()
	waitFor(t, 5*time.Second, "removal", func() bool {
		ok := lookup().Total() == 2
		if !ok && time.Now().After(start.Add(4*time.Second)) {
			t.Logf("lookup %+v stats %+v", lookup(), sub.Stats())
		}
		return ok
	})
	// Evict block 0 from GPU: it is still in CPU, block 1 in GPU.
	publish(kvevents.Event{Type: kvevents.BlockRemoved, BlockHashes: hashes[:1], Medium: kvevents.Some("GPU")})
	waitFor(t, 5*time.Second, "CPU tier", func() bool { return lookup().Blocks[kvcache.TierCPU] == 1 })
	assert.Equal(t, 2, lookup().Total())
	publish(kvevents.Event{Type: kvevents.AllBlocksCleared})
	waitFor(t, 5*time.Second, "clear", func() bool { return lookup().Total() == 0 })
	st := sub.Stats()
	assert.Zero(t, st.DecodeErrors)
	assert.GreaterOrEqual(t, st.EventsApplied, uint64(6))
	assert.Equal(t, 1, st.Sources)
}

// TestGapReplay drops two messages on the publisher side; the subscriber
// sees the gap, replays it, and applies every batch exactly once, in order.
func TestGapReplay(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run("legacy="+strconv.FormatBool(legacy), func(t *testing.T) {
			var dropFrom atomic.Uint64
			dropFrom.Store(1 << 62)
			p := newPublisher(t, kvpublish.Config{
				ReplayEndpoint: "tcp://127.0.0.1:0", LegacyReplay: legacy,
				Drop: func(seq uint64) bool { f := dropFrom.Load(); return seq >= f && seq < f+2 },
			})
			runPublisher(t, p)
			idx := &fakeIndex{}
			sub := newSubscriber(t, idx)
			require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint(), ReplayEndpoint: p.ReplayEndpoint()}))
			runSubscriber(t, sub)

			var next uint64
			// Live delivery must be up (not only the replay on connect) before
			// the drops, or nothing after them would reveal the gap.
			publishUntil(t, p, &next, func() bool { return sub.Stats().Messages > 0 })
			waitFor(t, 5*time.Second, "initial replay", func() bool { return len(idx.storedFirsts("a")) == int(next) })
			dropFrom.Store(next)
			for range 6 {
				_, err := p.Publish(storedBatch(next, "GPU"), kvevents.MapCurrent)
				require.NoError(t, err)
				next++
			}
			deadline := time.Now().Add(10 * time.Second)
			waitFor(t, 11*time.Second, "all batches", func() bool {
				ok := len(idx.storedFirsts("a")) >= int(next)
				if !ok && time.Now().After(deadline) {
					t.Logf("next %d stats %+v calls %s", next, sub.Stats(), describe(idx.snapshot()))
				}
				return ok
			})
			assert.Equal(t, seqs(0, next), idx.storedFirsts("a"), describe(idx.snapshot()))
			st := sub.Stats()
			assert.GreaterOrEqual(t, st.Gaps, uint64(1))
			assert.GreaterOrEqual(t, st.Replays, uint64(1))
			assert.Zero(t, st.ReplayFailures)
			assert.Zero(t, idx.count("clear", "a"))
			ss, ok := sub.SourceStats("a")
			require.True(t, ok)
			assert.Equal(t, next-1, ss.LastSeq)
			assert.Equal(t, next, ss.EventsApplied)
			assert.GreaterOrEqual(t, ss.Gaps, uint64(1))
		})
	}
}

// TestPublisherRestart: the publisher process restarts on the same port
// with its sequence back at 0. The subscriber reconnects by itself,
// detects the reset, clears the endpoint and applies the new events.
func TestPublisherRestart(t *testing.T) {
	p1 := newPublisher(t, kvpublish.Config{})
	ep := p1.Endpoint()
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx)
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: ep}))
	runSubscriber(t, sub)

	var next uint64
	publishUntil(t, p1, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })
	for range 20 { // push the sequence well past where the new process starts
		_, err := p1.Publish(storedBatch(next, "GPU"), kvevents.MapCurrent)
		require.NoError(t, err)
		next++
	}
	waitFor(t, 5*time.Second, "first life", func() bool {
		f := idx.storedFirsts("a")
		return len(f) > 0 && f[len(f)-1] == next-1
	})
	require.NoError(t, p1.Close())

	p2 := newPublisher(t, kvpublish.Config{Endpoint: ep})
	restartAt := uint64(1000)
	next = restartAt
	publishUntil(t, p2, &next, func() bool {
		f := idx.storedFirsts("a")
		return f[len(f)-1] >= restartAt
	})
	assert.GreaterOrEqual(t, idx.count("clear", "a"), 1, "a restart clears the endpoint")
	assert.GreaterOrEqual(t, sub.Stats().Resets, uint64(1))
}

// TestGarbageAndTruncated: malformed payloads and frames are counted and
// skipped; the subscriber keeps applying what follows.
func TestGarbageAndTruncated(t *testing.T) {
	p := newPublisher(t, kvpublish.Config{})
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx)
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint()}))
	runSubscriber(t, sub)
	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })

	good, err := kvevents.AppendBatch(nil, storedBatch(7777, "GPU"), kvevents.ArrayLast)
	require.NoError(t, err)
	for _, bad := range [][]byte{{0xc1}, good[:len(good)/2], {}, []byte("not msgpack at all"), {0xdd, 0xff, 0xff, 0xff, 0xff}} {
		_, err := p.PublishPayload(bad)
		require.NoError(t, err)
	}
	_, err = p.PublishPayload(good)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "good batch after garbage", func() bool {
		f := idx.storedFirsts("a")
		return f[len(f)-1] == 7777
	})
	assert.Equal(t, uint64(5), sub.Stats().DecodeErrors)
}

// TestReplayNeverAnswered: the replay socket accepts the request but never
// replies. The replay times out (bounded), the endpoint is cleared, and the
// live events after the gap are applied.
func TestReplayNeverAnswered(t *testing.T) {
	var dropFrom atomic.Uint64
	dropFrom.Store(1 << 62)
	p := newPublisher(t, kvpublish.Config{
		ReplayEndpoint: "tcp://127.0.0.1:0",
		Drop:           func(seq uint64) bool { return seq == dropFrom.Load() },
	}) // p.Run is never called: nobody answers on the ROUTER
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx, kvevents.WithReplayLimits(2, 150*time.Millisecond, time.Second))
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint(), ReplayEndpoint: p.ReplayEndpoint()}))
	runSubscriber(t, sub)

	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })
	dropFrom.Store(next)
	next++ // seq next is dropped
	for range 3 {
		_, err := p.Publish(storedBatch(next, "GPU"), kvevents.MapCurrent)
		require.NoError(t, err)
		next++
	}
	waitFor(t, 5*time.Second, "events after the failed replay", func() bool {
		f := idx.storedFirsts("a")
		return f[len(f)-1] == next-1
	})
	st := sub.Stats()
	assert.GreaterOrEqual(t, st.ReplayFailures, uint64(1))
	assert.GreaterOrEqual(t, idx.count("clear", "a"), 1)
}

// TestRemoveWhileInFlight removes a source in the middle of a burst: its
// Drop comes after every event applied for it, and nothing after.
func TestRemoveWhileInFlight(t *testing.T) {
	p := newPublisher(t, kvpublish.Config{})
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx, kvevents.WithShards(2))
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint()}))
	runSubscriber(t, sub)
	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			_, _ = p.Publish(storedBatch(uint64(10000+i), "GPU"), kvevents.MapCurrent)
		}
	}()
	waitFor(t, 5*time.Second, "burst in flight", func() bool { return len(idx.storedFirsts("a")) > 50 })
	assert.True(t, sub.Remove("a"))
	<-done
	waitFor(t, 5*time.Second, "drop", func() bool { return idx.count("drop", "a") == 1 })
	time.Sleep(50 * time.Millisecond) // anything still queued would land now
	calls := idx.snapshot()
	assert.Equal(t, "drop", calls[len(calls)-1].op, "no event applied after the drop")
	assert.False(t, sub.Remove("a"))
	assert.Zero(t, sub.Stats().Sources)
}

// TestPoolLifecycle: an endpoint added to the pool is subscribed (at its
// address's host, KV port + rank); removing it unsubscribes and drops it.
func TestPoolLifecycle(t *testing.T) {
	p := newPublisher(t, kvpublish.Config{ReplayEndpoint: "tcp://127.0.0.1:0"})
	runPublisher(t, p)
	pubPort := port(t, p.Endpoint())
	replayPort := port(t, p.ReplayEndpoint())

	pl := pool.New()
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx, kvevents.WithPool(pl, kvevents.PoolSource(pubPort, replayPort)))
	runSubscriber(t, sub)
	require.NoError(t, pl.Store(pool.Endpoint{ID: "ns/pod-a", Address: "127.0.0.1:8000"}))
	waitFor(t, 5*time.Second, "subscription", func() bool { return sub.Stats().Sources == 1 })

	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("ns/pod-a")) > 0 && sub.Stats().Messages > 0 })
	waitFor(t, 5*time.Second, "replayed history", func() bool { return len(idx.storedFirsts("ns/pod-a")) == int(next) })
	assert.Equal(t, seqs(0, next), idx.storedFirsts("ns/pod-a"))

	require.NoError(t, pl.Delete("ns/pod-a"))
	waitFor(t, 5*time.Second, "drop", func() bool { return idx.count("drop", "ns/pod-a") == 1 })
	assert.Zero(t, sub.Stats().Sources)
}

// TestPoolChangesAppliedAtOnce: the subscriber follows the pool as each
// change is published, with no poll: in a synctest bubble no (fake) time
// passes between a Store and the source being subscribed. The sources
// carry no PUB address, so nothing dials and the bubble stays off the
// network; the ReplayEndpoint follows the endpoint's address to show that
// an updated description re-subscribes.
func TestPoolChangesAppliedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pl := pool.New()
		idx := &fakeIndex{}
		sub := newSubscriber(t, idx, kvevents.WithPool(pl, func(ep *pool.Endpoint) (kvevents.Source, bool) {
			return kvevents.Source{ReplayEndpoint: "tcp://" + ep.Address}, ep.Labels["kv"] != "off"
		}))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- sub.Run(ctx) }()
		synctest.Wait()
		start := time.Now()
		has := func(id string) bool { _, ok := sub.SourceStats(id); return ok }

		require.NoError(t, pl.Store(pool.Endpoint{ID: "a", Address: "127.0.0.1:8000"}))
		synctest.Wait()
		assert.True(t, has("a"), "subscribed as soon as it was stored")

		// Several changes at once coalesce; the newest membership wins.
		require.NoError(t, pl.Store(pool.Endpoint{ID: "b", Address: "127.0.0.1:8001"}))
		require.NoError(t, pl.Store(pool.Endpoint{ID: "c", Address: "127.0.0.1:8002"}))
		require.NoError(t, pl.Store(pool.Endpoint{ID: "d", Address: "127.0.0.1:8003", Labels: map[string]string{"kv": "off"}}))
		synctest.Wait()
		assert.Equal(t, 3, sub.Stats().Sources)
		assert.False(t, has("d"), "the source mapping declined it")

		require.NoError(t, pl.Delete("a"))
		synctest.Wait()
		assert.False(t, has("a"))
		assert.Equal(t, 1, idx.count("drop", "a"))

		// A new address re-subscribes: the old source's blocks are dropped.
		require.NoError(t, pl.Store(pool.Endpoint{ID: "b", Address: "127.0.0.1:9001"}))
		synctest.Wait()
		assert.True(t, has("b"))
		assert.Equal(t, 1, idx.count("drop", "b"))

		// Replace: c stays, b goes, e comes.
		require.NoError(t, pl.Replace([]pool.Endpoint{
			{ID: "c", Address: "127.0.0.1:8002"}, {ID: "e", Address: "127.0.0.1:8004"},
		}))
		synctest.Wait()
		assert.False(t, has("b"))
		assert.True(t, has("c"))
		assert.True(t, has("e"))
		assert.Equal(t, 2, sub.Stats().Sources)
		assert.Equal(t, 2, idx.count("drop", "b"))
		assert.Zero(t, idx.count("drop", "c"))

		assert.Zero(t, time.Since(start), "no (fake) time passed: every change was applied without a poll")
		cancel()
		assert.NoError(t, <-done)
	})
}

// TestBindTopology: the subscriber binds; publishers connect to it (vLLM's
// connect mode, llm-d's centralized deployment) and are told apart by
// their topics.
func TestBindTopology(t *testing.T) {
	ep := freeEndpoint(t)
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx, kvevents.WithBind(ep, 1), kvevents.WithTopic("kv@"))
	runSubscriber(t, sub)

	var pubs []*kvpublish.Publisher
	for _, topic := range []string{"kv@10.0.0.1:8000@m", "kv@10.0.0.2:8000@m", "other-topic"} {
		p := newPublisher(t, kvpublish.Config{Endpoint: ep, Topic: topic, Mode: kvpublish.ModeConnect})
		assert.False(t, kvevents.ShouldBind(ep))
		runPublisher(t, p) // connects
		pubs = append(pubs, p)
	}
	for i, id := range []string{"10.0.0.1:8000", "10.0.0.2:8000"} {
		next := uint64(i * 1000)
		publishUntil(t, pubs[i], &next, func() bool { return len(idx.storedFirsts(id)) > 0 })
	}
	for range 5 {
		_, err := pubs[2].Publish(storedBatch(5, "GPU"), kvevents.MapCurrent)
		require.NoError(t, err)
	}
	assert.Equal(t, 2, sub.Stats().Sources, "the SUB filter keeps other topics out")
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		give, ep, model string
		ok              bool
	}{
		{"kv@10.0.0.1:8000@meta-llama/Llama-3.1-8B", "10.0.0.1:8000", "meta-llama/Llama-3.1-8B", true},
		{"kv@[::1]:8000@m", "[::1]:8000", "m", true},
		{"kv@pod@", "pod", "", true},
		{"", "", "", false},
		{"kv@nomodel", "", "", false},
		{"foo@a@b", "", "", false},
	}
	for _, tt := range tests {
		ep, model, ok := kvevents.ParseTopic(tt.give)
		assert.Equal(t, tt.ok, ok, tt.give)
		assert.Equal(t, tt.ep, ep, tt.give)
		assert.Equal(t, tt.model, model, tt.give)
	}
}

// TestDuplicateRemovals: a store published twice (vLLM holding one hash in
// two physical blocks, or its offloading connector storing it again) and
// its removals all reach the index, each once: counting copies is the
// index's job, and a removal held back here would leave the block in a
// counting index forever.
func TestDuplicateRemovals(t *testing.T) {
	p := newPublisher(t, kvpublish.Config{})
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx)
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint()}))
	runSubscriber(t, sub)
	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })

	h := []kvevents.Hash{kvevents.HashUint64(424242)}
	batch := func(typ kvevents.EventType) {
		_, err := p.Publish(&kvevents.Batch{TS: 1, Events: []kvevents.Event{{Type: typ, BlockHashes: h, Medium: kvevents.Some("CPU")}}}, kvevents.MapCurrent)
		require.NoError(t, err)
	}
	batch(kvevents.BlockStored)
	batch(kvevents.BlockStored)
	batch(kvevents.BlockRemoved)
	batch(kvevents.BlockRemoved)
	batch(kvevents.BlockRemoved)
	_, err := p.Publish(storedBatch(999999, "GPU"), kvevents.MapCurrent)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "sentinel", func() bool {
		f := idx.storedFirsts("a")
		return f[len(f)-1] == 999999
	})
	var stores, removes int
	for _, c := range idx.snapshot() {
		if c.op != "apply" || len(c.hashes) != 1 || c.hashes[0] != 424242 {
			continue
		}
		switch c.typ {
		case kvevents.BlockStored:
			stores++
		case kvevents.BlockRemoved:
			removes++
		}
	}
	assert.Equal(t, 2, stores, "both stores reach the index")
	assert.Equal(t, 3, removes, "every removal reaches the index, once")
}

// TestDuplicateStoresEndToEnd: through the real kvcache index, a block
// whose hash is stored twice stays until its second BlockRemoved and is
// gone after it.
func TestDuplicateStoresEndToEnd(t *testing.T) {
	tests := []struct {
		name       string
		removes    int
		want       int32 // GPU blocks matched afterwards
		unresolved int64 // removals of a hash the index no longer maps
	}{
		{"stored twice, removed twice", 2, 0, 0},
		{"stored twice, removed once", 1, 1, 0},
		{"stored twice, removed three times", 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hasher, err := prefix.NewHasher("m", prefix.WithBlockSize(16))
			require.NoError(t, err)
			idx, err := kvcache.New(hasher)
			require.NoError(t, err)
			p := newPublisher(t, kvpublish.Config{})
			sub := newSubscriber(t, kvevents.NewKVCacheIndex(idx))
			require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint()}))
			runSubscriber(t, sub)

			// gpuBlocks is how many GPU blocks of batch i's tokens "a" holds.
			gpuBlocks := func(b *kvevents.Batch) int32 {
				keys := hasher.AppendKeys(nil, b.Events[0].TokenIDs, prefix.Extra{})
				m := make([]kvcache.Match, 1)
				_, err := idx.Lookup(keys, []string{"a"}, m)
				require.NoError(t, err)
				return m[0].Blocks[kvcache.TierGPU]
			}
			var next uint64
			publishUntil(t, p, &next, func() bool { return next > 0 && gpuBlocks(storedBatch(next-1, "GPU")) == 1 })

			target := storedBatch(424242, "GPU")
			publish := func(b *kvevents.Batch) {
				_, err := p.Publish(b, kvevents.MapCurrent)
				require.NoError(t, err)
			}
			publish(target)
			publish(target)
			for range tt.removes {
				publish(&kvevents.Batch{TS: 1, Events: []kvevents.Event{{Type: kvevents.BlockRemoved,
					BlockHashes: []kvevents.Hash{kvevents.HashUint64(424242)}, Medium: kvevents.Some("GPU")}}})
			}
			// One source is applied in order: once the sentinel is in, so
			// is everything before it.
			sentinel := storedBatch(999999, "GPU")
			publish(sentinel)
			waitFor(t, 5*time.Second, "sentinel", func() bool { return gpuBlocks(sentinel) == 1 })

			assert.Equal(t, tt.want, gpuBlocks(target))
			st := sub.Stats()
			assert.Zero(t, st.ApplyErrors)
			assert.Zero(t, st.Gaps, "no message lost: the counts above are exact")
			assert.Equal(t, tt.unresolved, idx.Stats().UnresolvedHashes)
		})
	}
}

func TestNewSubscriberErrors(t *testing.T) {
	_, err := kvevents.NewSubscriber(nil)
	assert.Error(t, err)
	_, err = kvevents.NewSubscriber(&fakeIndex{}, kvevents.WithShards(0))
	assert.Error(t, err)
	ep := freeEndpoint(t)
	s := newSubscriber(t, &fakeIndex{}, kvevents.WithBind(ep, 1))
	assert.Error(t, s.Add(kvevents.Source{}))
	stop := runSubscriber(t, s)
	// Once the bind socket accepts connections, Run is active.
	waitFor(t, 10*time.Second, "bound socket", func() bool {
		c, err := net.Dial("tcp", ep[len("tcp://"):])
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	done, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, s.Run(done), kvevents.ErrRunning)
	stop()
}

func TestBindError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	s := newSubscriber(t, &fakeIndex{}, kvevents.WithBind("tcp://"+l.Addr().String(), 1))
	assert.Error(t, s.Run(context.Background()))
}

func port(t testing.TB, ep string) int {
	_, ps, err := net.SplitHostPort(ep[len("tcp://"):])
	require.NoError(t, err)
	n, err := strconv.Atoi(ps)
	require.NoError(t, err)
	return n
}

// freeEndpoint returns a loopback endpoint whose port was free a moment ago.
func freeEndpoint(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ep := "tcp://" + l.Addr().String()
	require.NoError(t, l.Close())
	return ep
}

// futureEvent is a batch holding one event of a type vLLM may add later.
var futureEvent = []byte("\x93\xcb\x41\xda\x55\x6e\x40\x20\x00\x00\x91\x82\xa4type\xabFutureEvent\xa1x\x01\x00")

// TestBindDataParallelRanks: engines of rank r connect to the bind port + r
// (vLLM offsets the port it connects to); the subscriber binds one socket
// per rank and keys the sources by topic and rank. It also checks the lag
// metric against an injected clock.
func TestBindDataParallelRanks(t *testing.T) {
	ep := freeEndpointPair(t)
	idx := &fakeIndex{}
	now := time.Unix(1767225610, 500_000_000)
	sub := newSubscriber(t, idx, kvevents.WithBind(ep, 2), kvevents.WithClock(func() time.Time { return now }))
	runSubscriber(t, sub)
	for rank, id := range []string{"10.0.0.9:8000", "10.0.0.9:8000@dp1"} {
		p := newPublisher(t, kvpublish.Config{Endpoint: ep, Topic: "kv@10.0.0.9:8000@m", Mode: kvpublish.ModeConnect,
			DataParallelRank: rank})
		runPublisher(t, p)
		next := uint64(rank * 1000)
		publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts(id)) > 0 })
	}
	assert.Equal(t, 2, sub.Stats().Sources)
	assert.Equal(t, 10*time.Second, sub.Stats().Lag)
}

// freeEndpointPair returns a loopback endpoint whose port and the next one
// were free a moment ago.
func freeEndpointPair(t testing.TB) string {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return "tcp://127.0.0.1:" + strconv.Itoa(p)
		}
	}
	t.Fatal("no two consecutive free ports")
	return ""
}

// TestGapWithoutReplay: with no replay socket, a short gap is counted and
// the following events applied; a gap longer than WithMaxGap clears the
// source first.
func TestGapWithoutReplay(t *testing.T) {
	var drop atomic.Int64
	drop.Store(-1)
	var dropN atomic.Int64
	p := newPublisher(t, kvpublish.Config{Drop: func(seq uint64) bool {
		f := drop.Load()
		return f >= 0 && int64(seq) >= f && int64(seq) < f+dropN.Load()
	}})
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx, kvevents.WithMaxGap(3))
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint()}))
	runSubscriber(t, sub)
	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("a")) > 0 })

	gap := func(n int64) {
		dropN.Store(n)
		drop.Store(int64(next))
		for range n { // published, but dropped before the wire
			_, err := p.Publish(storedBatch(next, "GPU"), kvevents.MapCurrent)
			require.NoError(t, err)
			next++
		}
		_, err := p.Publish(storedBatch(next, "GPU"), kvevents.MapCurrent)
		require.NoError(t, err)
		want := next
		next++
		waitFor(t, 5*time.Second, "the event after the gap", func() bool {
			f := idx.storedFirsts("a")
			return f[len(f)-1] == want
		})
	}
	gap(2)
	assert.Zero(t, idx.count("clear", "a"), "a short gap does not clear")
	gap(5)
	assert.Equal(t, 1, idx.count("clear", "a"), "a long gap clears")
	st := sub.Stats()
	assert.Equal(t, uint64(2), st.Gaps)
	assert.Equal(t, uint64(7), st.MissedMessages)
	assert.Zero(t, st.Replays)
}

// TestAddRemoveLifecycle: sources can be managed before Run; replacing a
// source's address drops its blocks; removing one while not running drops
// it at once.
func TestAddRemoveLifecycle(t *testing.T) {
	idx := &fakeIndex{}
	s := newSubscriber(t, idx)
	require.NoError(t, s.Add(kvevents.Source{ID: "a", Endpoint: "tcp://127.0.0.1:1"}))
	require.NoError(t, s.Add(kvevents.Source{ID: "a", Endpoint: "tcp://127.0.0.1:1"})) // same: no-op
	assert.Empty(t, idx.snapshot())
	require.NoError(t, s.Add(kvevents.Source{ID: "a", Endpoint: "tcp://127.0.0.1:2"}))
	assert.Equal(t, 1, idx.count("drop", "a"), "a new address is a new engine")
	assert.True(t, s.Remove("a"))
	assert.Equal(t, 2, idx.count("drop", "a"))
	assert.False(t, s.Remove("a"))
	assert.Zero(t, s.Stats().Sources)

	// A source added while running is subscribed at once.
	p := newPublisher(t, kvpublish.Config{})
	runSubscriber(t, s)
	require.NoError(t, s.Add(kvevents.Source{ID: "b", Endpoint: p.Endpoint()}))
	var next uint64
	publishUntil(t, p, &next, func() bool { return len(idx.storedFirsts("b")) > 0 })
}

func TestWriteMetrics(t *testing.T) {
	s := newSubscriber(t, &fakeIndex{})
	require.NoError(t, s.Add(kvevents.Source{ID: "a", Endpoint: "tcp://127.0.0.1:1"}))
	var buf strings.Builder
	require.NoError(t, s.WriteMetrics(&buf))
	out := buf.String()
	assert.Contains(t, out, "# TYPE routekit_kvevents_events_applied_total counter\nroutekit_kvevents_events_applied_total 0\n")
	assert.Contains(t, out, "routekit_kvevents_sources 1\n")
	assert.Contains(t, out, "# TYPE routekit_kvevents_lag_seconds gauge\n")
	assert.Contains(t, out, `routekit_kvevents_source_last_seq{source="a"} 0`)
	ss, ok := s.SourceStats("a")
	assert.True(t, ok)
	assert.Zero(t, ss)
	_, ok = s.SourceStats("nope")
	assert.False(t, ok)
}

// TestLateJoinSingleBatch: an engine publishes one batch just as the
// subscriber connects, then goes quiet. Whether PUB delivered it or dropped
// it before the subscription arrived, the subscriber applies it: live, or
// through the catch-up replays it makes until a live message arrives.
func TestLateJoinSingleBatch(t *testing.T) {
	p := newPublisher(t, kvpublish.Config{ReplayEndpoint: "tcp://127.0.0.1:0"})
	runPublisher(t, p)
	idx := &fakeIndex{}
	sub := newSubscriber(t, idx)
	require.NoError(t, sub.Add(kvevents.Source{ID: "a", Endpoint: p.Endpoint(), ReplayEndpoint: p.ReplayEndpoint()}))
	runSubscriber(t, sub)
	waitFor(t, 10*time.Second, "connection", func() bool { return sub.Stats().Replays >= 1 })
	_, err := p.Publish(storedBatch(42, "GPU"), kvevents.MapCurrent)
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "the single batch", func() bool { return len(idx.storedFirsts("a")) == 1 })
	assert.Equal(t, []uint64{42}, idx.storedFirsts("a"))
}
