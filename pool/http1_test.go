package pool_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/pool"
)

// rawServer accepts connections on a loopback port and answers every request
// (read up to its blank line) with respond(n), n counting requests from 0;
// respond returns the bytes to write and whether to close the connection
// after them.
type rawServer struct {
	ln      net.Listener
	accepts atomic.Int64
	reqs    atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex // guards conns
	conns   []net.Conn
}

func newRawServer(t *testing.T, respond func(n int) ([]byte, bool)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					out, closeAfter := respond(int(s.reqs.Add(1) - 1))
					if _, err := c.Write(out); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func response(headers string, body []byte) []byte {
	return append([]byte("HTTP/1.1 200 OK\r\n"+headers+"\r\n"), body...)
}

func withLength(body []byte) []byte {
	return response(fmt.Sprintf("Content-Length: %d\r\n", len(body)), body)
}

func chunked(body []byte, chunk int) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for len(body) > 0 {
		n := min(chunk, len(body))
		fmt.Fprintf(&b, "%x;ext=1\r\n", n)
		b.Write(body[:n])
		b.WriteString("\r\n")
		body = body[n:]
	}
	b.WriteString("0\r\nX-Trailer: yes\r\n\r\n")
	return b.Bytes()
}

func gzipped(body []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(body)
	_ = zw.Close()
	return response(fmt.Sprintf("Content-Encoding: gzip\r\nContent-Length: %d\r\n", z.Len()), z.Bytes())
}

// TestHTTP1Protocol drives the scraper's own HTTP/1.1 client through the
// framings and failures a /metrics server can produce, three scrapes each.
func TestHTTP1Protocol(t *testing.T) {
	good := golden(t)
	big := bigPage(t, 8) // ~110 KB: larger than the 64 KB read buffer
	tests := []struct {
		name        string
		respond     func(n int) ([]byte, bool)
		wantAccepts int64
		wantErr     string // in every scrape's error; "" means all succeed
		wantRunning int
	}{
		{name: "content-length keep-alive", respond: func(int) ([]byte, bool) { return withLength(good), false }, wantAccepts: 1, wantRunning: 7},
		{name: "content-length larger than the read buffer", respond: func(int) ([]byte, bool) { return withLength(big), false }, wantAccepts: 1, wantRunning: 56},
		{name: "chunked with extensions and trailers", respond: func(int) ([]byte, bool) { return chunked(good, 1000), false }, wantAccepts: 1, wantRunning: 7},
		{name: "chunked large", respond: func(int) ([]byte, bool) { return chunked(big, 8192), false }, wantAccepts: 1, wantRunning: 56},
		{name: "HTTP/1.0 close-delimited", respond: func(int) ([]byte, bool) {
			return append([]byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"), good...), true
		}, wantAccepts: 3, wantRunning: 7},
		{name: "Connection: close with length", respond: func(int) ([]byte, bool) {
			return response(fmt.Sprintf("Connection: close\r\nContent-Length: %d\r\n", len(good)), good), true
		}, wantAccepts: 3, wantRunning: 7},
		{name: "server closes idle keep-alive connections", respond: func(int) ([]byte, bool) { return withLength(good), true }, wantAccepts: 3, wantRunning: 7},
		{name: "100 Continue first", respond: func(int) ([]byte, bool) {
			return append([]byte("HTTP/1.1 100 Continue\r\n\r\n"), withLength(good)...), false
		}, wantAccepts: 1, wantRunning: 7},
		{name: "gzip despite identity", respond: func(int) ([]byte, bool) { return gzipped(good), false }, wantAccepts: 1, wantRunning: 7},
		{name: "bad status line", respond: func(int) ([]byte, bool) { return []byte("HTTP/2 200\r\n\r\n"), false }, wantAccepts: 3, wantErr: "malformed HTTP response: bad status line"},
		{name: "not HTTP", respond: func(int) ([]byte, bool) { return []byte("SSH-2.0-OpenSSH_9.6\r\n"), false }, wantAccepts: 3, wantErr: "bad status line"},
		{name: "bad chunk size", respond: func(int) ([]byte, bool) {
			return []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), false
		}, wantAccepts: 3, wantErr: "bad chunk size"},
		{name: "truncated body", respond: func(int) ([]byte, bool) {
			return response("Content-Length: 5000\r\n", good[:100]), true
		}, wantAccepts: 3, wantErr: "truncated response"},
		{name: "closed before status", respond: func(int) ([]byte, bool) { return nil, true }, wantAccepts: 3, wantErr: "connection closed before the response"},
		{name: "conflicting content-length", respond: func(int) ([]byte, bool) {
			return response("Content-Length: 10\r\nContent-Length: 11\r\n", good[:10]), false
		}, wantAccepts: 3, wantErr: "bad Content-Length"},
		{name: "unsupported transfer-encoding", respond: func(int) ([]byte, bool) {
			return response("Transfer-Encoding: gzip, chunked\r\n", nil), false
		}, wantAccepts: 3, wantErr: "unsupported Transfer-Encoding"},
		{name: "header line too long", respond: func(int) ([]byte, bool) {
			return response("X-Long: "+strings.Repeat("a", 70<<10)+"\r\n", nil), false
		}, wantAccepts: 3, wantErr: "header line longer than"},
		{name: "503 with a long body closes, next one reconnects", respond: func(int) ([]byte, bool) {
			return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 10000)), false
		}, wantAccepts: 3, wantErr: "HTTP 503 Service Unavailable"},
		{name: "503 with a short body keeps the connection", respond: func(int) ([]byte, bool) {
			return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"), false
		}, wantAccepts: 1, wantErr: "HTTP 503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, tt.respond)
			p := pool.New()
			e := storeEP(t, p, "a", srv.ln.Addr().String())
			s, err := pool.NewScraper(p, pool.WithTimeout(5*time.Second))
			require.NoError(t, err)
			for i := range 3 {
				s.Scrape(context.Background())
				st := e.Status()
				if tt.wantErr != "" {
					require.Error(t, st.Err, "scrape %d", i)
					assert.Contains(t, st.Err.Error(), tt.wantErr)
					continue
				}
				require.NoError(t, st.Err, "scrape %d", i)
				assert.Equal(t, tt.wantRunning, e.Metrics().Running)
			}
			assert.Equal(t, tt.wantAccepts, srv.accepts.Load(), "connections opened")
			s.CloseIdleConnections()
		})
	}
}

// TestHTTP1PageIntactAfterClose checks that a page read into the connection's
// buffer survives the connection being closed (Connection: close) until it is
// parsed, also with a page that changes between scrapes.
func TestHTTP1PageChangesBetweenScrapes(t *testing.T) {
	srv := newRawServer(t, func(n int) ([]byte, bool) {
		body := page(fmt.Sprintf("vllm:num_requests_running %d", n), "vllm:num_requests_waiting 1", "vllm:kv_cache_usage_perc 0.5")
		return withLength([]byte(body)), n%2 == 1
	})
	p := pool.New()
	e := storeEP(t, p, "a", srv.ln.Addr().String())
	s, err := pool.NewScraper(p)
	require.NoError(t, err)
	for i := range 6 {
		s.Scrape(context.Background())
		require.NoError(t, e.Status().Err)
		assert.Equal(t, i, e.Metrics().Running)
	}
	assert.Equal(t, int64(3), srv.accepts.Load())
}
