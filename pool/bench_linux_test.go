//go:build linux

package pool_test

import (
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// benchRunFloorEpoll is a second floor, for any design of scraper: one
// goroutine writes the filtered request on all 100 sockets (non-blocking, not
// in Go's poller), then waits on an epoll set of its own (itself parked in
// Go's poller) and reads each answer as it arrives. There is no goroutine per
// endpoint, no channel, no timer but the ticker, and no parsing: only the
// system calls and the TCP work of the exchanges.
func benchRunFloorEpoll(b *testing.B) {
	addrs := startFleet(b, benchEndpoints, 1)
	req := floorRequest()
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	require.NoError(b, err)
	require.NoError(b, syscall.SetNonblock(epfd, true))
	ep := os.NewFile(uintptr(epfd), "epoll") // closes epfd
	defer ep.Close()
	rc, err := ep.SyscallConn()
	require.NoError(b, err)
	fds := make([]int, len(addrs))
	for i, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		require.NoError(b, err)
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		require.NoError(b, err)
		defer syscall.Close(fd)
		require.NoError(b, syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}))
		require.NoError(b, syscall.SetNonblock(fd, true))
		require.NoError(b, syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1))
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | -syscall.EPOLLET, Fd: int32(i)}
		require.NoError(b, syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev))
		fds[i] = fd
	}
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- floorEpollLoop(rc, epfd, fds, req, stop) }()
	measureWindows(b)
	close(stop)
	require.NoError(b, <-done)
	b.ReportMetric(syscallNS(), "ns/syscall")
}

// syscallNS is what one trivial system call (getppid) costs on this machine:
// the unit of the floors above, and a way to compare machines.
func syscallNS() float64 {
	const n = 100_000
	t0 := time.Now()
	for range n {
		syscall.Getppid()
	}
	return float64(time.Since(t0).Nanoseconds()) / n
}

func floorEpollLoop(rc syscall.RawConn, epfd int, fds []int, req []byte, stop <-chan struct{}) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	buf := make([]byte, 64<<10)
	evs := make([]syscall.EpollEvent, len(fds))
	var left int
	var rerr error
	drain := func(uintptr) bool {
		for left > 0 && rerr == nil {
			n, err := syscall.EpollWait(epfd, evs, 0)
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				rerr = err
			case n == 0:
				return false // park in Go's poller until the set is readable
			}
			for _, ev := range evs[:max(n, 0)] {
				if _, err := syscall.Read(fds[ev.Fd], buf); err != nil {
					rerr = err
				}
				left--
			}
		}
		return true
	}
	for {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		for _, fd := range fds {
			if _, err := syscall.Write(fd, req); err != nil {
				return err
			}
		}
		left, rerr = len(fds), nil
		err := rc.Read(drain)
		if err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
	}
}
