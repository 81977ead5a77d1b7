//go:build linux

package kvcache_test

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuTimer reports the benchmark goroutine's own CPU time per op as
// "cpu-ns/op": on a machine shared with other jobs, wall-clock ns/op includes
// the time other processes held the core, CPU time does not.
type cpuTimer struct{ start time.Duration }

func startCPU() cpuTimer {
	runtime.LockOSThread()
	return cpuTimer{start: threadCPU()}
}

func (c cpuTimer) stop(b *testing.B) {
	d := threadCPU() - c.start
	runtime.UnlockOSThread()
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
