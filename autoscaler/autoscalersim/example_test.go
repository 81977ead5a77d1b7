package autoscalersim_test

import (
	"fmt"
	"time"

	"github.com/routekit/routekit/autoscaler/autoscalersim"
)

// A controller that never scales, on a fleet sized for the opening load,
// against a load that doubles in five minutes: the TTFT objective is lost.
func ExampleQueueFleet_Run() {
	p, err := autoscalersim.ProfileFleet(&autoscalersim.QueueFleet{}, 30, 5*time.Minute)
	if err != nil {
		panic(err)
	}
	sc := autoscalersim.SpikeRampScenario(120 * time.Second)
	sc.Duration = 20 * time.Minute
	sc.InitialReplicas = autoscalersim.InitialReplicas(p, sc.RateAt(0))
	out, err := (&autoscalersim.QueueFleet{}).Run(sc, autoscalersim.Hold(15*time.Second))
	if err != nil {
		panic(err)
	}
	r := autoscalersim.Evaluate(sc, "hold", out, autoscalersim.Objective)
	fmt.Printf("replicas %d, attainment above 90%%: %v, spike TTFT p90 within objective: %v\n",
		sc.InitialReplicas, r.Attainment > 0.9, r.SpikeP90 <= autoscalersim.Objective)
	// Output:
	// replicas 5, attainment above 90%: false, spike TTFT p90 within objective: false
}
