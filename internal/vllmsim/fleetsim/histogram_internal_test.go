package fleetsim

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var all []time.Duration
	for range 100000 {
		d := time.Duration(rng.ExpFloat64() * float64(30*time.Millisecond))
		h.add(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, p := range []float64{0.5, 0.9, 0.99} {
		exact := all[int(p*float64(len(all)))-1]
		got := h.quantile(p)
		assert.InEpsilon(t, float64(exact), float64(got), 0.01, "p%v", p)
		assert.GreaterOrEqual(t, got, exact) // an upper bound
	}
	var empty histogram
	assert.Equal(t, Quantiles{}, empty.quantiles())
	empty.add(0)
	assert.Equal(t, time.Duration(0), empty.quantile(0.5))
}
