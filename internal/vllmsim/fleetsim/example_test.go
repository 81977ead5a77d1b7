package fleetsim_test

import (
	"fmt"

	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/internal/vllmsim/fleetsim"
)

// Compare random routing with a prefix-cache oracle on a shared-prefix
// workload.
func Example() {
	for _, policy := range []struct {
		name   string
		router fleetsim.Router
	}{
		{"random", fleetsim.Random()},
		{"oracle", fleetsim.PrefixOracle(4)},
	} {
		w := fleetsim.SharedPrefix{
			Groups: 16, PromptsPerGroup: 4, SystemPromptLen: 4000, QuestionLen: 400, OutputLen: 100,
			Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: 8}}},
			NumRequests: 300, Seed: 7,
		}.Workload()
		cfg := vllmsim.Qwen3_32B_H100x2()
		cfg.NumBlocks = 2000 // a small cache, so placement matters
		sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 4, Seed: 7}, w, policy.router)
		if err != nil {
			fmt.Println(err)
			return
		}
		rep, err := sim.Run()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: finished=%d hit=%.0f%% ttft-p90=%.1fs\n", policy.name, rep.Finished,
			100*rep.PrefixHitRate, rep.TTFT.P90.Seconds())
	}
	// Output:
	// random: finished=300 hit=33% ttft-p90=0.9s
	// oracle: finished=300 hit=90% ttft-p90=0.2s
}
