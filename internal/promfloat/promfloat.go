package promfloat

import (
	"math"
	"strconv"
	"strings"
)

// Format returns v as prometheus_client writes a sample value: +Inf, -Inf and
// NaN, else Python's repr of v, with a Go-style exponent ("e+0" followed by
// the exponent's digits) for positive values of 10^6 up to 10^16.
func Format(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	s := pyRepr(v)
	if dot := strings.IndexByte(s, '.'); v > 0 && dot > 6 {
		mantissa := strings.TrimRight(s[:1]+"."+s[1:dot]+s[dot+1:], "0.")
		return mantissa + "e+0" + strconv.Itoa(dot-1)
	}
	return s
}

// pyRepr is Python's repr of a finite float: the shortest digits that read
// back as v, in fixed notation (with ".0" for integers) for decimal
// exponents from -4 to 15, else in exponent notation with at least two
// exponent digits ("1e-05", "1e+16"), which is also Go's 'e' format.
func pyRepr(v float64) string {
	e := strconv.FormatFloat(v, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:]) // FormatFloat's own output: cannot fail
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
