package pooltest

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPyFloat checks sample values against what prometheus_client 0.16
// renders for them (prometheus_client.utils.floatToGoString, run with
// Debian's python3-prometheus-client): Python's repr, except that positive
// values from 10^6 up to 10^16 get a Go-style exponent, zero-padded to three
// digits from 10^10 on.
func TestPyFloat(t *testing.T) {
	tests := []struct {
		give float64
		want string
	}{
		{0, "0.0"},
		{3, "3.0"},
		{0.25, "0.25"},
		{1e-5, "1e-05"},
		{0.0001, "0.0001"},
		{123456, "123456.0"},
		{1843200, "1.8432e+06"},
		{1234567.125, "1.234567125e+06"},
		{1767225001.5, "1.7672250015e+09"},
		{1e10, "1e+010"},
		{12345678901, "1.2345678901e+010"},
		{99999999999999, "9.9999999999999e+013"},
		{1e15, "1e+015"},
		{1e16, "1e+16"},
		{1.5e17, "1.5e+17"},
		{1e300, "1e+300"},
		{-2.5, "-2.5"},
		{-1e6, "-1000000.0"},
		{0.30000000000000004, "0.30000000000000004"},
		{5e-324, "5e-324"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, pyFloat(tt.give), "%v", tt.give)
	}
}
