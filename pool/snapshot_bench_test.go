package pool_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/routekit/routekit/pool"
)

// naivePool is the baseline: endpoints in a map guarded by an RWMutex, live
// state copied out under the lock, as a datastore built on a locked map does.
type naivePool struct {
	mu  sync.RWMutex
	eps map[string]*naiveEndpoint
}

type naiveEndpoint struct {
	id       string
	metrics  pool.Metrics
	inflight int64
}

// BenchmarkReadEndpoints measures what a scheduler does per request: read
// every endpoint's queue, KV usage and in-flight count, with a writer
// updating one endpoint's metrics every 100 µs meanwhile. routekit reads an
// atomic snapshot; the naive baseline a locked map.
func BenchmarkReadEndpoints(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		p := pool.New()
		np := &naivePool{eps: map[string]*naiveEndpoint{}}
		for i := range n {
			id := fmt.Sprint("ep-", i)
			_ = p.Store(pool.Endpoint{ID: id, Address: "127.0.0.1:8000"})
			np.eps[id] = &naiveEndpoint{id: id}
		}
		writer := func(write func(i int)) func() {
			stop := make(chan struct{})
			var done sync.WaitGroup
			done.Go(func() {
				t := time.NewTicker(100 * time.Microsecond)
				defer t.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
						write(i)
					}
				}
			})
			return func() { close(stop); done.Wait() }
		}
		b.Run(fmt.Sprintf("endpoints=%d/routekit", n), func(b *testing.B) {
			eps := p.Snapshot().Endpoints()
			stop := writer(func(i int) { eps[i%n].StoreMetrics(pool.Metrics{Waiting: i, KVCacheUsage: 0.5}) })
			defer stop()
			b.ReportAllocs()
			var sink atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				var s float64
				for pb.Next() {
					for _, e := range p.Snapshot().Endpoints() {
						m := e.Metrics()
						s += float64(m.Waiting+m.Running) + m.KVCacheUsage + float64(e.Load().Requests)
					}
				}
				sink.Add(int64(s))
			})
		})
		b.Run(fmt.Sprintf("endpoints=%d/naive-rwmutex-map", n), func(b *testing.B) {
			ids := make([]string, 0, n)
			for id := range np.eps {
				ids = append(ids, id)
			}
			stop := writer(func(i int) {
				np.mu.Lock()
				np.eps[ids[i%n]].metrics = pool.Metrics{Waiting: i, KVCacheUsage: 0.5}
				np.mu.Unlock()
			})
			defer stop()
			b.ReportAllocs()
			var sink atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				var s float64
				for pb.Next() {
					np.mu.RLock()
					for _, e := range np.eps {
						m := e.metrics
						s += float64(m.Waiting+m.Running) + m.KVCacheUsage + float64(e.inflight)
					}
					np.mu.RUnlock()
				}
				sink.Add(int64(s))
			})
		})
	}
}
