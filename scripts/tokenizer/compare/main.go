// Command compare times routekit's tokenizer against github.com/pkoukk/tiktoken-go (cl100k and
// o200k, with its offline rank files from github.com/pkoukk/tiktoken-go-loader) on the same
// documents that scripts/tokenizer/bench.mjs gives HF tokenizers, checks that the IDs agree, and
// prints one line per implementation: family, implementation, MB/s (wall), MB per CPU-second of
// the process, tokens, and an FNV-1a hash
// of all IDs (equal hashes = identical output). It lives in its own module so that the library's
// go.mod does not carry these dependencies.
//
// Usage (from the repository root, after scripts/tokenizer/fetch-fixtures.sh):
//
//	(cd scripts/tokenizer/compare && go run . -root ../../..)
package main

import (
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
	"github.com/routekit/routekit/tokenizer"
)

func main() {
	root := flag.String("root", "../../..", "repository root")
	reps := flag.Int("reps", 5, "passes over the documents per measurement (best is kept)")
	flag.Parse()
	docs, err := documents(filepath.Join(*root, "tokenizer", "testdata", "golden", "corpus.json.gz"))
	if err != nil {
		fail(err)
	}
	total := 0
	for _, d := range docs {
		total += len(d)
	}
	fmt.Printf("# %d documents, %d bytes, GOMAXPROCS=%d, best of %d passes, one goroutine\n", len(docs), total, runtime.GOMAXPROCS(0), *reps)
	fmt.Printf("%-12s %-22s %8s %8s %9s %s\n", "family", "implementation", "MB/s", "MB/cpu-s", "tokens", "fnv64(ids)")
	tiktokens := map[string]string{"gpt-3.5": "cl100k_base", "gpt-4o": "o200k_base"}
	tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
	for _, fam := range []string{"llama3", "qwen3", "deepseek-v3", "gpt-oss", "gpt-4o", "gpt-3.5", "mistral-7b", "gemma3"} {
		dir := filepath.Join(*root, ".cache", "tokenizer", fam)
		t0 := time.Now()
		tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			fmt.Printf("%-12s skipped: %v\n", fam, err)
			continue
		}
		load := time.Since(t0)
		var buf []uint32
		ours := measure(*reps, total, func(h *hasher) {
			for _, d := range docs {
				buf = tok.AppendEncode(buf[:0], d, false)
				h.add32(buf)
			}
		})
		ours.print(fam, "routekit")
		fmt.Printf("%-12s %-22s load %.0f ms\n", fam, "routekit", load.Seconds()*1000)
		if name, ok := tiktokens[fam]; ok {
			enc, err := tiktoken.GetEncoding(name)
			if err != nil {
				fmt.Printf("%-12s %-22s skipped: %v\n", fam, "tiktoken-go", err)
				continue
			}
			r := measure(*reps, total, func(h *hasher) {
				for _, d := range docs {
					h.addInt(enc.Encode(d, []string{"all"}, nil))
				}
			})
			r.print(fam, "pkoukk/tiktoken-go")
			if r.hash != ours.hash {
				fmt.Printf("%-12s MISMATCH between routekit and tiktoken-go\n", fam)
			}
		}
	}
}

type result struct {
	mbps float64 // wall clock
	cpu  float64 // per CPU-second of the process (user+system), robust to other load

	tokens int
	hash   uint64
}

func (r result) print(fam, impl string) {
	fmt.Printf("%-12s %-22s %8.2f %8.2f %9d %016x\n", fam, impl, r.mbps, r.cpu, r.tokens, r.hash)
}

type hasher struct {
	n   int
	buf [4]byte
	h   interface {
		Write([]byte) (int, error)
		Sum64() uint64
	}
}

func (h *hasher) add32(ids []uint32) {
	if h == nil {
		return
	}
	for _, id := range ids {
		h.buf = [4]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}
		_, _ = h.h.Write(h.buf[:])
	}
	h.n += len(ids)
}

func (h *hasher) addInt(ids []int) {
	if h == nil {
		return
	}
	for _, id := range ids {
		h.buf = [4]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}
		_, _ = h.h.Write(h.buf[:])
	}
	h.n += len(ids)
}

// measure hashes the output of one untimed pass, then times reps passes and keeps the fastest.
func measure(reps, bytes int, pass func(*hasher)) result {
	var r result
	h := &hasher{h: fnv.New64a()}
	pass(h)
	r.tokens, r.hash = h.n, h.h.Sum64()
	var best, bestCPU time.Duration
	for i := 0; i < reps; i++ {
		t0, c0 := time.Now(), processCPU()
		pass(nil)
		d, c := time.Since(t0), processCPU()-c0
		if i == 0 || d < best {
			best = d
		}
		if i == 0 || c < bestCPU {
			bestCPU = c
		}
	}
	r.mbps = float64(bytes) / best.Seconds() / 1e6
	r.cpu = float64(bytes) / bestCPU.Seconds() / 1e6
	return r
}

// documents returns the prose and code chunks (>= 200 bytes) of the golden corpus.
func documents(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	var all []string
	if err := json.NewDecoder(zr).Decode(&all); err != nil {
		return nil, err
	}
	var docs []string
	for _, s := range all {
		if len(s) >= 200 {
			docs = append(docs, s)
		}
	}
	return docs, nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compare:", err)
	os.Exit(1)
}
