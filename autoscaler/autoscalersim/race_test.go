//go:build race

package autoscalersim

// raceEnabled is true when the tests run under the race detector. The
// simulation runs on one goroutine, so the detector finds nothing in it but
// slows it twentyfold; the long goal runs skip themselves under it.
const raceEnabled = true
