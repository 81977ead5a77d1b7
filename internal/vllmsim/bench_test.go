package vllmsim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/prefix/vllmhash"
)

// BenchmarkEngineDecodeStep measures one Schedule+Complete of a batch of
// decoding sequences: the inner loop of every simulation.
func BenchmarkEngineDecodeStep(b *testing.B) {
	for _, batch := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			cfg := vllmsim.Qwen3_32B_H100x2()
			eng, err := vllmsim.NewEngine(cfg)
			if err != nil {
				b.Fatal(err)
			}
			// Steady state: a finished sequence is replaced at once, so
			// the batch stays full (replacements add a 64-token prefill
			// once every 4096 steps per sequence).
			const maxTokens = 4096
			n := 0
			now := time.Duration(0)
			add := func() {
				p := make([]uint32, 64, 64+maxTokens)
				for j := range p {
					p[j] = uint32(n*1000 + j)
				}
				n++
				if _, err := eng.Add(&vllmsim.Request{ID: "r", Prompt: p, MaxTokens: maxTokens, IgnoreEOS: true}, now); err != nil {
					b.Fatal(err)
				}
			}
			for range batch {
				add()
			}
			step := func() {
				d, ok := eng.Schedule(now)
				if !ok {
					b.Fatal("nothing to schedule")
				}
				now += d
				out := eng.Complete(now)
				for _, t := range out.Tokens {
					if t.Finish != vllmsim.NotFinished {
						add()
					}
				}
			}
			for range 3 { // prefill
				step()
			}
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkEnginePrefill measures admitting and prefilling a fresh prompt,
// with the fleet simulator's FastHasher and with vLLM's sha256_cbor (the
// server's default): the cost of exact vLLM hashes.
func BenchmarkEnginePrefill(b *testing.B) {
	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
	if err != nil {
		b.Fatal(err)
	}
	hashers := []struct {
		name string
		h    vllmsim.BlockHasher
	}{
		{"fast", vllmsim.FastHasher{}},
		{"sha256_cbor", vllmsim.VLLMHasher(h)},
	}
	for _, hs := range hashers {
		for _, n := range []int{1024, 8192} {
			b.Run(fmt.Sprintf("%s/prompt=%d", hs.name, n), func(b *testing.B) {
				cfg := vllmsim.Qwen3_32B_H100x2()
				eng, err := vllmsim.NewEngine(cfg, vllmsim.WithHasher(hs.h))
				if err != nil {
					b.Fatal(err)
				}
				prompt := make([]uint32, n, n+1)
				now := time.Duration(0)
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					i++
					prompt[0] = uint32(i) // a fresh chain every time
					seq, err := eng.Add(&vllmsim.Request{ID: "r", Prompt: prompt, MaxTokens: 1, IgnoreEOS: true}, now)
					if err != nil {
						b.Fatal(err)
					}
					for seq.Finish() == vllmsim.NotFinished {
						d, _ := eng.Schedule(now)
						now += d
						eng.Complete(now)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkHashBlock measures one 16-token block identity, chained on the
// previous one, with FastHasher and with vLLM's sha256_cbor (the figures
// FastHasher's doc quotes).
func BenchmarkHashBlock(b *testing.B) {
	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]uint32, 16)
	for i := range tokens {
		tokens[i] = uint32(1000 + 37*i)
	}
	for _, hs := range []struct {
		name string
		h    vllmsim.BlockHasher
	}{{"fast", vllmsim.FastHasher{}}, {"sha256_cbor", vllmsim.VLLMHasher(h)}} {
		b.Run(hs.name, func(b *testing.B) {
			b.ReportAllocs()
			var parent vllmsim.Hash
			for b.Loop() {
				parent = hs.h.HashBlock(parent, tokens, "")
			}
			if parent.IsZero() {
				b.Fatal("no hash")
			}
		})
	}
}
