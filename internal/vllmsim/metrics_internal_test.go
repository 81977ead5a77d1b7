package vllmsim

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPyFloatMatchesPrometheusClient(t *testing.T) {
	tests := []struct {
		give float64
		want string
	}{
		{7, "7.0"},
		{0, "0.0"},
		{0.4183, "0.4183"},
		{1843200, "1.8432e+06"},
		{1105920, "1.10592e+06"},
		{211456, "211456.0"},
		{1767225000, "1.767225e+09"},
		{1767224990.25, "1.76722499025e+09"},
		{1767225001.5, "1.7672250015e+09"},
		{1000000, "1e+06"},
		{0.001, "0.001"},
		{2560, "2560.0"},
		{0.00001, "1e-05"},
		{1.5e-7, "1.5e-07"},
		{-3.25, "-3.25"},
		{1e16, "1e+16"},
		{1234567890123456, "1.234567890123456e+015"}, // the client's "e+0" quirk
		{32490, "32490.0"},
		{7.018, "7.018"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pyFloat(tt.give), "%v", tt.give)
	}
}

func TestTokenBucketsMatchVLLM(t *testing.T) {
	assert.Equal(t, []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}, tokenBuckets(40960))
}
