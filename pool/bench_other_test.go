//go:build !linux

package pool_test

import "testing"

func benchRunFloorEpoll(b *testing.B) { b.Skip("the epoll floor is Linux-only") }
