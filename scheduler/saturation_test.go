package scheduler

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSaturation(t *testing.T) {
	tests := []struct {
		name      string
		det       Saturation
		give      []ep
		wantLevel float64
	}{
		{"idle", Saturation{}, []ep{{}, {}}, 0},
		{"queue threshold 5", Saturation{}, []ep{{waiting: 5}, {waiting: 0}}, 0.5},
		{"kv threshold 0.8", Saturation{}, []ep{{kv: 0.8}, {kv: 0.4}}, 0.75},
		{"max of queue and kv", Saturation{}, []ep{{waiting: 10, kv: 0.4}}, 2},
		{"custom thresholds", Saturation{QueueThreshold: 10, KVThreshold: 0.5}, []ep{{waiting: 5, kv: 0.25}}, 0.5},
		{"gateway in-flight", Saturation{MaxInFlight: 4}, []ep{{inflight: 4}, {inflight: 2}}, 0.75},
		{"in-flight tokens", Saturation{MaxInFlightTokens: 1000}, []ep{{inflight: 1, tokens: 500}}, 0.5},
		{"stale counts as full", Saturation{}, []ep{{stale: true}, {}}, 0.5},
		{"stale ignored", Saturation{Stale: StaleIgnore}, []ep{{stale: true}, {waiting: 1}}, 0.2},
		{"all stale ignored is saturated", Saturation{Stale: StaleIgnore}, []ep{{stale: true}}, 1},
		{"stale load only: in-flight terms", Saturation{Stale: StaleLoadOnly, MaxInFlight: 4}, []ep{{stale: true, waiting: 50, inflight: 1}, {inflight: 3}}, 0.5},
		{"stale load only: all stale, under the cap", Saturation{Stale: StaleLoadOnly, MaxInFlight: 4}, []ep{{stale: true, kv: 1}, {stale: true, inflight: 2}}, 0.25},
		{"stale load only: all stale, at the cap", Saturation{Stale: StaleLoadOnly, MaxInFlightTokens: 100}, []ep{{stale: true, inflight: 1, tokens: 100}}, 1},
		{"stale load only without limits is ignore", Saturation{Stale: StaleLoadOnly}, []ep{{stale: true}, {waiting: 1}}, 0.2},
		{"stale load only without limits, all stale", Saturation{Stale: StaleLoadOnly}, []ep{{stale: true}}, 1},
		{"no endpoints is saturated", Saturation{}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.det.Validate())
			eps, _ := fleet(t, tt.give...)
			assert.InDelta(t, tt.wantLevel, tt.det.Level(eps), 1e-12)
			assert.Equal(t, tt.wantLevel >= 1, tt.det.Saturated(eps))
		})
	}
}

func TestSaturationValidateAndAdmit(t *testing.T) {
	for _, s := range []Saturation{{QueueThreshold: -1}, {KVThreshold: -0.5}, {MaxInFlight: -1}, {Stale: StaleLoadOnly + 1}} {
		assert.Error(t, s.Validate(), "%+v", s)
	}
	det := Saturation{}
	busy, _ := fleet(t, ep{waiting: 9})
	idle, _ := fleet(t, ep{})
	assert.NoError(t, det.Admit(&Request{Priority: -1}, idle))
	assert.NoError(t, det.Admit(&Request{Priority: 0}, busy))
	err := det.Admit(&Request{Priority: -1}, busy)
	assert.Equal(t, ReasonSaturated, DropReason(err))
	assert.Equal(t, 429, HTTPStatus(err))
	err = det.Admit(&Request{}, nil)
	assert.Equal(t, 503, HTTPStatus(err))
	assert.ErrorIs(t, err, ErrNoEndpoints)
}
