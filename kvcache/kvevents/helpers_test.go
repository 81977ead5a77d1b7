package kvevents_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
)

// call is one call the fake index received.
type call struct {
	op       string // "apply", "clear", "drop"
	endpoint string
	typ      kvevents.EventType
	hashes   []uint64
	medium   string
}

// fakeIndex records calls in order. It is safe for concurrent use.
type fakeIndex struct {
	mu    sync.Mutex
	calls []call
	fail  func(e *kvevents.Event) error
}

func (f *fakeIndex) Apply(endpoint string, e *kvevents.Event) error {
	c := call{op: "apply", endpoint: endpoint, typ: e.Type, medium: e.Medium.V}
	for _, h := range e.BlockHashes {
		c.hashes = append(c.hashes, h.Uint64())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.fail != nil {
		return f.fail(e)
	}
	return nil
}

func (f *fakeIndex) Clear(endpoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{op: "clear", endpoint: endpoint})
	return nil
}

func (f *fakeIndex) Drop(endpoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{op: "drop", endpoint: endpoint})
	return nil
}

func (f *fakeIndex) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// storedFirsts returns, in order, the first hash of each BlockStored
// applied for endpoint: the tests publish batch i with hash i.
func (f *fakeIndex) storedFirsts(endpoint string) []uint64 {
	var out []uint64
	for _, c := range f.snapshot() {
		if c.op == "apply" && c.endpoint == endpoint && c.typ == kvevents.BlockStored {
			out = append(out, c.hashes[0])
		}
	}
	return out
}

func (f *fakeIndex) count(op, endpoint string) int {
	n := 0
	for _, c := range f.snapshot() {
		if c.op == op && c.endpoint == endpoint {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the timeout expires.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storedBatch is batch i: one BlockStored of one block whose hash is i.
func storedBatch(i uint64, medium string) *kvevents.Batch {
	e := kvevents.Event{
		Type:        kvevents.BlockStored,
		BlockHashes: []kvevents.Hash{kvevents.HashUint64(i)},
		TokenIDs:    make([]uint32, 16),
		BlockSize:   16,
		Medium:      kvevents.Some(medium),
	}
	for j := range e.TokenIDs {
		e.TokenIDs[j] = uint32(i*16) + uint32(j)
	}
	return &kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{e}}
}

func newPublisher(t testing.TB, cfg kvpublish.Config) *kvpublish.Publisher {
	t.Helper()
	if cfg.Endpoint == "" {
		cfg.Endpoint = "tcp://127.0.0.1:0"
	}
	if cfg.Mode == 0 {
		cfg.Mode = kvpublish.ModeBind
	}
	p, err := kvpublish.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// runPublisher serves p's replay socket for the test's lifetime.
func runPublisher(t testing.TB, p *kvpublish.Publisher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// runSubscriber runs s for the test's lifetime and checks Run's result.
func runSubscriber(t testing.TB, s *kvevents.Subscriber) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// publishUntil publishes batches with increasing hashes, starting at
// *next, until cond holds (PUB drops what is published before the
// subscription reaches it).
func publishUntil(t testing.TB, p *kvpublish.Publisher, next *uint64, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("subscriber never received the publisher's messages")
		}
		_, err := p.Publish(storedBatch(*next, "GPU"), kvevents.MapCurrent)
		require.NoError(t, err)
		*next++
		time.Sleep(5 * time.Millisecond)
	}
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func describe(calls []call) string {
	s := ""
	for _, c := range calls {
		s += fmt.Sprintf("%s %s %v %v; ", c.op, c.endpoint, c.typ, c.hashes)
	}
	return s
}
