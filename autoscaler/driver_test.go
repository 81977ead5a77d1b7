package autoscaler_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/autoscaler"
)

// fakeFleet is an observer and actuator over one pool whose replicas become
// ready at once, with a scripted gateway queue and KV usage.
type fakeFleet struct {
	mu       sync.Mutex // guards every field below
	desired  int
	kv       float64
	queue    int
	failObs  bool
	failAct  bool
	observed int
	scaled   []int
	times    []time.Time
}

func (f *fakeFleet) Observe(context.Context) (autoscaler.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observed++
	f.times = append(f.times, time.Now())
	if f.failObs {
		return autoscaler.Observation{}, errors.New("scrape failed")
	}
	po := autoscaler.PoolObservation{Name: "p", Desired: f.desired}
	for range f.desired {
		po.Replicas = append(po.Replicas, autoscaler.Replica{Ready: true, Since: time.Now().Add(-time.Hour),
			Metrics: autoscaler.Metrics{SampledAt: time.Now(), KVUsage: f.kv}})
	}
	return autoscaler.Observation{Pools: []autoscaler.PoolObservation{po}, GatewayQueue: f.queue, ArrivalRate: 0}, nil
}

func (f *fakeFleet) Scale(_ context.Context, pool string, n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAct {
		return errors.New("conflict")
	}
	f.desired = n
	f.scaled = append(f.scaled, n)
	return nil
}

func (f *fakeFleet) set(fn func(f *fakeFleet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeFleet) get() fakeFleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeFleet{desired: f.desired, observed: f.observed, scaled: append([]int(nil), f.scaled...), times: append([]time.Time(nil), f.times...)}
}

func driverConfig() *autoscaler.Config {
	return &autoscaler.Config{
		Pools:       []autoscaler.Pool{{Name: "p", Min: 0, Max: 10}},
		Analyzer:    autoscaler.Saturation{},
		ScaleToZero: true,
		ScaleUp:     &autoscaler.ScalingRules{},
		ScaleDown:   &autoscaler.ScalingRules{},
	}
}

func TestDriverRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFleet{desired: 2, kv: 0.79}
		var hooked []autoscaler.Decision
		var hmu sync.Mutex
		d, err := autoscaler.NewDriver(driverConfig(), f, f, autoscaler.WithInterval(10*time.Second),
			autoscaler.WithDecisionHook(func(dec autoscaler.Decision, _ error) {
				hmu.Lock()
				hooked = append(hooked, dec)
				hmu.Unlock()
			}))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()

		synctest.Wait() // first decision at once: KV 0.79 on 2 replicas → 3
		assert.Equal(t, 3, f.get().desired)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		g := f.get()
		assert.Equal(t, 2, g.observed)
		assert.Equal(t, 10*time.Second, g.times[1].Sub(g.times[0]), "interval")

		// Wake decides now instead of at the next tick.
		f.set(func(f *fakeFleet) { f.kv = 0.1 })
		d.Wake()
		synctest.Wait()
		assert.Equal(t, 3, f.get().observed)
		assert.Equal(t, g.times[1], f.get().times[2], "no virtual time passed")

		cancel()
		synctest.Wait()
		assert.ErrorIs(t, <-done, context.Canceled)
		hmu.Lock()
		assert.Len(t, hooked, 3)
		hmu.Unlock()
		assert.Equal(t, f.get().desired, d.Last().Pools[0].Desired)
	})
}

func TestDriverScaleFromZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFleet{desired: 0}
		d, err := autoscaler.NewDriver(driverConfig(), f, f, autoscaler.WithInterval(time.Minute), autoscaler.WithIdleInterval(100*time.Millisecond))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = d.Run(ctx) }()
		synctest.Wait()
		assert.Equal(t, 0, f.get().desired)
		start := time.Now()
		f.set(func(f *fakeFleet) { f.queue = 1 })
		time.Sleep(100 * time.Millisecond) // idle interval while at zero
		synctest.Wait()
		assert.Equal(t, 1, f.get().desired, "0→1 within one idle interval")
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		assert.Contains(t, d.Last().Pools[0].Reasons[0], "scale-from-zero")
	})
}

func TestDriverFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeFleet{desired: 2, kv: 0.79}
		d, err := autoscaler.NewDriver(driverConfig(), f, f, autoscaler.WithClock(time.Now))
		require.NoError(t, err)
		ctx := t.Context()

		dec, err := d.Step(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, dec.Pools[0].Desired)

		f.set(func(f *fakeFleet) { f.failObs = true })
		dec, err = d.Step(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "scrape failed")
		assert.False(t, dec.Changed(), "hold on observation failure")
		assert.Equal(t, 3, dec.Pools[0].Desired)
		assert.Equal(t, []string{"hold: observation failed"}, dec.Pools[0].Reasons)

		f.set(func(f *fakeFleet) { f.failObs, f.failAct, f.kv = false, true, 0.95 })
		_, err = d.Step(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "autoscaler: scale p to 5: conflict")
		assert.Equal(t, 3, f.get().desired)
	})
	_, err := autoscaler.NewDriver(&autoscaler.Config{}, nil, nil)
	assert.ErrorIs(t, err, autoscaler.ErrInvalidConfig)
	_, err = autoscaler.NewDriver(nil, nil, nil)
	assert.ErrorIs(t, err, autoscaler.ErrInvalidConfig)
	_, err = autoscaler.NewDriver(driverConfig(), nil, nil)
	assert.Error(t, err)
}
