//go:build !race

package autoscalersim

const raceEnabled = false
