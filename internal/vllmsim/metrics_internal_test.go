package vllmsim

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTokenBucketsMatchVLLM(t *testing.T) {
	assert.Equal(t, []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}, tokenBuckets(40960))
}
