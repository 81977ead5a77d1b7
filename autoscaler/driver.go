package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Observer samples the fleet serving one model. Implementations scrape the
// replicas' /metrics (package pool), read pod readiness and the scale
// subresource, and read the gateway queue from the scheduler's flow control.
// A [Driver] calls Observe from one goroutine at a time (Step is serialised);
// an Observer shared by several Drivers must be safe for concurrent use.
type Observer interface {
	Observe(ctx context.Context) (Observation, error)
}

// ObserverFunc adapts a function to the Observer interface.
// The function is called as [Observer] describes, so it is safe for concurrent
// use exactly when the function is.
type ObserverFunc func(ctx context.Context) (Observation, error)

// Observe calls f(ctx).
func (f ObserverFunc) Observe(ctx context.Context) (Observation, error) { return f(ctx) }

// Actuator applies a desired replica count to a pool, for example through
// the Kubernetes scale subresource (see the examples module), by publishing a
// gauge for an HPA or KEDA, or by logging only (advisory mode).
// A [Driver] calls Scale from one goroutine at a time (Step is serialised);
// an Actuator shared by several Drivers must be safe for concurrent use.
type Actuator interface {
	Scale(ctx context.Context, pool string, replicas int) error
}

// ActuatorFunc adapts a function to the Actuator interface.
// The function is called as [Actuator] describes, so it is safe for concurrent
// use exactly when the function is.
type ActuatorFunc func(ctx context.Context, pool string, replicas int) error

// Scale calls f(ctx, pool, replicas).
func (f ActuatorFunc) Scale(ctx context.Context, pool string, replicas int) error {
	return f(ctx, pool, replicas)
}

var (
	_ Observer = ObserverFunc(nil)
	_ Actuator = ActuatorFunc(nil)
)

// Driver runs Decide in a loop: every interval it observes the fleet, decides
// and calls the Actuator for each pool whose desired count changed. It holds
// the State between decisions. A Driver is safe for concurrent use: Run must
// be called at most once at a time, while Wake, Last and Step may be called
// from any goroutine.
type Driver struct {
	cfg          *Config
	observer     Observer
	actuator     Actuator
	interval     time.Duration
	idleInterval time.Duration
	now          func() time.Time
	hook         func(Decision, error)
	wake         chan struct{}

	mu   sync.Mutex // guards st, last and serialises Step
	st   State
	last Decision
}

// Option configures a Driver.
// Options are immutable values, safe to reuse for several Drivers.
type Option interface{ apply(*Driver) }

type optionFunc func(*Driver)

func (f optionFunc) apply(d *Driver) { f(d) }

// WithInterval sets the time between decisions; default 15 s (the HPA's sync
// period). Non-positive values are ignored.
func WithInterval(d time.Duration) Option {
	return optionFunc(func(dr *Driver) {
		if d > 0 {
			dr.interval = d
		}
	})
}

// WithIdleInterval sets the time between decisions while every pool is at
// zero replicas, when the only signal is the gateway queue; default 1 s.
// Calling Wake from the gateway when it queues a request makes scale from
// zero immediate regardless.
func WithIdleInterval(d time.Duration) Option {
	return optionFunc(func(dr *Driver) {
		if d > 0 {
			dr.idleInterval = d
		}
	})
}

// WithClock sets the clock passed to Decide; default time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(dr *Driver) {
		if now != nil {
			dr.now = now
		}
	})
}

// WithDecisionHook sets a function called after every decision with the
// decision and the error of that cycle (observation or actuation), outside
// the Driver's lock. Use it for logs and metrics.
func WithDecisionHook(f func(Decision, error)) Option {
	return optionFunc(func(dr *Driver) { dr.hook = f })
}

// NewDriver returns a Driver for cfg. It validates cfg and starts nothing;
// call Run.
func NewDriver(cfg *Config, o Observer, a Actuator, opts ...Option) (*Driver, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o == nil || a == nil {
		return nil, errors.New("autoscaler: driver needs an observer and an actuator")
	}
	d := &Driver{cfg: cfg, observer: o, actuator: a, interval: 15 * time.Second,
		idleInterval: time.Second, now: time.Now, wake: make(chan struct{}, 1)}
	for _, opt := range opts {
		opt.apply(d)
	}
	return d, nil
}

// Wake asks a running Driver to decide now instead of at the next tick. It
// never blocks. A gateway calls it when it queues a request for a model
// whose pools are at zero.
func (d *Driver) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Last returns the most recent decision (the zero Decision before the first).
func (d *Driver) Last() Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Step runs one cycle: observe, decide, actuate. If observing fails the
// decision holds every pool at the last decided count and nothing is
// actuated. If an actuation fails, the other pools are still actuated and
// the State is not advanced, so the next cycle starts from what the fleet
// reports. The returned error joins every failure of the cycle.
func (d *Driver) Step(ctx context.Context) (Decision, error) {
	d.mu.Lock()
	dec, err := d.stepLocked(ctx)
	d.mu.Unlock()
	if d.hook != nil {
		d.hook(dec, err)
	}
	return dec, err
}

func (d *Driver) stepLocked(ctx context.Context) (Decision, error) {
	now := d.now()
	obs, err := d.observer.Observe(ctx)
	if err != nil {
		err = fmt.Errorf("autoscaler: observe: %w", err)
		hold := Decision{At: now, Err: err}
		for _, p := range d.last.Pools {
			hold.Pools = append(hold.Pools, PoolDecision{Name: p.Name, Current: p.Desired, Desired: p.Desired,
				Reasons: []string{"hold: observation failed"}})
		}
		d.last = hold
		return hold, err
	}
	dec, st := Decide(d.cfg, d.st, obs, now)
	d.last = dec
	if dec.Err != nil {
		return dec, dec.Err
	}
	var errs []error
	for _, p := range dec.Pools {
		if p.Desired == p.Current {
			continue
		}
		if aerr := d.actuator.Scale(ctx, p.Name, p.Desired); aerr != nil {
			errs = append(errs, fmt.Errorf("autoscaler: scale %s to %d: %w", p.Name, p.Desired, aerr))
		}
	}
	if len(errs) > 0 {
		return dec, errors.Join(errs...)
	}
	d.st = st
	return dec, nil
}

// Run decides every interval (every idle interval while all pools are at
// zero, and at once on Wake) until ctx is done, then returns ctx.Err().
// Errors of single cycles do not stop it; they reach the decision hook.
func (d *Driver) Run(ctx context.Context) error {
	for {
		dec, _ := d.Step(ctx)
		wait := d.interval
		if atZero(dec) {
			wait = d.idleInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-d.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func atZero(d Decision) bool {
	if len(d.Pools) == 0 {
		return false
	}
	for _, p := range d.Pools {
		if p.Desired != 0 {
			return false
		}
	}
	return true
}
