package fleet_test

import (
	"context"
	"fmt"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/router"
)

func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := fleet.Start(ctx, fleet.Config{Embedded: 2}) // two simulated vLLM servers
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	go func() { _ = f.Run(ctx) }() // scraper, KV events, index expiry

	_, _, _, err = f.Router(router.Policy{})
	fmt.Println("router:", err)
	fmt.Println("model:", f.Model)
	for _, e := range f.Pool.Snapshot().Endpoints() {
		fmt.Println(e.ID, "fresh:", !e.Stale(), "block size:", e.Metrics().BlockSize)
	}
	fmt.Println("KV-event sources:", f.Subscriber() != nil)
	// Output:
	// router: <nil>
	// model: sim-model
	// sim-0 fresh: true block size: 16
	// sim-1 fresh: true block size: 16
	// KV-event sources: true
}
