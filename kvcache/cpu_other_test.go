//go:build !linux

package kvcache_test

import "testing"

type cpuTimer struct{}

func startCPU() cpuTimer         { return cpuTimer{} }
func (cpuTimer) stop(*testing.B) {}
