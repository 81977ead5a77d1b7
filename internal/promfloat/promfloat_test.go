package promfloat_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/routekit/routekit/internal/promfloat"
)

// TestFormat checks values against what prometheus_client 0.16 renders for
// them (prometheus_client.utils.floatToGoString, run with Debian's
// python3-prometheus-client), and the values of a real vLLM page.
func TestFormat(t *testing.T) {
	tests := []struct {
		give float64
		want string
	}{
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{3, "3.0"},
		{7, "7.0"},
		{0.25, "0.25"},
		{0.4183, "0.4183"},
		{7.018, "7.018"},
		{0.001, "0.001"},
		{0.0001, "0.0001"},
		{1e-5, "1e-05"},
		{1.5e-7, "1.5e-07"},
		{2560, "2560.0"},
		{32490, "32490.0"},
		{123456, "123456.0"},
		{211456, "211456.0"},
		{1000000, "1e+06"},
		{1105920, "1.10592e+06"},
		{1843200, "1.8432e+06"},
		{1234567.125, "1.234567125e+06"},
		{1767225000, "1.767225e+09"},
		{1767224990.25, "1.76722499025e+09"},
		{1767225001.5, "1.7672250015e+09"},
		{1e10, "1e+010"},
		{12345678901, "1.2345678901e+010"},
		{99999999999999, "9.9999999999999e+013"},
		{1e15, "1e+015"},
		{1234567890123456, "1.234567890123456e+015"},
		{1e16, "1e+16"},
		{1.5e17, "1.5e+17"},
		{1e300, "1e+300"},
		{-2.5, "-2.5"},
		{-3.25, "-3.25"},
		{-1e6, "-1000000.0"},
		{0.30000000000000004, "0.30000000000000004"},
		{5e-324, "5e-324"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, promfloat.Format(tt.give), "%v", tt.give)
	}
}

func ExampleFormat() {
	for _, v := range []float64{7, 0.4183, 1843200, 1e10, 1e-5} {
		fmt.Println(promfloat.Format(v))
	}
	// Output:
	// 7.0
	// 0.4183
	// 1.8432e+06
	// 1e+010
	// 1e-05
}
