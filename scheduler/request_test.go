package scheduler

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRequestLengths(t *testing.T) {
	tests := []struct {
		name         string
		req          Request
		blocks       int
		wantLen      int
		wantCached   int
		wantUncached int
	}{
		{"explicit prompt length wins", Request{PromptTokens: 100, Tokens: make([]uint32, 7), BlockKeys: keys(3)}, 2, 100, 32, 68},
		{"tokens", Request{Tokens: make([]uint32, 40), BlockKeys: keys(2)}, 2, 40, 32, 8},
		{"block keys only, default block size 16", Request{BlockKeys: keys(4)}, 1, 64, 16, 48},
		{"block keys with block size", Request{BlockKeys: keys(4), BlockSize: 64}, 3, 256, 192, 64},
		{"cached capped at prompt", Request{PromptTokens: 20, BlockKeys: keys(2)}, 2, 20, 20, 0},
		{"empty", Request{}, 0, 0, 0, 0},
		{"block size overflow saturates", Request{BlockKeys: keys(3), BlockSize: 1 << 62}, 1, math.MaxInt, 1 << 62, math.MaxInt - 1<<62},
		{"cached blocks overflow capped at prompt", Request{PromptTokens: 100, BlockSize: 1 << 62}, 4, 100, 100, 0},
		{"negative blocks cache nothing", Request{PromptTokens: 100}, -2, 100, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantLen, tt.req.PromptLen())
			assert.Equal(t, tt.wantCached, tt.req.CachedTokens(tt.blocks))
			assert.Equal(t, tt.wantUncached, tt.req.UncachedTokens(tt.blocks))
		})
	}
}
