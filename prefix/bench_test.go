package prefix

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"testing"
)

// naiveKeys is the baseline: a parent-chained 64-bit FNV-1a over a freshly
// encoded byte buffer per block, the shape of a straightforward implementation.
func naiveKeys(model string, bs int, tokens []uint32) []uint64 {
	f := fnv.New64a()
	f.Write([]byte(model))
	parent := f.Sum64()
	var keys []uint64
	for i := 0; i+bs <= len(tokens); i += bs {
		buf := make([]byte, 8+4*bs)
		binary.LittleEndian.PutUint64(buf, parent)
		for j, t := range tokens[i : i+bs] {
			binary.LittleEndian.PutUint32(buf[8+4*j:], t)
		}
		f.Reset()
		f.Write(buf)
		parent = f.Sum64()
		keys = append(keys, parent)
	}
	return keys
}

func BenchmarkAppendKeys(b *testing.B) {
	for _, n := range []int{1024, 8192, 131072} {
		tokens := seq(n, 1)
		b.Run(fmt.Sprintf("tokens=%d/xxh3", n), func(b *testing.B) {
			h := mustHasher(b, "meta-llama/Llama-3.1-8B-Instruct")
			dst := make([]uint64, 0, n/16)
			b.SetBytes(int64(4 * n))
			b.ReportAllocs()
			for b.Loop() {
				dst = h.AppendKeys(dst[:0], tokens, Extra{LoRA: "adapter"})
			}
		})
		b.Run(fmt.Sprintf("tokens=%d/naive-fnv", n), func(b *testing.B) {
			b.SetBytes(int64(4 * n))
			b.ReportAllocs()
			for b.Loop() {
				_ = naiveKeys("meta-llama/Llama-3.1-8B-Instruct", 16, tokens)
			}
		})
	}
}

func BenchmarkAppendTextKeys(b *testing.B) {
	text := string(make([]byte, 32768)) // ≈ 8k tokens of English
	h := mustHasher(b, "m")
	dst := make([]uint64, 0, 512)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		dst = h.AppendTextKeys(dst[:0], text, Extra{})
	}
}
