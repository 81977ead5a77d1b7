package pool_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

func golden(t testing.TB) []byte {
	if t == nil {
		t = &testing.T{}
	}
	b, err := os.ReadFile("testdata/vllm-metrics-sample.txt")
	require.NoError(t, err)
	return b
}

func TestParseMetricsGolden(t *testing.T) {
	want := pool.Metrics{
		Engine: pool.EngineVLLM, Running: 7, Waiting: 2,
		KVCacheUsage: 0.4183, KVCacheUsageMax: 0.4183, Engines: 1,
		BlockSize: 16, NumGPUBlocks: 28672, KVCacheTokens: 458752,
		PrefixCacheQueries: 1.8432e+06, PrefixCacheHits: 1.10592e+06,
		MaxLoRA: 4, RunningLoRAs: []string{"sql-lora", "tweet-lora"}, WaitingLoRAs: []string{"tweet-lora"},
		Present: pool.FieldCacheConfig | pool.FieldLoRA | pool.FieldPrefixCache,
	}
	got, err := pool.ParseMetrics(golden(t))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	oracle, err := parseExpfmt(golden(t))
	require.NoError(t, err)
	assert.Equal(t, want, oracle, "the expfmt-based oracle agrees")
}

// page builds a vLLM-style page: one line per sample, with HELP/TYPE lines.
func page(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	core0 = `vllm:num_requests_running{engine="0",model_name="m"} 3.0` + "\n" +
		`vllm:num_requests_waiting{engine="0",model_name="m"} 1.0` + "\n" +
		`vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25`
	core1 = `vllm:num_requests_running{engine="1",model_name="m"} 4.0` + "\n" +
		`vllm:num_requests_waiting{engine="1",model_name="m"} 5.0` + "\n" +
		`vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75`
)

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    pool.Metrics
		wantErr string // substring; "" means success
	}{
		{
			name: "two engines summed, usage averaged",
			give: page("# HELP vllm:num_requests_running Number of requests.", "# TYPE vllm:num_requests_running gauge", core0, core1,
				`vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="1000"} 1.0`,
				`vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="1000"} 1.0`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 7, Waiting: 6, KVCacheUsage: 0.5, KVCacheUsageMax: 0.75, Engines: 2,
				BlockSize: 16, NumGPUBlocks: 2000, KVCacheTokens: 32000, Present: pool.FieldCacheConfig},
		},
		{
			name: "pre-v0.12 gpu_cache_usage_perc and gpu_prefix_cache counters",
			give: page(`vllm:num_requests_running{engine="0",model_name="m"} 1`, `vllm:num_requests_waiting{engine="0",model_name="m"} 0`,
				`vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5`,
				`vllm:gpu_prefix_cache_queries_total{engine="0",model_name="m"} 100`, `vllm:gpu_prefix_cache_hits_total{engine="0",model_name="m"} 40`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 1, KVCacheUsage: 0.5, KVCacheUsageMax: 0.5, Engines: 1,
				PrefixCacheQueries: 100, PrefixCacheHits: 40, Present: pool.FieldPrefixCache},
		},
		{
			name: "v0.10-v0.11 expose both usage names: the new one wins",
			give: page(core0, `vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.25, KVCacheUsageMax: 0.25, Engines: 1},
		},
		{
			name: "sglang",
			give: page(`# TYPE sglang:num_running_reqs gauge`, `sglang:num_running_reqs{model_name="q",tp_rank="0"} 12`,
				`sglang:num_queue_reqs{model_name="q",tp_rank="0"} 4`, `sglang:token_usage{model_name="q",tp_rank="0"} 0.6`,
				`sglang:cache_config_info{model_name="q",num_pages="5000",page_size="1"} 1`),
			want: pool.Metrics{Engine: pool.EngineSGLang, Running: 12, Waiting: 4, KVCacheUsage: 0.6, KVCacheUsageMax: 0.6, Engines: 1,
				BlockSize: 1, NumGPUBlocks: 5000, KVCacheTokens: 5000, Present: pool.FieldCacheConfig},
		},
		{
			name: "escaped label values, None values, timestamps, CRLF, blank lines",
			give: "\n" + page(core0+" 1767225000000",
				`vllm:cache_config_info{block_size="32",cache_dtype="a \"quoted\" \\ value\nx",engine="0",num_gpu_blocks="None"} 1.0`,
				`vllm:lora_requests_info{max_lora="2",running_lora_adapters="a\\b, c",waiting_lora_adapters=""} 5`) +
				"vllm:num_preemptions_total{engine=\"0\"} 1\r\n",
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.25, KVCacheUsageMax: 0.25, Engines: 1,
				BlockSize: 32, MaxLoRA: 2, RunningLoRAs: []string{`a\b`, "c"}, Present: pool.FieldCacheConfig | pool.FieldLoRA},
		},
		{
			name: "newest lora series wins whatever its position",
			give: page(core0,
				`vllm:lora_requests_info{max_lora="4",running_lora_adapters="new",waiting_lora_adapters="w"} 1.7672250015e+09`,
				`vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.76722499025e+09`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.25, KVCacheUsageMax: 0.25, Engines: 1,
				MaxLoRA: 4, RunningLoRAs: []string{"new"}, WaitingLoRAs: []string{"w"}, Present: pool.FieldLoRA},
		},
		{
			name: "unknown lines and histograms are skipped, even odd ones",
			give: page(`python_gc_objects_collected_total{generation="0"} 1234.0`, core0,
				`vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 7.0`,
				`{"weird.name",x="1"} 1`, `other_metric{a="}{ "} NaN`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.25, KVCacheUsageMax: 0.25, Engines: 1},
		},
		{
			// expfmt (the standard parser) needs no blank between a label set
			// and the value; prometheus_client writes one, others may not.
			name: "no blank between label set and value",
			give: page(`vllm:num_requests_running{engine="0"}3`, `vllm:num_requests_waiting{engine="0"}`+"\t1.0 17", `vllm:kv_cache_usage_perc{}0.5`,
				`vllm:cache_config_info{block_size="16",num_gpu_blocks="10"}1`),
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.5, KVCacheUsageMax: 0.5, Engines: 1,
				BlockSize: 16, NumGPUBlocks: 10, KVCacheTokens: 160, Present: pool.FieldCacheConfig},
		},
		{
			name: "leading blanks, trailing blanks after the last newline",
			give: " " + core0 + "\n\t# HELP x y\n \t",
			want: pool.Metrics{Engine: pool.EngineVLLM, Running: 3, Waiting: 1, KVCacheUsage: 0.25, KVCacheUsageMax: 0.25, Engines: 1},
		},
		{
			name: "value right after the name",
			give: page(`sglang:num_running_reqs+2`, `sglang:num_queue_reqs 0`, `sglang:token_usage.5`),
			want: pool.Metrics{Engine: pool.EngineSGLang, Running: 2, KVCacheUsage: 0.5, KVCacheUsageMax: 0.5, Engines: 1},
		},
		{name: "odd byte after a name we read", give: page(core0, "vllm:num_requests_running\x80 1"), wantErr: `invalid value "\x80"`},
		{name: "empty page", give: "", wantErr: "required metrics missing: none of"},
		{name: "html error page", give: "<html><body>502 Bad Gateway</body></html>\n", wantErr: "required metrics missing: none of"},
		{name: "similar names are not ours", give: page(`vllm:num_requests_running_max 1`, `vllm:num_requests_waitingx 1`, `vllm:kv_cache_usage_perc:avg 1`), wantErr: "required metrics missing: none of"},
		{name: "missing waiting", give: page(`vllm:num_requests_running{engine="0"} 1`, `vllm:kv_cache_usage_perc{engine="0"} 0.1`), wantErr: "required metrics missing: vllm:num_requests_waiting"},
		{name: "missing usage", give: page(`vllm:num_requests_running 1`, `vllm:num_requests_waiting 1`), wantErr: "vllm:kv_cache_usage_perc (or vllm:gpu_cache_usage_perc)"},
		{name: "missing sglang usage", give: page(`sglang:num_running_reqs 1`, `sglang:num_queue_reqs 1`), wantErr: "sglang:token_usage"},
		{name: "truncated", give: core0, wantErr: "line 3: no newline at end of page"},
		{name: "truncated in labels", give: page(`vllm:num_requests_running{engine="0`), wantErr: "line 1: vllm:num_requests_running: label engine: unterminated label value"},
		{name: "bad escape", give: page(`vllm:num_requests_running{engine="\x"} 1`), wantErr: `invalid escape \x`},
		{name: "unterminated label set", give: page(`vllm:num_requests_running{engine="0",`), wantErr: "unterminated label set"},
		{name: "label without quote", give: page(`vllm:num_requests_running{engine=0} 1`), wantErr: `expected '"'`},
		{name: "label without equals", give: page(`vllm:num_requests_running{engine} 1`), wantErr: "expected '='"},
		{name: "bad label name", give: page(`vllm:num_requests_running{0engine="1"} 1`), wantErr: "invalid label name"},
		{name: "junk after label", give: page(`vllm:num_requests_running{a="1" b="2"} 1`), wantErr: "expected ',' or '}'"},
		{name: "no value", give: page(`vllm:num_requests_running{engine="0"}`), wantErr: "missing value"},
		{name: "no value after name", give: page(`vllm:num_requests_running `), wantErr: "missing value"},
		{name: "blank but no value", give: page(`vllm:num_requests_running{engine="0"}   `), wantErr: "missing value"},
		{name: "bad value", give: page(`vllm:num_requests_waiting{engine="0"} many`), wantErr: `invalid value "many"`},
		{name: "bad timestamp", give: page(`vllm:num_requests_waiting{engine="0"} 1 soon`), wantErr: `invalid timestamp "soon"`},
		{name: "NaN gauge", give: page(`vllm:num_requests_waiting{engine="0"} NaN`), wantErr: "invalid value NaN"},
		{name: "negative gauge", give: page(`vllm:kv_cache_usage_perc{engine="0"} -0.5`), wantErr: "invalid value -0.5"},
		{name: "bad block size", give: page(core0, `vllm:cache_config_info{block_size="sixteen"} 1`), wantErr: `not a non-negative integer: "sixteen"`},
		{name: "bad max_lora", give: page(core0, `vllm:lora_requests_info{max_lora="x",running_lora_adapters="",waiting_lora_adapters=""} 1`), wantErr: `max_lora "x"`},
		{name: "running beyond int", give: page(`vllm:num_requests_running 1e19`, `vllm:num_requests_waiting 0`, `vllm:kv_cache_usage_perc 0.5`),
			wantErr: "vllm:num_requests_running: total 1e+19 is out of range"},
		{name: "waiting beyond int", give: page(`sglang:num_running_reqs 1`, `sglang:num_queue_reqs 1e300`, `sglang:token_usage 0.5`),
			wantErr: "sglang:num_queue_reqs: total 1e+300 is out of range"},
		{name: "usage sums to infinity", give: page(core0, `vllm:kv_cache_usage_perc{engine="1"} 1.7e308`, `vllm:kv_cache_usage_perc{engine="2"} 1.7e308`),
			wantErr: "vllm:kv_cache_usage_perc: total +Inf is out of range"},
		{name: "prefix counters sum to infinity", give: page(core0, `vllm:prefix_cache_queries_total{engine="0"} 1.7e308`,
			`vllm:prefix_cache_queries_total{engine="1"} 1.7e308`, `vllm:prefix_cache_hits_total 1`),
			wantErr: "vllm:prefix_cache_queries_total: total +Inf is out of range"},
		{name: "GPU blocks overflow int", give: page(core0, `vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="9223372036854775807"} 1`,
			`vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="9223372036854775807"} 1`),
			wantErr: "vllm:cache_config_info: num_gpu_blocks or kv_cache_size_tokens total is out of range"},
		{name: "KV tokens overflow int", give: page(core0, `vllm:cache_config_info{engine="0",kv_cache_size_tokens="9223372036854775807"} 1`,
			`vllm:cache_config_info{engine="1",kv_cache_size_tokens="9223372036854775807"} 1`),
			wantErr: "vllm:cache_config_info: num_gpu_blocks or kv_cache_size_tokens total is out of range"},
		{name: "capacity overflows int", give: page(core0, `vllm:cache_config_info{block_size="4096",num_gpu_blocks="4503599627370496"} 1`),
			wantErr: "vllm:cache_config_info: 4503599627370496 blocks of 4096 tokens is out of range"},
		{name: "lora labels missing", give: page(core0, `vllm:lora_requests_info{max_lora="1"} 1`), wantErr: "waiting_lora_adapters label missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pool.ParseMetrics([]byte(tt.give))
			oracle, oerr := parseExpfmt([]byte(tt.give))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.True(t, strings.HasPrefix(err.Error(), "pool: "), err.Error())
				assert.Equal(t, pool.Metrics{}, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			if oerr == nil { // where the standard parser accepts the page, it agrees
				assert.Equal(t, tt.want, oracle)
			}
		})
	}
}

