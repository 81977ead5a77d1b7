package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// benchText is a realistic mixed corpus: the prose (French, Japanese, Chinese, Korean, English
// licence text) and Go source chunks of the golden corpus, 188 KB, repeated up to n bytes.
func benchText(tb testing.TB, n int) string {
	var b strings.Builder
	corpus := goldenCorpus(tb)
	for b.Len() < n {
		for _, s := range corpus {
			if len(s) >= 200 {
				b.WriteString(s)
				if b.Len() >= n {
					break
				}
			}
		}
	}
	return b.String()[:n]
}

func loadFor(b *testing.B, family string, opts ...Option) *Tokenizer {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir(b, family), "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	tok, err := FromJSON(data, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkEncode measures Encode throughput per family on the mixed corpus: with the piece cache
// disabled ("nocache"), with a cache that starts empty for every 256 KB text ("cold"), with a warm
// cache ("warm"), and the naive baseline where the split regex runs through regexp2 and no cache
// is used ("regexp2", what a generic regex-based port does).
func BenchmarkEncode(b *testing.B) {
	text := benchText(b, 256<<10)
	for _, fam := range []string{"llama3", "qwen3", "deepseek-v3", "gpt-oss", "gpt-4o", "gpt-3.5", "mistral-7b", "gemma3"} {
		for _, mode := range []string{"nocache", "cold", "warm", "regexp2"} {
			b.Run(fam+"/"+mode, func(b *testing.B) {
				var opts []Option
				switch mode {
				case "nocache":
					opts = append(opts, WithCacheSize(0))
				case "regexp2":
					opts = append(opts, WithCacheSize(0), optionFunc(func(o *options) { o.regexOnly = true }))
				}
				tok := loadFor(b, fam, opts...)
				dst := make([]uint32, 0, len(text))
				dst = tok.AppendEncode(dst[:0], text, false)
				b.ReportMetric(float64(len(dst)), "tokens/op")
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				for b.Loop() {
					if mode == "cold" {
						dst = tok.clone(4096).AppendEncode(dst[:0], text, false)
					} else {
						dst = tok.AppendEncode(dst[:0], text, false)
					}
				}
				reportCPU(b, cpu0, len(text))
			})
		}
	}
}

// reportCPU adds MB per CPU-second (user+system time of the process; the loop is single-threaded
// and does not allocate, so this is the encoder's own CPU), robust to other load on the machine.
func reportCPU(b *testing.B, cpu0 time.Duration, n int) {
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
	}
}

// BenchmarkEncodeSizes shows that cost grows linearly with the prompt and that steady-state
// allocations do not grow at all (AppendEncode into a reused buffer).
func BenchmarkEncodeSizes(b *testing.B) {
	tok := loadFor(b, "llama3", WithCacheSize(0))
	for _, n := range []int{1 << 10, 16 << 10, 128 << 10, 1 << 20} {
		text := benchText(b, n)
		b.Run(fmt.Sprintf("%dKB", n>>10), func(b *testing.B) {
			dst := tok.AppendEncode(nil, text, false)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				dst = tok.AppendEncode(dst[:0], text, false)
			}
			reportCPU(b, cpu0, n)
		})
	}
}

// BenchmarkEncodeParallel runs Encode from all cores on one shared Tokenizer.
func BenchmarkEncodeParallel(b *testing.B) {
	tok := loadFor(b, "qwen3")
	text := benchText(b, 32<<10)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]uint32, 0, len(text))
		for pb.Next() {
			dst = tok.AppendEncode(dst[:0], text, false)
		}
	})
}

// BenchmarkLoad measures loading a tokenizer.json, and reports the heap one loaded Tokenizer
// keeps (measured once, before the timed loop, between two forced collections).
func BenchmarkLoad(b *testing.B) {
	for _, fam := range []string{"gpt-4o", "gpt-oss", "llama3", "qwen3", "gemma3"} {
		b.Run(fam, func(b *testing.B) {
			data, err := os.ReadFile(filepath.Join(fixtureDir(b, fam), "tokenizer.json"))
			if err != nil {
				b.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			keep, err := FromJSON(data)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := FromJSON(data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(heap, "MB-heap")
			b.ReportMetric(float64(keep.VocabSize()), "vocab")
			b.ReportMetric(float64(len(data))/(1<<20), "MB-file")
			runtime.KeepAlive(keep)
		})
	}
}

// TestSteadyStateAllocs checks that AppendEncode into a reused buffer does not allocate however
// long the text is: zero for a file without normalizer, and at most one (the normalized copy of
// a segment that NFC changes) for Qwen3.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	for _, tt := range []struct {
		family string
		max    float64
	}{{"llama3", 0}, {"qwen3", 1}} {
		tok := fixture(t, tt.family)
		for _, n := range []int{1 << 10, 64 << 10, 1 << 20} {
			text := benchText(t, n)
			dst := tok.AppendEncode(nil, text, false)
			allocs := testing.AllocsPerRun(5, func() { dst = tok.AppendEncode(dst[:0], text, false) })
			if allocs > tt.max {
				t.Errorf("%s, %d bytes: %.1f allocs per AppendEncode, want <= %.0f", tt.family, n, allocs, tt.max)
			}
		}
	}
}
