//go:build unix

package pool

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestSendThenRead(t *testing.T) {
	req := []byte("GET /metrics HTTP/1.1\r\n\r\n")
	t.Run("answer", func(t *testing.T) {
		c, s := tcpPair(t)
		go func() {
			got := make([]byte, len(req))
			if _, err := io.ReadFull(s, got); err == nil && bytes.Equal(got, req) {
				_, _ = s.Write([]byte("HTTP/1.1 200 OK\r\n"))
			}
		}()
		p := make([]byte, 64)
		n, sent, err := sendThenRead(new(rawExchange), rawConnOf(c), req, p)
		require.NoError(t, err)
		assert.Equal(t, len(req), sent)
		assert.Equal(t, "HTTP/1.1 200 OK\r\n", string(p[:n]))
	})
	t.Run("peer closes: EOF", func(t *testing.T) {
		c, s := tcpPair(t)
		go func() { _, _ = io.ReadFull(s, make([]byte, len(req))); _ = s.Close() }()
		_, sent, err := sendThenRead(new(rawExchange), rawConnOf(c), req, make([]byte, 64))
		assert.Equal(t, len(req), sent)
		assert.ErrorIs(t, err, io.EOF)
	})
	t.Run("deadline", func(t *testing.T) {
		c, _ := tcpPair(t)
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Millisecond)))
		_, sent, err := sendThenRead(new(rawExchange), rawConnOf(c), req, make([]byte, 64))
		assert.Equal(t, len(req), sent, "written before the wait")
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("deadline passed: nothing written", func(t *testing.T) {
		c, _ := tcpPair(t)
		require.NoError(t, c.SetDeadline(time.Unix(1, 0)))
		_, sent, err := sendThenRead(new(rawExchange), rawConnOf(c), req, make([]byte, 64))
		assert.Zero(t, sent)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("reset peer: write error", func(t *testing.T) {
		c, s := tcpPair(t)
		require.NoError(t, s.SetLinger(0))
		require.NoError(t, s.Close()) // RST
		time.Sleep(20 * time.Millisecond)
		_, _, err := sendThenRead(new(rawExchange), rawConnOf(c), req, make([]byte, 64))
		require.Error(t, err)
		var op *net.OpError
		assert.True(t, errors.As(err, &op) && !op.Timeout(), "a connection error, not a timeout: %v", err)
	})
	t.Run("send buffer full: partial, then the caller writes the rest", func(t *testing.T) {
		c, s := tcpPair(t)
		require.NoError(t, c.SetWriteBuffer(4096))
		// Fill both buffers: the server does not read yet.
		junk := make([]byte, 64<<10)
		var filled int
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
		for {
			n, err := c.Write(junk)
			filled += n
			if err != nil {
				break
			}
		}
		require.NoError(t, c.SetDeadline(time.Time{}))
		big := bytes.Repeat([]byte("x"), 64<<10)
		_, sent, err := sendThenRead(new(rawExchange), rawConnOf(c), big, make([]byte, 64))
		require.NoError(t, err)
		assert.Less(t, sent, len(big))

		// Through connReader: the rest is written normally and the answer read.
		h := &http1{conn: c, raw: rawConnOf(c), request: big[sent:], send: true}
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyN(io.Discard, s, int64(filled+len(big)))
			if err == nil {
				_, err = s.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
			}
			done <- err
		}()
		p := make([]byte, 64)
		n, err := connReader{h}.Read(p)
		require.NoError(t, err)
		require.NoError(t, <-done)
		assert.Equal(t, "HTTP/1.1 204 No Content\r\n\r\n", string(p[:n]))
	})
}

// TestHTTP1ExchangeDoesNotAllocate: a steady exchange on a kept-alive
// connection (write the request, wait, read and hand out the page) makes no
// allocation; per-call closures and their captured state would make several.
func TestHTTP1ExchangeDoesNotAllocate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const page = "vllm:num_requests_running 1.0\n"
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + page)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil { // one request per read: the client waits for each answer
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	}()
	h := newHTTP1(ln.Addr().String(), "/metrics", "x")
	defer h.close()
	var buf bytes.Buffer
	ctx := t.Context()
	get := func() {
		code, _, body, err := h.get(ctx, false, time.Now().Add(5*time.Second), 1<<20, &buf)
		if err != nil || code != 200 || string(body) != page {
			t.Fatalf("get: %d %q %v", code, body, err)
		}
	}
	get() // dial
	// Best of three tries: the counter is process-wide and the server
	// goroutine shares it; a real allocation per exchange shows every time.
	allocs := testing.AllocsPerRun(100, get)
	for try := 0; try < 2 && allocs > 0; try++ {
		allocs = testing.AllocsPerRun(100, get)
	}
	assert.Zero(t, allocs)
}
