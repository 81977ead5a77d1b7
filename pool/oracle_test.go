package pool_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/routekit/routekit/pool"
)

// parseExpfmt is the straightforward implementation of pool.ParseMetrics on
// top of the standard Prometheus text parser: decode every family into
// protobuf structs, then pick out the series. It is the naive baseline of the
// parse benchmarks and the oracle of the differential tests and fuzz target.
func parseExpfmt(page []byte) (pool.Metrics, error) {
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return pool.Metrics{}, err
	}
	return fromFamilies(fams)
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

func label(m *dto.Metric, name string) (string, bool) {
	for _, lp := range m.Label {
		if lp.GetName() == name {
			return lp.GetValue(), true
		}
	}
	return "", false
}

type agg struct {
	sum, max float64
	n        int
}

func aggregate(fams map[string]*dto.MetricFamily, name string) (agg, error) {
	var a agg
	f := fams[name]
	if f == nil {
		return a, nil
	}
	for _, m := range f.Metric {
		v := sampleValue(m)
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return a, fmt.Errorf("%s: invalid value %v", name, v)
		}
		a.sum += v
		if a.n == 0 || v > a.max {
			a.max = v
		}
		a.n++
	}
	return a, nil
}

func fromFamilies(fams map[string]*dto.MetricFamily) (pool.Metrics, error) {
	var m pool.Metrics
	names := [3]string{"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}
	cfgName, blockLabel, blocksLabel := "vllm:cache_config_info", "block_size", "num_gpu_blocks"
	has := func(n string) bool { return fams[n] != nil && len(fams[n].Metric) > 0 }
	switch {
	case has(names[0]) || has(names[1]) || has(names[2]) || has("vllm:gpu_cache_usage_perc"):
		m.Engine = pool.EngineVLLM
		if !has(names[2]) {
			names[2] = "vllm:gpu_cache_usage_perc"
		}
	case has("sglang:num_running_reqs") || has("sglang:num_queue_reqs") || has("sglang:token_usage"):
		m.Engine = pool.EngineSGLang
		names = [3]string{"sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage"}
		cfgName, blockLabel, blocksLabel = "sglang:cache_config_info", "page_size", "num_pages"
	default:
		return m, pool.ErrMissingMetrics
	}
	var a [3]agg
	for i, n := range names {
		var err error
		if a[i], err = aggregate(fams, n); err != nil {
			return pool.Metrics{}, err
		}
		if a[i].n == 0 {
			return pool.Metrics{}, pool.ErrMissingMetrics
		}
	}
	// Totals that an int cannot hold, or that reach +Inf, are errors.
	if a[0].sum >= math.MaxInt64 || a[1].sum >= math.MaxInt64 || math.IsInf(a[2].sum, 0) {
		return pool.Metrics{}, errors.New("total out of range")
	}
	m.Running, m.Waiting = int(math.Round(a[0].sum)), int(math.Round(a[1].sum))
	m.Engines, m.KVCacheUsage, m.KVCacheUsageMax = a[2].n, a[2].sum/float64(a[2].n), a[2].max

	if f := fams[cfgName]; f != nil && len(f.Metric) > 0 {
		m.Present |= pool.FieldCacheConfig
		tokens, allTokens := 0, true
		for _, s := range f.Metric {
			get := func(l string) (int, error) {
				v, ok := label(s, l)
				if !ok || v == "None" || v == "" {
					return 0, nil
				}
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return 0, fmt.Errorf("label %s: %q", l, v)
				}
				return n, nil
			}
			bs, err := get(blockLabel)
			if err != nil {
				return pool.Metrics{}, err
			}
			nb, err := get(blocksLabel)
			if err != nil {
				return pool.Metrics{}, err
			}
			m.BlockSize = max(m.BlockSize, bs)
			if m.NumGPUBlocks > math.MaxInt-nb {
				return pool.Metrics{}, errors.New("blocks out of range")
			}
			m.NumGPUBlocks += nb
			if m.Engine == pool.EngineVLLM {
				kt, err := get("kv_cache_size_tokens")
				if err != nil {
					return pool.Metrics{}, err
				}
				if tokens > math.MaxInt-kt {
					return pool.Metrics{}, errors.New("tokens out of range")
				}
				tokens += kt
				allTokens = allTokens && kt > 0
			} else {
				allTokens = false
			}
		}
		if allTokens {
			m.KVCacheTokens = tokens
		} else {
			if m.BlockSize > 0 && m.NumGPUBlocks > math.MaxInt/m.BlockSize {
				return pool.Metrics{}, errors.New("capacity out of range")
			}
			m.KVCacheTokens = m.NumGPUBlocks * m.BlockSize
		}
	}
	if m.Engine != pool.EngineVLLM {
		return m, nil
	}
	q, h := "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"
	if !has(q) && !has(h) {
		q, h = "vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_hits_total"
	}
	if has(q) && has(h) {
		aq, err := aggregate(fams, q)
		if err != nil {
			return pool.Metrics{}, err
		}
		ah, err := aggregate(fams, h)
		if err != nil {
			return pool.Metrics{}, err
		}
		if math.IsInf(aq.sum, 0) || math.IsInf(ah.sum, 0) {
			return pool.Metrics{}, errors.New("total out of range")
		}
		m.Present |= pool.FieldPrefixCache
		m.PrefixCacheQueries, m.PrefixCacheHits = aq.sum, ah.sum
	}
	if f := fams["vllm:lora_requests_info"]; f != nil && len(f.Metric) > 0 {
		var best *dto.Metric
		for _, s := range f.Metric {
			if v, _ := label(s, "max_lora"); v != "" {
				if n, err := strconv.Atoi(v); err != nil || n < 0 {
					return pool.Metrics{}, fmt.Errorf("max_lora %q", v)
				}
			}
			if _, ok := label(s, "running_lora_adapters"); !ok {
				return pool.Metrics{}, errors.New("lora labels missing")
			}
			if _, ok := label(s, "waiting_lora_adapters"); !ok {
				return pool.Metrics{}, errors.New("lora labels missing")
			}
			if best == nil || sampleValue(s) > sampleValue(best) {
				best = s
			}
		}
		m.Present |= pool.FieldLoRA
		if v, _ := label(best, "max_lora"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return pool.Metrics{}, fmt.Errorf("max_lora %q", v)
			}
			m.MaxLoRA = n
		}
		split := func(s string) []string {
			var out []string
			for p := range strings.SplitSeq(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
			return out
		}
		r, _ := label(best, "running_lora_adapters")
		w, _ := label(best, "waiting_lora_adapters")
		m.RunningLoRAs, m.WaitingLoRAs = split(r), split(w)
	}
	return m, nil
}
