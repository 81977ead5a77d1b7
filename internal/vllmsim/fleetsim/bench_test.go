package fleetsim_test

import (
	"testing"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
)

// b2bSaaS is llm-d's "b2b-saas" shared-prefix workload, n requests at rate.
func b2bSaaS(n int, rate float64) fleetsim.Workload {
	return fleetsim.SharedPrefix{
		Groups: 150, PromptsPerGroup: 5, SystemPromptLen: 6000, QuestionLen: 1200, OutputLen: 1000,
		Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: rate}}},
		NumRequests: n, Seed: 42,
	}.Workload()
}

func BenchmarkSim10kRequests8Replicas(b *testing.B) {
	routers := []struct {
		name string
		r    func() fleetsim.Router
	}{
		{"random", fleetsim.Random},
		{"oracle", func() fleetsim.Router { return fleetsim.PrefixOracle(8) }},
	}
	for _, rt := range routers {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			var rep *fleetsim.Report
			for b.Loop() {
				sim, err := fleetsim.New(fleetsim.Config{Engine: vllmsim.Qwen3_32B_H100x2(), Replicas: 8, Seed: 1}, b2bSaaS(10000, 20), rt.r())
				if err != nil {
					b.Fatal(err)
				}
				rep, err = sim.Run()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rep.Finished)*float64(b.N)/b.Elapsed().Seconds(), "simreq/s")
			b.ReportMetric(rep.TTFT.P90.Seconds(), "ttft-p90-s")
			b.Log(rep)
		})
	}
	_ = time.Second
}
