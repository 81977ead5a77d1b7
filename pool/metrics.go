package pool

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// ErrMissingMetrics is returned (wrapped) by [ParseMetrics] when a page lacks a
// metric the router cannot do without: running requests, waiting requests or
// KV-cache usage. The page may be from another program, a proxy error page, or
// an engine this package does not know. The scraper keeps the endpoint's last
// good metrics and reports the error in its [Status].
var ErrMissingMetrics = errors.New("pool: required metrics missing")

// ParseError reports a malformed line of a Prometheus text page.
// A ParseError is not modified after it is returned and is safe for
// concurrent use.
type ParseError struct {
	// Line is the 1-based line number.
	Line int
	// Msg says what is wrong.
	Msg string
}

// Error implements error.
func (e *ParseError) Error() string {
	return "pool: metrics page line " + strconv.Itoa(e.Line) + ": " + e.Msg
}

// The series ParseMetrics reads. Everything else on a page is skipped by name.
const (
	kNone = iota
	kVRunning
	kVWaiting
	kVKV
	kVKVOld
	kVPQ
	kVPH
	kVPQOld
	kVPHOld
	kVCacheCfg
	kVLoRA
	kSRunning
	kSWaiting
	kSKV
	kSCacheCfg
	kCount
)

// candidates lists the series ParseMetrics reads, by the first byte after the
// engine prefix, so that a line of any other series is skipped after a couple
// of byte comparisons.
var candidates = [2][256][]struct {
	name string // without the prefix
	kind int
}{
	0: { // "vllm:"
		'n': {{"num_requests_running", kVRunning}, {"num_requests_waiting", kVWaiting}},
		'k': {{"kv_cache_usage_perc", kVKV}},
		'g': {{"gpu_cache_usage_perc", kVKVOld}, {"gpu_prefix_cache_queries_total", kVPQOld}, {"gpu_prefix_cache_hits_total", kVPHOld}},
		'p': {{"prefix_cache_queries_total", kVPQ}, {"prefix_cache_hits_total", kVPH}},
		'c': {{"cache_config_info", kVCacheCfg}},
		'l': {{"lora_requests_info", kVLoRA}},
	},
	1: { // "sglang:"
		'n': {{"num_running_reqs", kSRunning}, {"num_queue_reqs", kSWaiting}},
		't': {{"token_usage", kSKV}},
		'c': {{"cache_config_info", kSCacheCfg}},
	},
}