func TestParseMetricsErrorTypes(t *testing.T) {
	_, err := pool.ParseMetrics([]byte(page(`vllm:num_requests_running 1`)))
	require.ErrorIs(t, err, pool.ErrMissingMetrics)
	_, err = pool.ParseMetrics([]byte("vllm:num_requests_running 1\nvllm:num_requests_waiting x\n"))
	var pe *pool.ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 2, pe.Line)
}

// bigPage renders a real-size page: the golden sample repeated for several
// engines and models (each copy relabelled), plus the lora series once.
func bigPage(t testing.TB, engines int) []byte {
	lines := strings.Split(strings.TrimRight(string(golden(t)), "\n"), "\n")
	var b strings.Builder
	for e := range engines {
		for _, l := range lines {
			if strings.HasPrefix(l, "vllm:lora_requests_info") && e > 0 {
				continue
			}
			if strings.HasPrefix(l, "#") && e > 0 {
				continue
			}
			b.WriteString(strings.ReplaceAll(l, `engine="0"`, fmt.Sprintf(`engine="%d"`, e)))
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

func TestParseMetricsBigPageAgreesWithExpfmt(t *testing.T) {
	p := bigPage(t, 4)
	require.Greater(t, strings.Count(string(p), "\nvllm:"), 500)
	got, err := pool.ParseMetrics(p)
	require.NoError(t, err)
	want, err := parseExpfmt(p)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, 28, got.Running)
	assert.Equal(t, 4, got.Engines)
	assert.Equal(t, 4*28672, got.NumGPUBlocks)
}

// FuzzParseMetrics checks ParseMetrics never panics, and that on every page
// the standard expfmt parser accepts, both give the same result. Pages with
// quoted metric or label names are left out: expfmt reads them (the UTF-8
// syntax of newer text formats), ParseMetrics reads version 0.0.4, which is
// what the scraper asks for and what prometheus_client sends unless asked
// for UTF-8 names.
func FuzzParseMetrics(f *testing.F) {
	f.Add(golden(f))
	f.Add([]byte(page(core0, core1)))
	f.Add([]byte(page(core0, `vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters=""} 2`)))
	f.Add([]byte(page(`sglang:num_running_reqs 1`, `sglang:num_queue_reqs 2`, `sglang:token_usage 0.5`, `sglang:cache_config_info{page_size="1",num_pages="9"} 1`)))
	f.Add([]byte(page(`vllm:num_requests_running{a="\\\"\n"} 1 17`, `vllm:num_requests_waiting 0`, `vllm:gpu_cache_usage_perc 1e-3`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := pool.ParseMetrics(b)
		want, oerr := parseExpfmt(b)
		if oerr != nil || quotedNames(b) {
			return // compared on the pages expfmt reads as text format 0.0.4
		}
		if (err == nil) != (oerr == nil) {
			t.Fatalf("ParseMetrics err=%v, expfmt-based err=%v on %q", err, oerr, b)
		}
		if err == nil {
			assert.Equal(t, want, got, "%q", b)
		}
	})
}

func TestParseMetricsSteadyPageAllocations(t *testing.T) {
	// Through the scraper, a page whose LoRA lists did not change reuses the
	// previous slices; ParseMetrics alone allocates only those lists.
	p := golden(t)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := pool.ParseMetrics(p); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 6.0)
}

// quotedNames reports whether a sample line of page uses the quoted-name
// syntax that text format 0.0.4 does not have: a line starting with '{', or
// a quote where a label name is expected ({"a.b"="1"}, or expfmt's reading
// of {a"b"="1"} as label ab).
func quotedNames(page []byte) bool {
	for line := range strings.Lines(string(page)) {
		line = strings.TrimLeft(line, " \t")
		if strings.HasPrefix(line, "{") {
			return true
		}
		i := strings.IndexByte(line, '{')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		rest := line[i+1:]
		for {
			rest = strings.TrimLeft(rest, " \t")
			rest = strings.TrimLeft(rest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, `"`) {
				return true // a quote where a label name (or its '=') belongs
			}
			if !strings.HasPrefix(rest, "=") {
				break // '}' or a syntax error either parser reports
			}
			rest = strings.TrimLeft(rest[1:], " \t")
			if !strings.HasPrefix(rest, `"`) {
				break
			}
			j := 1 // skip the value and its escapes
			for j < len(rest) && rest[j] != '"' {
				if rest[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(rest) {
				break
			}
			rest = strings.TrimLeft(rest[j+1:], " \t")
			if !strings.HasPrefix(rest, ",") {
				break
			}
			rest = rest[1:]
		}
	}
	return false
}
