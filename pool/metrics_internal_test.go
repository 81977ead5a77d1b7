package pool

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMetricsReusesUnchangedLoRAs(t *testing.T) {
	page, err := os.ReadFile("testdata/vllm-metrics-sample.txt")
	require.NoError(t, err)
	first, err := parseMetrics(page, nil, nil)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(50, func() {
		m, err := parseMetrics(page, &first, nil)
		if err != nil || &m.RunningLoRAs[0] != &first.RunningLoRAs[0] {
			t.Fatal("not reused", err)
		}
	})
	assert.Zero(t, allocs)

	prev := first
	prev.RunningLoRAs = []string{"sql-lora"} // changed: a new slice
	m, err := parseMetrics(page, &prev, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"sql-lora", "tweet-lora"}, m.RunningLoRAs)
	assert.Equal(t, []string{"tweet-lora"}, m.WaitingLoRAs)
	assert.Equal(t, []string(nil), splitAdapters([]byte(" , "), []string{"a"}))
	assert.Equal(t, []string{"a", "b"}, splitAdapters([]byte("a,b"), []string{"a"}))
	assert.Equal(t, []string{"a"}, splitAdapters([]byte("a"), []string{"a", "b"}))
}
