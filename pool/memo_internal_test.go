package pool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memoPage renders a page with the label-heavy lines the memo keeps: one
// cache_config_info per engine and lora_requests_info series, in the given
// variants.
func memoPage(engines, blocks int, lora []string, escaped bool) []byte {
	var b strings.Builder
	b.WriteString("# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n")
	for e := range engines {
		fmt.Fprintf(&b, "vllm:num_requests_running{engine=\"%d\"} %d.0\n", e, e+1)
		fmt.Fprintf(&b, "vllm:num_requests_waiting{engine=\"%d\"} 1.0\n", e)
		fmt.Fprintf(&b, "vllm:kv_cache_usage_perc{engine=\"%d\"} 0.25\n", e)
	}
	b.WriteString("# HELP vllm:cache_config_info x\n# TYPE vllm:cache_config_info gauge\n")
	for e := range engines {
		model := "m"
		if escaped {
			model = `a\"b\\c`
		}
		fmt.Fprintf(&b, "vllm:cache_config_info{block_size=\"16\",engine=\"%d\",model=\"%s\",kv_cache_size_tokens=\"%d\",num_gpu_blocks=\"%d\"} 1.0\n",
			e, model, 16*blocks, blocks)
	}
	for _, l := range lora {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// TestLineMemoAgreesWithParse parses a sequence of changing pages with one
// memo, as the scraper does, and checks every result equals a parse
// without it.
func TestLineMemoAgreesWithParse(t *testing.T) {
	golden, err := os.ReadFile("testdata/vllm-metrics-sample.txt")
	require.NoError(t, err)
	lora := func(ts string, run, wait string) string {
		return `vllm:lora_requests_info{max_lora="4",running_lora_adapters="` + run + `",waiting_lora_adapters="` + wait + `"} ` + ts
	}
	esc := `vllm:lora_requests_info{max_lora="2",running_lora_adapters="x\"y,z\\w",waiting_lora_adapters="q"} 5.0`
	pages := [][]byte{
		golden, golden,
		memoPage(1, 100, nil, false), memoPage(1, 100, nil, false),
		memoPage(2, 100, nil, false), memoPage(2, 100, nil, false), // one more engine
		memoPage(1, 100, nil, false), // one fewer
		memoPage(2, 200, nil, false), // changed values
		memoPage(2, 200, []string{lora("1.0", "a", ""), lora("2.0", "b", "c")}, false),
		memoPage(2, 200, []string{lora("1.0", "a", ""), lora("2.0", "b", "c")}, false),
		memoPage(2, 200, []string{lora("3.0", "a", ""), lora("2.0", "b", "c")}, false), // newest moves
		memoPage(2, 200, []string{lora("2.0", "b", "c"), lora("3.0", "a", "")}, false), // order swaps
		memoPage(2, 200, []string{esc}, true), memoPage(2, 200, []string{esc}, true),
		[]byte("vllm:num_requests_running 1\nvllm:cache_config_info{block_size=\"x\"} 1\n"), // malformed
		memoPage(2, 200, []string{esc}, true),
		memoPage(40, 10, nil, false), memoPage(40, 10, nil, false), memoPage(40, 11, nil, false), // past maxMemoLines
		memoPage(3, 10, nil, false), golden,
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 { // and a random walk over them
		pages = append(pages, pages[rng.IntN(len(pages))])
	}
	var memo lineMemo
	var prev, prevPlain *Metrics
	for i, page := range pages {
		want, werr := parseMetrics(page, prevPlain, nil)
		got, err := parseMetrics(page, prev, &memo)
		if werr != nil {
			require.Error(t, err, "page %d", i)
			assert.Equal(t, werr.Error(), err.Error(), "page %d", i)
			continue
		}
		require.NoError(t, err, "page %d", i)
		require.Equal(t, want, got, "page %d", i)
		assert.LessOrEqual(t, len(memo.ents), maxMemoLines)
		prev, prevPlain = &got, &want
	}
}

// TestLineMemoSteadyPageAllocations: with the memo, a steady page parses
// without allocating and without parsing its label-heavy lines again.
func TestLineMemoSteadyPageAllocations(t *testing.T) {
	page, err := os.ReadFile("testdata/vllm-metrics-sample.txt")
	require.NoError(t, err)
	var memo lineMemo
	first, err := parseMetrics(page, nil, &memo)
	require.NoError(t, err)
	require.Len(t, memo.ents, 3, "one cache_config_info and two lora_requests_info lines")
	ents := memo.ents
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := parseMetrics(page, &first, &memo); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
	assert.Same(t, &ents[0], &memo.ents[0], "the memo is kept, not rebuilt")
}

// FuzzLineMemo parses two pages in a row with one memo: the second result
// must equal a parse without it.
func FuzzLineMemo(f *testing.F) {
	f.Add(memoPage(1, 100, nil, false), memoPage(2, 100, nil, true))
	f.Add(memoPage(2, 100, []string{`vllm:lora_requests_info{max_lora="1",running_lora_adapters="a",waiting_lora_adapters=""} 1`}, false),
		memoPage(2, 100, []string{`vllm:lora_requests_info{max_lora="1",running_lora_adapters="b",waiting_lora_adapters=""} 1`}, false))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var memo lineMemo
		first, err := parseMetrics(a, nil, &memo)
		var prev *Metrics
		if err == nil {
			prev = &first
		}
		want, werr := parseMetrics(b, prev, nil)
		got, err := parseMetrics(b, prev, &memo)
		if (err == nil) != (werr == nil) {
			t.Fatalf("memo err=%v, plain err=%v", err, werr)
		}
		if err == nil {
			assert.Equal(t, want, got)
		}
	})
}

// BenchmarkParseMetricsLineMemo parses the golden page (145 series) and its
// name-filtered part the way the scraper does, the previous page's result
// and line memo at hand, with and without the memo.
func BenchmarkParseMetricsLineMemo(b *testing.B) {
	golden, err := os.ReadFile("testdata/vllm-metrics-sample.txt")
	require.NoError(b, err)
	var filtered []byte // the routing series only, as a name[] query returns them
	for line := range strings.Lines(string(golden)) {
		if k, _ := kindOf([]byte(line)); k != kNone {
			filtered = append(filtered, line...)
		}
	}
	for _, pg := range []struct {
		name string
		page []byte
	}{{"page=full", golden}, {"page=filtered", filtered}} {
		for _, withMemo := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/memo=%v", pg.name, withMemo), func(b *testing.B) {
				var memo *lineMemo
				if withMemo {
					memo = new(lineMemo)
				}
				first, err := parseMetrics(pg.page, nil, memo)
				require.NoError(b, err)
				b.SetBytes(int64(len(pg.page)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := parseMetrics(pg.page, &first, memo); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
