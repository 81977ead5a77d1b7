//go:build !unix

package pool

import (
	"errors"
	"net"
)

// rawConn is unused where sendThenRead is not implemented: http1 writes the
// request and then reads, as usual.
type rawConn interface{}

func rawConnOf(net.Conn) rawConn { return nil }

type rawExchange struct{}

func sendThenRead(*rawExchange, rawConn, []byte, []byte) (int, int, error) {
	return 0, 0, errors.New("pool: sendThenRead is not implemented on this platform")
}