// SeriesNames returns the sample names [ParseMetrics] reads, vLLM's and
// SGLang's, sorted. The scraper asks for only these with prometheus_client's
// name[] query parameter (see [WithNameFilter]); a test server can use them
// to serve the same restricted page.
func SeriesNames() []string {
	var names []string
	for engine, prefix := range [2]string{"vllm:", "sglang:"} {
		for _, cs := range candidates[engine] {
			for _, c := range cs {
				names = append(names, prefix+c.name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// kindOf returns the kind of the series named at the start of line and the
// length of its name, or kNone. The name ends at the first byte that cannot
// continue a metric name, as in the standard parser: a label set, a blank,
// or the value itself ("name+1" is a sample of "name").
func kindOf(line []byte) (int, int) {
	var engine, pre int
	switch {
	case len(line) > 5 && string(line[:5]) == "vllm:":
		engine, pre = 0, 5
	case len(line) > 7 && string(line[:7]) == "sglang:":
		engine, pre = 1, 7
	default:
		return kNone, 0
	}
	rest := line[pre:]
	for _, c := range candidates[engine][rest[0]] {
		if len(rest) > len(c.name) && string(rest[:len(c.name)]) == c.name && !isNameByte(rest[len(c.name)]) {
			return c.kind, pre + len(c.name)
		}
	}
	return kNone, 0
}

var kindName = [kCount]string{
	kVRunning: "vllm:num_requests_running", kVWaiting: "vllm:num_requests_waiting",
	kVKV: "vllm:kv_cache_usage_perc", kVKVOld: "vllm:gpu_cache_usage_perc",
	kVPQ: "vllm:prefix_cache_queries_total", kVPH: "vllm:prefix_cache_hits_total",
	kVPQOld: "vllm:gpu_prefix_cache_queries_total", kVPHOld: "vllm:gpu_prefix_cache_hits_total",
	kVCacheCfg: "vllm:cache_config_info", kVLoRA: "vllm:lora_requests_info",
	kSRunning: "sglang:num_running_reqs", kSWaiting: "sglang:num_queue_reqs", kSKV: "sglang:token_usage",
	kSCacheCfg: "sglang:cache_config_info",
}

type series struct {
	sum, max float64
	n        int
}

// pageParser holds the state of one ParseMetrics call.
type pageParser struct {
	s    [kCount]series
	line int
	prev *Metrics // may be nil

	// cache_config_info totals; [0] is vLLM's, [1] SGLang's.
	cfg [2]cacheConfig

	// Newest lora_requests_info series so far; slices point into the page or
	// into unescaped copies.
	loraTS                float64
	loraMax               int
	loraRunning, loraWait []byte

	// memo, if set, holds the previous page's label-heavy lines; memoNext
	// collects this page's, and memoStale says they differ.
	memo      *lineMemo
	memoNext  []memoEntry
	memoSeen  int
	memoStale bool
}

type cacheConfig struct {
	blockSize, numBlocks, kvTokens int
	someNoTokens                   bool // a series lacked kv_cache_size_tokens
	overflow                       bool // numBlocks or kvTokens outgrew an int
}

// ParseMetrics extracts the routing-relevant state from a vLLM or SGLang
// /metrics page in the Prometheus text format (version 0.0.4, as rendered by
// prometheus_client). It recognises the engine by its metric names, sums
// values over the `engine` label (and any other label: one server serves one
// model), averages KV-cache usage, reads block size and GPU block count from
// the labels of cache_config_info, and takes the LoRA state from the
// lora_requests_info series with the newest timestamp value.
//
// It is a single pass that fully parses the lines it uses and skips the
// others by metric name, so it does not reject a page for a malformed line it
// does not read. Lines it uses that are malformed give a *[ParseError]; a
// page that does not end in a newline (truncated) is malformed too. A page
// without running, waiting and KV-usage series gives [ErrMissingMetrics].
// Totals out of range (running or waiting beyond an int, block counts or
// capacity overflowing an int, sums reaching infinity) give an error too.
// The result's ScrapedAt is zero. ParseMetrics does not retain page.
func ParseMetrics(page []byte) (Metrics, error) { return parseMetrics(page, nil, nil) }

// parseMetrics is ParseMetrics reusing prev's LoRA name slices when they are
// unchanged (they are immutable), so that a steady page parses without
// allocating, and, with memo, the values of label-heavy lines that are the
// same as on the endpoint's previous page. memo is updated on success.
func parseMetrics(page []byte, prev *Metrics, memo *lineMemo) (Metrics, error) {
	var p pageParser
	p.prev, p.memo = prev, memo
	if err := p.parse(page); err != nil {
		return Metrics{}, err
	}
	m, err := p.result()
	if err == nil && memo != nil && p.memoStale {
		memo.ents = p.memoNext
	}
	return m, err
}

// lineMemo remembers, for one endpoint, the parsed values of its last page's
// cache_config_info and lora_requests_info lines: two dozen labels that a
// server renders the same way scrape after scrape (cache_config_info never
// changes), and that cost most of the parse of a name-filtered page. A line
// equal byte for byte to a remembered one is not parsed again. A lineMemo is
// used by one parse at a time.
type lineMemo struct{ ents []memoEntry }

type memoEntry struct {
	line []byte // the whole line; lv's LoRA slices point into the same copy
	lv   lineValue
}

// maxMemoLines bounds what a lineMemo keeps (a page with more lines of these
// kinds, many data-parallel engines, is parsed as usual past the bound).
const maxMemoLines = 32

// lineValue is what one sample line contributes to a page's result.
type lineValue struct {
	k                              int
	v                              float64
	cfgBlock, cfgBlocks, cfgTokens int
	loraMax                        int
	loraRun, loraWait              []byte
}

// memoized reports whether lines of kind k are remembered by a lineMemo.
func memoized(k int) bool { return k == kVCacheCfg || k == kSCacheCfg || k == kVLoRA }

func (p *pageParser) errorf(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *pageParser) parse(b []byte) error {
	for len(b) > 0 {
		p.line++
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			if len(skipBlank(b)) == 0 { // only blanks after the last newline, as the standard parser allows
				break
			}
			return p.errorf("no newline at end of page (truncated?)")
		}
		line := skipBlank(b[:nl]) // leading blanks are allowed, as by the standard parser
		b = b[nl+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		k, i := kindOf(line) // comments, blank lines and other series: kNone
		if k == kNone {
			continue
		}
		if p.memo != nil && memoized(k) && p.memoSeen < maxMemoLines { // past the bound: parse as usual
			if err := p.memoSample(k, line, i); err != nil {
				return err
			}
			continue
		}
		lv, err := p.sample(k, line[:i], line[i:])
		if err != nil {
			return err
		}
		p.apply(lv)
	}
	if p.memo != nil && !p.memoStale {
		if p.memoSeen != len(p.memo.ents) { // fewer lines than last time
			p.memoStale = true
			p.memoNext = slices.Clone(p.memo.ents[:p.memoSeen])
		}
	}
	return nil
}

// memoSample is sample and apply for a line of a memoized kind: the
// remembered value if the previous page had the same line at the same
// place, else a parse, remembered for the next page.
func (p *pageParser) memoSample(k int, line []byte, nameLen int) error {
	n := p.memoSeen
	p.memoSeen++
	if n < len(p.memo.ents) && bytes.Equal(p.memo.ents[n].line, line) {
		e := p.memo.ents[n]
		p.apply(e.lv)
		if !p.memoStale {
			return nil
		}
		p.memoNext = append(p.memoNext, e)
		return nil
	}
	lv, err := p.sample(k, line[:nameLen], line[nameLen:])
	if err != nil {
		return err
	}
	p.apply(lv)
	if !p.memoStale { // the lines so far were all hits: start the new list with them
		p.memoStale = true
		p.memoNext = append(make([]memoEntry, 0, max(len(p.memo.ents), n+1)), p.memo.ents[:min(n, len(p.memo.ents))]...)
	}
	// One copy holds the line and the LoRA values (which point into the
	// page, or into unescaped copies).
	buf := make([]byte, 0, len(line)+len(lv.loraRun)+len(lv.loraWait))
	buf = append(buf, line...)
	buf = append(buf, lv.loraRun...)
	lv.loraRun = buf[len(line):len(buf):len(buf)]
	buf = append(buf, lv.loraWait...)
	lv.loraWait = buf[len(line)+len(lv.loraRun) : len(buf) : len(buf)]
	p.memoNext = append(p.memoNext, memoEntry{line: buf[:len(line):len(line)], lv: lv})
	return nil
}

// sample parses `{labels} value [timestamp]` of a series of kind k and
// returns what it contributes (see apply).
func (p *pageParser) sample(k int, name, rest []byte) (lineValue, error) {
	var cfgBlock, cfgBlocks, cfgTokens int = -1, -1, -1
	var lMax, lRun, lWait []byte
	var hasRun, hasWait bool
	if r := skipBlank(rest); len(r) > 0 && r[0] == '{' {
		rest = r[1:]
		for {
			rest = skipBlank(rest)
			if len(rest) == 0 {
				return lineValue{}, p.errorf("%s: unterminated label set", name)
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			j := 0
			for j < len(rest) && isLabelByte(rest[j], j == 0) {
				j++
			}
			if j == 0 {
				return lineValue{}, p.errorf("%s: invalid label name", name)
			}
			lname := rest[:j]
			rest = skipBlank(rest[j:])
			if len(rest) == 0 || rest[0] != '=' {
				return lineValue{}, p.errorf("%s: label %s: expected '='", name, lname)
			}
			rest = skipBlank(rest[1:])
			if len(rest) == 0 || rest[0] != '"' {
				return lineValue{}, p.errorf("%s: label %s: expected '\"'", name, lname)
			}
			val, n, err := labelValue(rest[1:])
			if err != nil {
				return lineValue{}, p.errorf("%s: label %s: %v", name, lname, err)
			}
			rest = skipBlank(rest[1+n:])
			if len(rest) > 0 && rest[0] == ',' {
				rest = rest[1:]
			} else if len(rest) == 0 || rest[0] != '}' {
				return lineValue{}, p.errorf("%s: expected ',' or '}' after label %s", name, lname)
			}
			switch k {
			case kVCacheCfg, kSCacheCfg:
				var dst *int
				switch {
				case k == kVCacheCfg && string(lname) == "block_size",
					k == kSCacheCfg && string(lname) == "page_size":
					dst = &cfgBlock
				case k == kVCacheCfg && string(lname) == "num_gpu_blocks",
					k == kSCacheCfg && string(lname) == "num_pages":
					dst = &cfgBlocks
				case k == kVCacheCfg && string(lname) == "kv_cache_size_tokens":
					dst = &cfgTokens
				}
				if dst != nil && string(val) != "None" && len(val) > 0 {
					v, err := strconv.Atoi(string(val))
					if err != nil || v < 0 {
						return lineValue{}, p.errorf("%s: label %s: not a non-negative integer: %q", name, lname, val)
					}
					*dst = v
				}
			case kVLoRA:
				switch string(lname) {
				case "max_lora":
					lMax = val
				case "running_lora_adapters":
					lRun, hasRun = val, true
				case "waiting_lora_adapters":
					lWait, hasWait = val, true
				}
			}
		}
	}
	// The value may follow the name or the label set directly, as the
	// standard parser allows (prometheus_client writes a blank).
	rest = skipBlank(rest)
	j := 0
	for j < len(rest) && rest[j] != ' ' && rest[j] != '\t' {
		j++
	}
	if j == 0 {
		return lineValue{}, p.errorf("%s: missing value", name)
	}
	v, err := strconv.ParseFloat(string(rest[:j]), 64)
	if err != nil {
		return lineValue{}, p.errorf("%s: invalid value %q", name, rest[:j])
	}
	if ts := skipBlank(rest[j:]); len(ts) > 0 {
		if _, err := strconv.ParseInt(string(ts), 10, 64); err != nil {
			return lineValue{}, p.errorf("%s: invalid timestamp %q", name, ts)
		}
	}
	lv := lineValue{k: k, v: v, cfgBlock: cfgBlock, cfgBlocks: cfgBlocks, cfgTokens: cfgTokens}
	switch k {
	case kVLoRA:
		if !hasRun || !hasWait {
			return lineValue{}, p.errorf("%s: running_lora_adapters or waiting_lora_adapters label missing", name)
		}
		if len(lMax) > 0 {
			n, err := strconv.Atoi(string(lMax))
			if err != nil || n < 0 {
				return lineValue{}, p.errorf("%s: max_lora %q is not a non-negative integer", name, lMax)
			}
			lv.loraMax = n
		}
		lv.loraRun, lv.loraWait = lRun, lWait
	case kVCacheCfg, kSCacheCfg:
	default:
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return lineValue{}, p.errorf("%s: invalid value %v", name, v)
		}
	}
	return lv, nil
}

// apply adds what a line contributes to the page's totals.
func (p *pageParser) apply(lv lineValue) {
	k, v := lv.k, lv.v
	switch k {
	case kVCacheCfg, kSCacheCfg:
		c := &p.cfg[0]
		if k == kSCacheCfg {
			c = &p.cfg[1]
		}
		if lv.cfgBlock > 0 {
			c.blockSize = max(c.blockSize, lv.cfgBlock)
		}
		if lv.cfgBlocks > 0 {
			if c.numBlocks > math.MaxInt-lv.cfgBlocks {
				c.overflow = true
			}
			c.numBlocks += lv.cfgBlocks
		}
		if lv.cfgTokens > 0 {
			if c.kvTokens > math.MaxInt-lv.cfgTokens {
				c.overflow = true
			}
			c.kvTokens += lv.cfgTokens
		} else {
			c.someNoTokens = true
		}
	case kVLoRA:
		if p.s[k].n == 0 || v > p.loraTS {
			p.loraTS, p.loraMax, p.loraRunning, p.loraWait = v, lv.loraMax, lv.loraRun, lv.loraWait
		}
	}
	s := &p.s[k]
	s.sum += v
	if s.n == 0 || v > s.max {
		s.max = v
	}
	s.n++
}

// maxCount bounds the running and waiting totals: a float64 below it
// converts to an int exactly (after rounding).
const maxCount = float64(math.MaxInt)

func (p *pageParser) result() (Metrics, error) {
	var m Metrics
	run, wait, kv := kVRunning, kVWaiting, kVKV
	switch {
	case p.s[kVRunning].n+p.s[kVWaiting].n+p.s[kVKV].n+p.s[kVKVOld].n > 0:
		m.Engine = EngineVLLM
		if p.s[kVKV].n == 0 {
			kv = kVKVOld
		}
	case p.s[kSRunning].n+p.s[kSWaiting].n+p.s[kSKV].n > 0:
		m.Engine = EngineSGLang
		run, wait, kv = kSRunning, kSWaiting, kSKV
	default:
		return Metrics{}, fmt.Errorf("%w: none of vllm:num_requests_running, vllm:num_requests_waiting, "+
			"vllm:kv_cache_usage_perc or their SGLang equivalents", ErrMissingMetrics)
	}
	var missing []string
	for _, k := range [...]int{run, wait, kv} {
		if p.s[k].n == 0 {
			name := kindName[k]
			if k == kVKVOld {
				name = "vllm:kv_cache_usage_perc (or vllm:gpu_cache_usage_perc)"
			}
			missing = append(missing, name)
		}
	}
	if missing != nil {
		return Metrics{}, fmt.Errorf("%w: %s", ErrMissingMetrics, strings.Join(missing, ", "))
	}
	// Every value is finite and non-negative, but totals can still be out of
	// range: counts that do not fit an int (converting them would give
	// nonsense such as a negative queue), or sums that reach +Inf.
	if err := p.checkTotals(run, wait, kv); err != nil {
		return Metrics{}, err
	}
	m.Running = int(math.Round(p.s[run].sum))
	m.Waiting = int(math.Round(p.s[wait].sum))
	m.Engines = p.s[kv].n
	m.KVCacheUsage = p.s[kv].sum / float64(p.s[kv].n)
	m.KVCacheUsageMax = p.s[kv].max

	cfgKind, c := kVCacheCfg, &p.cfg[0]
	if m.Engine == EngineSGLang {
		cfgKind, c = kSCacheCfg, &p.cfg[1]
	}
	if p.s[cfgKind].n > 0 {
		if c.overflow {
			return Metrics{}, fmt.Errorf("pool: metrics page: %s: num_gpu_blocks or kv_cache_size_tokens total is out of range", kindName[cfgKind])
		}
		m.Present |= FieldCacheConfig
		m.BlockSize, m.NumGPUBlocks = c.blockSize, c.numBlocks
		if !c.someNoTokens {
			m.KVCacheTokens = c.kvTokens
		} else {
			if c.blockSize > 0 && c.numBlocks > math.MaxInt/c.blockSize {
				return Metrics{}, fmt.Errorf("pool: metrics page: %s: %d blocks of %d tokens is out of range", kindName[cfgKind], c.numBlocks, c.blockSize)
			}
			m.KVCacheTokens = c.numBlocks * c.blockSize
		}
	}
	if m.Engine == EngineVLLM {
		q, h := kVPQ, kVPH
		if p.s[q].n == 0 && p.s[h].n == 0 {
			q, h = kVPQOld, kVPHOld
		}
		if p.s[q].n > 0 && p.s[h].n > 0 {
			if err := p.checkTotals(q, h); err != nil {
				return Metrics{}, err
			}
			m.Present |= FieldPrefixCache
			m.PrefixCacheQueries, m.PrefixCacheHits = p.s[q].sum, p.s[h].sum
		}
		if p.s[kVLoRA].n > 0 {
			m.Present |= FieldLoRA
			m.MaxLoRA = p.loraMax
			m.RunningLoRAs = splitAdapters(p.loraRunning, p.prevLoRAs(true))
			m.WaitingLoRAs = splitAdapters(p.loraWait, p.prevLoRAs(false))
		}
	}
	return m, nil
}

// checkTotals returns an error if the sum of a kind in kinds is infinite,
// or for running and waiting counts, too large for an int.
func (p *pageParser) checkTotals(kinds ...int) error {
	for _, k := range kinds {
		sum := p.s[k].sum
		bad := math.IsInf(sum, 0)
		switch k {
		case kVRunning, kVWaiting, kSRunning, kSWaiting:
			bad = !(sum < maxCount)
		}
		if bad {
			return fmt.Errorf("pool: metrics page: %s: total %v is out of range", kindName[k], sum)
		}
	}
	return nil
}

func (p *pageParser) prevLoRAs(running bool) []string {
	if p.prev == nil {
		return nil
	}
	if running {
		return p.prev.RunningLoRAs
	}
	return p.prev.WaitingLoRAs
}

// splitAdapters splits a comma-joined adapter list, dropping blanks. It
// returns prev if that holds the same names.
func splitAdapters(b []byte, prev []string) []string {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if prev != nil {
		i, same := 0, true
		for part := range bytes.SplitSeq(b, []byte{','}) {
			if part = bytes.TrimSpace(part); len(part) > 0 {
				if i >= len(prev) || prev[i] != string(part) {
					same = false
					break
				}
				i++
			}
		}
		if same && i == len(prev) {
			return prev
		}
	}
	var out []string
	for part := range bytes.SplitSeq(b, []byte{','}) {
		if part = bytes.TrimSpace(part); len(part) > 0 {
			out = append(out, string(part))
		}
	}
	return out
}

// labelValue reads a quoted label value after its opening quote. It returns
// the value (a sub-slice of b, or an unescaped copy) and the number of bytes
// consumed, including the closing quote.
func labelValue(b []byte) ([]byte, int, error) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			return b[:i], i + 1, nil
		case '\\':
			return unescape(b)
		}
	}
	return nil, 0, errors.New("unterminated label value")
}

func unescape(b []byte) ([]byte, int, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch c {
		case '"':
			return out, i + 1, nil
		case '\\':
			i++
			if i == len(b) {
				return nil, 0, errors.New("unterminated label value")
			}
			switch b[i] {
			case '\\':
				out = append(out, '\\')
			case '"':
				out = append(out, '"')
			case 'n':
				out = append(out, '\n')
			default:
				return nil, 0, fmt.Errorf("invalid escape \\%c in label value", b[i])
			}
		default:
			out = append(out, c)
		}
	}
	return nil, 0, errors.New("unterminated label value")
}

func skipBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// isNameByte reports whether c can continue a metric name.
func isNameByte(c byte) bool { return isLabelByte(c, false) || c == ':' }

func isLabelByte(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
}
