//go:build unix

package pool

import (
	"io"
	"net"
	"os"
	"syscall"
)

type rawConn = syscall.RawConn

// rawConnOf returns c's raw descriptor, or nil.
func rawConnOf(c net.Conn) rawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// sendThenRead writes req to the connection and reads the first bytes of
// the answer into p. It saves a system call per exchange over Write then
// Read: a Read right after the Write would nearly always find nothing yet,
// fail with EAGAIN and only then wait. Here the wait for readability is
// armed before the request is written (RawConn.Read prepares it before its
// first call of the function), so an answer can never slip in between
// unnoticed, and the one read happens when there is data. The connection's
// deadline applies to the wait. It returns how much of req it wrote: less
// than len(req) (without an error) if the socket buffer was full, in which
// case p holds nothing and the caller writes the rest itself.
func sendThenRead(rc rawConn, req, p []byte) (n, sent int, err error) {
	var werr, rerr error
	first := true
	err = rc.Read(func(fd uintptr) bool {
		if first {
			first = false
			for sent < len(req) {
				m, err := syscall.Write(int(fd), req[sent:])
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					return true
				case err != nil:
					werr = err
					return true
				}
				sent += m
			}
			return false // wait until the answer is readable
		}
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				break
			}
		}
		return rerr != syscall.EAGAIN // EAGAIN: woken spuriously, wait again
	})
	switch {
	case err != nil:
		return 0, sent, err
	case werr != nil:
		return 0, sent, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", werr)}
	case sent < len(req):
		return 0, sent, nil
	case rerr != nil:
		return 0, sent, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, sent, io.EOF
	}
	return n, sent, nil
}
