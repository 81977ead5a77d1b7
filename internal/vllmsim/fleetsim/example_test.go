package fleetsim_test

import (
	"fmt"
	"time"

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

// A precise prefix router: an index fed by the replicas' KV events (as a
// kvcache index would be over ZMQ) scores each replica by the request's
// leading cached blocks.
func Example_preciseIndex() {
	index := map[int]map[uint64]int{} // replica → block key → copies
	onKV := func(r *fleetsim.Replica, _ time.Duration, ev vllmsim.KVEvent) {
		m := index[r.ID()]
		if m == nil {
			m = map[uint64]int{}
			index[r.ID()] = m
		}
		for _, k := range ev.Keys {
			switch ev.Kind {
			case vllmsim.BlockStored:
				m[k]++
			case vllmsim.BlockRemoved:
				if m[k]--; m[k] <= 0 {
					delete(m, k)
				}
			}
		}
		if ev.Kind == vllmsim.AllBlocksCleared {
			clear(m)
		}
	}
	precise := fleetsim.RouterFunc(func(req *fleetsim.Request, st *fleetsim.State) *fleetsim.Replica {
		var best *fleetsim.Replica
		bestHit := -1
		for _, r := range st.Replicas {
			hit := 0
			for _, k := range req.Keys {
				if index[r.ID()][k] == 0 {
					break
				}
				hit++
			}
			if hit > bestHit || (hit == bestHit && r.InFlight() < best.InFlight()) {
				best, bestHit = r, hit
			}
		}
		return best
	})
	w := fleetsim.SharedPrefix{
		Groups: 16, PromptsPerGroup: 4, SystemPromptLen: 4000, QuestionLen: 400, OutputLen: 100,
		Arrivals:    fleetsim.Arrivals{Poisson: true, Stages: []fleetsim.Stage{{Rate: 8}}},
		NumRequests: 300, Seed: 7,
	}.Workload()
	cfg := vllmsim.Qwen3_32B_H100x2()
	cfg.NumBlocks = 2000
	sim, err := fleetsim.New(fleetsim.Config{Engine: cfg, Replicas: 4, Seed: 7, OnKVEvent: onKV, KVEventDelay: 5 * time.Millisecond}, w, precise)
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := sim.Run()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("precise: finished=%d hit=%.0f%% ttft-p90=%.1fs\n", rep.Finished, 100*rep.PrefixHitRate, rep.TTFT.P90.Seconds())
	// Output:
	// precise: finished=300 hit=92% ttft-p90=0.1s
}
