package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// families are the fixture directories fetched by scripts/tokenizer/fetch-fixtures.sh.
var families = []string{"llama3", "llama3.1", "qwen3", "deepseek-v3", "gpt-oss", "gpt-4o", "gpt-3.5", "mistral-7b", "gemma3"}

// fixtureDir returns the directory of a family's fixture files. When they are missing the test
// is skipped, or fails in CI (env CI set), where .ci/run fetches them first.
func fixtureDir(t testing.TB, family string) string {
	t.Helper()
	root := os.Getenv("ROUTEKIT_TOKENIZER_FIXTURES")
	if root == "" {
		root = filepath.Join("..", ".cache", "tokenizer")
	}
	dir := filepath.Join(root, family)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("fixture %s missing in CI (run scripts/tokenizer/fetch-fixtures.sh): %v", family, err)
		}
		t.Skipf("fixture %s missing; run scripts/tokenizer/fetch-fixtures.sh: %v", family, err)
	}
	return dir
}

// fixtureDirOptional returns the fixture directory, or "" when it is missing (outside CI).
func fixtureDirOptional(family string) string {
	root := os.Getenv("ROUTEKIT_TOKENIZER_FIXTURES")
	if root == "" {
		root = filepath.Join("..", ".cache", "tokenizer")
	}
	dir := filepath.Join(root, family)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil && os.Getenv("CI") == "" {
		return ""
	}
	return dir
}

var loaded sync.Map // family -> *loadResult

type loadResult struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// fixture loads a family's tokenizer.json once per test binary (without tokenizer_config.json,
// so that EncodeSpecial follows the file's post-processor like the HF goldens).
func fixture(t testing.TB, family string) *Tokenizer {
	t.Helper()
	dir := fixtureDir(t, family)
	v, _ := loaded.LoadOrStore(family, &loadResult{})
	r := v.(*loadResult)
	r.once.Do(func() {
		data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			r.err = err
			return
		}
		r.tok, r.err = FromJSON(data)
	})
	require.NoError(t, r.err, family)
	return r.tok
}

func readGzipJSON(t testing.TB, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	data, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, v))
}

var corpusOnce = sync.OnceValues(func() ([]string, error) {
	f, err := os.Open(filepath.Join("testdata", "golden", "corpus.json.gz"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	var c []string
	return c, json.NewDecoder(zr).Decode(&c)
})

func goldenCorpus(t testing.TB) []string {
	c, err := corpusOnce()
	require.NoError(t, err)
	return c
}

type golden struct {
	Family      string              `json:"family"`
	VocabSize   int                 `json:"vocab_size"`
	IDs         [][]uint32          `json:"ids"`
	WithSpecial map[string][]uint32 `json:"with_special"`
	Decoded     map[string]string   `json:"decoded"`
	DecodedSkip map[string]string   `json:"decoded_skip_special"`
	DecodeCases []struct {
		IDs  []uint32 `json:"ids"`
		Text string   `json:"text"`
		Skip string   `json:"skip"`
	} `json:"decode_cases"`
}
