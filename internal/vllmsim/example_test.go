package vllmsim_test

import (
	"fmt"
	"time"

	"github.com/routekit/routekit/internal/vllmsim"
)

// Drive one engine by hand: a cold prompt, then the same prompt again, which
// hits the prefix cache.
func ExampleEngine() {
	eng, err := vllmsim.NewEngine(vllmsim.Qwen3_32B_H100x2())
	if err != nil {
		fmt.Println(err)
		return
	}
	prompt := make([]uint32, 8000)
	for i := range prompt {
		prompt[i] = uint32(1000 + i)
	}
	now := time.Duration(0)
	for i := range 2 {
		seq, err := eng.Add(&vllmsim.Request{ID: fmt.Sprint(i), Prompt: prompt, MaxTokens: 10, IgnoreEOS: true}, now)
		if err != nil {
			fmt.Println(err)
			return
		}
		start := now
		for seq.Finish() == vllmsim.NotFinished {
			d, ok := eng.Schedule(now)
			if !ok {
				break
			}
			now += d
			eng.Complete(now)
		}
		fmt.Printf("request %d: ttft=%v cached=%d output=%d finish=%v\n",
			i, (seq.FirstToken - start).Round(time.Millisecond), seq.CachedTokens(), len(seq.Output()), seq.Finish())
	}
	// Output:
	// request 0: ttft=514ms cached=0 output=10 finish=length
	// request 1: ttft=15ms cached=7984 output=10 finish=length
}
