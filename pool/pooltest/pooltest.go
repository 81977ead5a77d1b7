package pooltest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	"github.com/routekit/routekit/internal/promfloat"
	"github.com/routekit/routekit/pool"
)

// Model is the model_name label of rendered pages.
const Model = "sim-model"

// Page renders m as a /metrics page of m.Engine (vLLM when EngineUnknown),
// spread over m.Engines engine series (at least 1): counts are split across
// engines so that their sums are m's, and every engine reports
// m.KVCacheUsage. Optional groups are rendered if m.Present has them;
// NumGPUBlocks is split across engines like the counts. ParseMetrics of the
// page gives back m, except ScrapedAt and KVCacheUsageMax (which equals
// KVCacheUsage), for values that survive the split (integers; Engines 1 for
// the rest).
func Page(m pool.Metrics) string {
	engines := max(m.Engines, 1)
	var b strings.Builder
	split := func(total float64, e int) float64 {
		base := float64(int(total) / engines)
		if e < int(total)%engines {
			base++
		}
		if float64(int(total)) != total { // not an integer: engine 0 takes it all
			if e == 0 {
				return total
			}
			return 0
		}
		return base
	}
	gauge := func(name, help string, total float64, perEngine bool) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for e := range engines {
			v := total
			if perEngine {
				v = split(total, e)
			}
			fmt.Fprintf(&b, "%s{engine=\"%d\",model_name=%q} %s\n", name, e, Model, promfloat.Format(v))
		}
	}
	counter := func(name, help string, total float64) {
		fmt.Fprintf(&b, "# HELP %s_total %s\n# TYPE %s_total counter\n", name, help, name)
		for e := range engines {
			fmt.Fprintf(&b, "%s_total{engine=\"%d\",model_name=%q} %s\n", name, e, Model, promfloat.Format(split(total, e)))
		}
		fmt.Fprintf(&b, "# HELP %s_created %s\n# TYPE %s_created gauge\n", name, help, name)
		for e := range engines {
			fmt.Fprintf(&b, "%s_created{engine=\"%d\",model_name=%q} 1.767225e+09\n", name, e, Model)
		}
	}
	if m.Engine == pool.EngineSGLang {
		gauge("sglang:num_running_reqs", "The number of running requests.", float64(m.Running), true)
		gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", float64(m.Waiting), true)
		gauge("sglang:token_usage", "The token usage.", m.KVCacheUsage, false)
		if m.Has(pool.FieldCacheConfig) {
			b.WriteString("# HELP sglang:cache_config_info Information of the cache config\n# TYPE sglang:cache_config_info gauge\n")
			for e := range engines {
				fmt.Fprintf(&b, "sglang:cache_config_info{num_pages=\"%d\",page_size=\"%d\"} 1.0\n",
					int(split(float64(m.NumGPUBlocks), e)), m.BlockSize)
			}
		}
		return b.String()
	}
	gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(m.Running), true)
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(m.Waiting), true)
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.KVCacheUsage, false)
	if m.Has(pool.FieldPrefixCache) {
		counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", m.PrefixCacheQueries)
		counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", m.PrefixCacheHits)
	}
	counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", 0)
	b.WriteString("# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n# TYPE vllm:time_to_first_token_seconds histogram\n")
	for e := range engines {
		for _, le := range []string{"0.001", "0.01", "0.1", "1.0", "10.0", "+Inf"} {
			fmt.Fprintf(&b, "vllm:time_to_first_token_seconds_bucket{engine=\"%d\",le=%q,model_name=%q} 0.0\n", e, le, Model)
		}
		fmt.Fprintf(&b, "vllm:time_to_first_token_seconds_count{engine=\"%d\",model_name=%q} 0.0\n", e, Model)
		fmt.Fprintf(&b, "vllm:time_to_first_token_seconds_sum{engine=\"%d\",model_name=%q} 0.0\n", e, Model)
	}
	if m.Has(pool.FieldCacheConfig) {
		b.WriteString("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n")
		for e := range engines {
			blocks := int(split(float64(m.NumGPUBlocks), e))
			tokens := "None"
			if m.KVCacheTokens != 0 && m.KVCacheTokens != m.NumGPUBlocks*m.BlockSize && engines == 1 {
				tokens = strconv.Itoa(m.KVCacheTokens)
			}
			fmt.Fprintf(&b, "vllm:cache_config_info{block_size=\"%d\",cache_dtype=\"auto\",enable_prefix_caching=\"True\",engine=\"%d\",kv_cache_size_tokens=%q,num_cpu_blocks=\"None\",num_gpu_blocks=\"%d\",prefix_caching_hash_algo=\"sha256\"} 1.0\n",
				m.BlockSize, e, tokens, blocks)
		}
	}
	if m.Has(pool.FieldLoRA) {
		b.WriteString("# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n")
		// An older series first: the newest one must win.
		fmt.Fprintf(&b, "vllm:lora_requests_info{max_lora=\"%d\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 1.76722499e+09\n", m.MaxLoRA)
		fmt.Fprintf(&b, "vllm:lora_requests_info{max_lora=\"%d\",running_lora_adapters=%s,waiting_lora_adapters=%s} 1.7672250015e+09\n",
			m.MaxLoRA, labelValue(strings.Join(m.RunningLoRAs, ",")), labelValue(strings.Join(m.WaitingLoRAs, ",")))
	}
	return b.String()
}

// labelValue quotes and escapes a label value as the text format requires.
func labelValue(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// Server is an httptest server that serves a /metrics page rendered from a
// pool.Metrics, changeable at any time. It is safe for concurrent use.
type Server struct {
	*httptest.Server

	mu     sync.Mutex // guards page, status, hits
	page   string
	status int
	hits   int
}

// NewServer starts a server that serves Page(m) at /metrics.
func NewServer(m pool.Metrics) *Server {
	s := &Server{page: Page(m), status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Addr returns the server's host:port, for pool.Endpoint.Address.
func (s *Server) Addr() string { return strings.TrimPrefix(s.URL, "http://") }

// Set makes the server serve Page(m) and succeed again.
func (s *Server) Set(m pool.Metrics) { s.SetPage(Page(m)) }

// SetPage makes the server serve page verbatim (for malformed pages) and
// succeed again.
func (s *Server) SetPage(page string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.page, s.status = page, http.StatusOK
}

// Fail makes the server answer every request with the HTTP status code.
func (s *Server) Fail(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// Hits returns the number of /metrics requests served.
func (s *Server) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	page, status := s.page, s.status
	s.hits++
	s.mu.Unlock()
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if names, ok := r.URL.Query()["name[]"]; ok {
		page = Restrict(page, names)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(page))
}

// Restrict returns the part of a prometheus_client page that its name[]
// query parameter asks for: the samples whose name is in names, each
// family's HELP and TYPE lines kept if the family keeps a sample. This is
// what vLLM's /metrics (prometheus_client's restricted registry) answers to
// /metrics?name[]=...; [Server] does it too.
func Restrict(page string, names []string) string {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var out, family strings.Builder
	kept := false
	flush := func() {
		if kept {
			out.WriteString(family.String())
		}
		family.Reset()
		kept = false
	}
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, "# HELP ") {
			flush()
		}
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			family.WriteString(line)
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ \t"); i >= 0 {
			name = line[:i]
		}
		if want[name] {
			family.WriteString(line)
			kept = true
		}
	}
	flush()
	return out.String()
}
