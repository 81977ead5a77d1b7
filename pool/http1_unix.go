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
// case p holds nothing and the caller writes the rest itself. x carries the
// state between the calls of the function, so that an exchange does not
// allocate; one x serves one exchange at a time.
func sendThenRead(x *rawExchange, rc rawConn, req, p []byte) (n, sent int, err error) {
	if x.step == nil {
		x.step = x.do
	}
	*x = rawExchange{step: x.step, req: req, p: p, first: true}
	err = rc.Read(x.step)
	n, sent, werr, rerr := x.n, x.sent, x.werr, x.rerr
	*x = rawExchange{step: x.step} // drop the references to req and p
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

// rawExchange is the state of one sendThenRead.
type rawExchange struct {
	step       func(fd uintptr) bool // x.do, bound once
	req, p     []byte
	first      bool
	n, sent    int
	werr, rerr error
}

// do is called by RawConn.Read: first to write the request, then each time
// the connection may be readable.
func (x *rawExchange) do(fd uintptr) bool {
	if x.first {
		x.first = false
		for x.sent < len(x.req) {
			m, err := syscall.Write(int(fd), x.req[x.sent:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true
			case err != nil:
				x.werr = err
				return true
			}
			x.sent += m
		}
		return false // wait until the answer is readable
	}
	for {
		x.n, x.rerr = syscall.Read(int(fd), x.p)
		if x.rerr != syscall.EINTR {
			break
		}
	}
	return x.rerr != syscall.EAGAIN // EAGAIN: woken spuriously, wait again
}
