//go:build race

package scheduler

// raceEnabled: under the race detector sync.Pool drops items at random, so
// pooled scratch is reallocated and allocation counts are meaningless.
const raceEnabled = true
