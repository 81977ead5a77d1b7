package fleet_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/examples/internal/fleet"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"model":"Qwen/Qwen3-8B","block_size":16,"scrape_interval":"100ms",
		"endpoints":[{"url":"http://10.0.0.7:8000","kv_events":"tcp://10.0.0.7:5557"},{"id":"b","url":"http://10.0.0.8:8000"}]}`), 0o600))
	c, err := fleet.Load(good)
	require.NoError(t, err)
	assert.Equal(t, "Qwen/Qwen3-8B", c.Model)
	assert.Equal(t, fleet.Duration(100*time.Millisecond), c.ScrapeInterval)
	require.Len(t, c.Endpoints, 2)
	assert.Equal(t, "tcp://10.0.0.7:5557", c.Endpoints[0].KVEvents)
	assert.Equal(t, "b", c.Endpoints[1].ID)

	for name, body := range map[string]string{
		"typo":     `{"modle":"x"}`,
		"duration": `{"scrape_interval":50}`,
		"bad dur":  `{"scrape_interval":"fast"}`,
		"trunc":    `{"model":`,
	} {
		p := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := fleet.Load(p)
		assert.Error(t, err, name)
	}
	_, err = fleet.Load(filepath.Join(dir, "missing.json"))
	assert.Error(t, err)
}

func TestParseEndpoints(t *testing.T) {
	eps, err := fleet.ParseEndpoints("http://a:1, http://b:2", "tcp://a:5557,")
	require.NoError(t, err)
	assert.Equal(t, []fleet.Endpoint{{URL: "http://a:1", KVEvents: "tcp://a:5557"}, {URL: "http://b:2"}}, eps)
	_, err = fleet.ParseEndpoints("http://a:1,http://b:2", "tcp://a:5557")
	assert.Error(t, err)
	eps, err = fleet.ParseEndpoints("", "")
	require.NoError(t, err)
	assert.Empty(t, eps)
}

func TestStartRejectsBadConfig(t *testing.T) {
	_, err := fleet.Start(t.Context(), fleet.Config{Endpoints: []fleet.Endpoint{{URL: "http://a:1"}}})
	assert.ErrorContains(t, err, "model name is required")
	_, err = fleet.Start(t.Context(), fleet.Config{Model: "m", Endpoints: []fleet.Endpoint{{URL: "ftp://a:1"}}})
	assert.ErrorContains(t, err, "not an http://host:port URL")
}
