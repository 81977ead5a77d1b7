//go:build unix

package tokenizer

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of the process. Benchmarks report throughput per
// CPU second besides wall time, because the shared 2-core machine is often oversubscribed.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
