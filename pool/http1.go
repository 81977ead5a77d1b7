package pool

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// http1 is the scraper's own HTTP/1.1 client for plain-HTTP endpoints: one
// persistent keep-alive connection per endpoint, a pre-built GET request
// written with one call, and a response parser that reads the page straight
// into the endpoint's reused buffer. It does only what scraping a /metrics
// page needs (Content-Length, chunked and close-delimited bodies, keep-alive,
// a gzip body if a server sends one anyway), which costs a fraction of the
// CPU of net/http's general client (see BENCHMARKS.md). Scrapes of one
// endpoint never overlap, so an http1 is used by one goroutine at a time.
type http1 struct {
	addr     string // host:port to dial
	request  []byte // the whole GET request
	conn     net.Conn
	r        *bufio.Reader
	reused   bool      // conn has served a response before
	raw      rawConn   // conn's raw descriptor for sendThenRead; nil where unsupported
	send     bool      // the next read of conn must first write the request
	deadline time.Time // of the exchange under way
	x        rawExchange
	pending  int // bytes of the last body still in r, handed out by Peek

	// active is the connection of the exchange under way, for abort (called
	// from another goroutine); ref is conn's box, allocated once per dial.
	active atomic.Pointer[connRef]
	ref    *connRef
	// aborted is set by an abort that cut the exchange under way (cleared
	// when the next one starts): that failure is not the endpoint's.
	aborted atomic.Bool
}

type connRef struct{ c net.Conn }

// abort makes the exchange under way, if any, fail at once. It is safe to
// call from any goroutine.
func (h *http1) abort() {
	if r := h.active.Load(); r != nil {
		h.aborted.Store(true)
		_ = r.c.SetDeadline(time.Unix(1, 0))
	}
}

// http1BufSize is the read buffer per connection. A page that fits is parsed
// where it was read, without a copy.
const http1BufSize = 64 << 10

var errMalformedResponse = errors.New("malformed HTTP response")

func newHTTP1(addr, requestURI, host string) *http1 {
	h := &http1{addr: addr}
	h.setRequest(requestURI, host)
	return h
}

// setRequest sets the request of later exchanges.
func (h *http1) setRequest(requestURI, host string) {
	h.request = []byte("GET " + requestURI + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: routekit-pool\r\nAccept: text/plain;version=0.0.4\r\nAccept-Encoding: identity\r\n\r\n")
}

func (h *http1) close() {
	if h.conn != nil {
		_ = h.conn.Close()
		h.conn, h.reused, h.pending = nil, false, 0
	}
}

// get fetches the page. It returns the HTTP status code and reason, and for a
// 200 the body, which is valid until the next call (it lies in the read
// buffer, or in buf for pages that do not fit). The exchange stops at
// deadline, or when abort is called; with watch, also when ctx is done
// (without watch, the caller must call abort when ctx is done).
func (h *http1) get(ctx context.Context, watch bool, deadline time.Time, maxPage int64, buf *bytes.Buffer) (int, string, []byte, error) {
	if h.pending > 0 {
		_, _ = h.r.Discard(h.pending) // buffered already: cannot fail
		h.pending = 0
	}
	for attempt := 0; ; attempt++ {
		if h.conn == nil {
			d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, "tcp", h.addr)
			if err != nil {
				return 0, "", nil, err
			}
			h.conn, h.reused, h.ref = c, false, &connRef{c}
			h.raw, h.send = rawConnOf(c), false
			if h.r == nil {
				h.r = bufio.NewReaderSize(connReader{h}, http1BufSize)
			} else {
				h.r.Reset(connReader{h})
			}
		}
		conn := h.conn // the func below may run after h.conn is replaced
		if h.raw != nil {
			// sendThenRead writes without waiting; only its fallback
			// needs a write deadline, and sets it. One timer less to
			// move per scrape.
			_ = conn.SetReadDeadline(deadline)
		} else {
			_ = conn.SetDeadline(deadline)
		}
		h.deadline = deadline
		h.aborted.Store(false)
		h.active.Store(h.ref)
		stop := func() bool { return false }
		if watch {
			stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		} else if ctx.Err() != nil { // done before abort could see this exchange
			h.abort()
		}
		code, reason, body, keep, err := h.roundTrip(maxPage, buf)
		stop()
		h.active.Store(nil)
		if err != nil {
			reused := h.reused
			h.close()
			// A keep-alive connection the server closed while idle fails on
			// its next use before any byte of a response: retry once on a new
			// connection, as net/http does for idempotent requests.
			if reused && attempt == 0 && errors.Is(err, errIdleClosed) && ctx.Err() == nil {
				continue
			}
			return 0, "", nil, err
		}
		if keep {
			h.reused = true
		} else {
			if h.pending > 0 { // the body is in r: keep it readable
				h.pending = 0
				body = append(buf.Bytes()[:0], body...)
			}
			h.close()
		}
		return code, reason, body, nil
	}
}

var errIdleClosed = errors.New("connection closed before the response")

// connReader is what h's bufio.Reader reads from: the connection, except
// that the first read of an exchange writes the request first (see
// sendThenRead).
type connReader struct{ h *http1 }

func (r connReader) Read(p []byte) (int, error) {
	h := r.h
	if !h.send {
		return h.conn.Read(p)
	}
	h.send = false
	n, sent, err := sendThenRead(&h.x, h.raw, h.request, p)
	if err != nil {
		return 0, err
	}
	if sent < len(h.request) { // the socket buffer was full: finish normally
		_ = h.conn.SetWriteDeadline(h.deadline)
		if _, err := h.conn.Write(h.request[sent:]); err != nil {
			return 0, err
		}
		return h.conn.Read(p)
	}
	return n, nil
}

func (h *http1) roundTrip(maxPage int64, buf *bytes.Buffer) (code int, reason string, body []byte, keep bool, err error) {
	if h.raw != nil {
		h.send = true // the first read of the response writes the request
	} else if _, err := h.conn.Write(h.request); err != nil {
		return 0, "", nil, false, fmt.Errorf("%w: %w", errIdleClosed, err)
	}
	for {
		code, reason, body, keep, err = h.readResponse(maxPage, buf)
		if err != nil || code >= 200 {
			return code, reason, body, keep, err
		}
		// 1xx informational responses precede the real one.
	}
}

func (h *http1) readResponse(maxPage int64, buf *bytes.Buffer) (int, string, []byte, bool, error) {
	line, err := h.r.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (err == io.EOF || errors.Is(err, net.ErrClosed) || isConnReset(err)) {
			return 0, "", nil, false, fmt.Errorf("%w: %w", errIdleClosed, err)
		}
		return 0, "", nil, false, readErr("status line", err)
	}
	line = trimCRLF(line)
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return 0, "", nil, false, fmt.Errorf("%w: bad status line %q", errMalformedResponse, truncate(line))
	}
	http10 := line[7] == '0'
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || code > 999 || (len(line) > 12 && line[12] != ' ') {
		return 0, "", nil, false, fmt.Errorf("%w: bad status line %q", errMalformedResponse, truncate(line))
	}
	reason := ""
	if len(line) > 13 && code != 200 { // only errors report it: spare an allocation per scrape
		reason = string(line[13:])
	}

	contentLength := int64(-1)
	chunked, gzipped, keep := false, false, !http10
	for {
		line, err := h.r.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return 0, "", nil, false, fmt.Errorf("%w: header line longer than %d bytes", errMalformedResponse, http1BufSize)
			}
			return 0, "", nil, false, readErr("headers", err)
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, "", nil, false, fmt.Errorf("%w: bad header line %q", errMalformedResponse, truncate(line))
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (contentLength >= 0 && n != contentLength) {
				return 0, "", nil, false, fmt.Errorf("%w: bad Content-Length %q", errMalformedResponse, truncate(value))
			}
			contentLength = n
		case asciiEqualFold(name, "transfer-encoding"):
			if !asciiEqualFold(value, "chunked") {
				return 0, "", nil, false, fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformedResponse, truncate(value))
			}
			chunked = true
		case asciiEqualFold(name, "connection"):
			if containsFold(value, "close") {
				keep = false
			} else if containsFold(value, "keep-alive") {
				keep = true
			}
		case asciiEqualFold(name, "content-encoding"):
			switch {
			case asciiEqualFold(value, "gzip"):
				gzipped = true
			case len(value) == 0 || asciiEqualFold(value, "identity"):
			default:
				return 0, "", nil, false, fmt.Errorf("%w: unsupported Content-Encoding %q", errMalformedResponse, truncate(value))
			}
		}
	}
	if code < 200 || code == 204 || code == 304 {
		return code, reason, nil, keep, nil
	}
	if chunked {
		contentLength = -1 // Transfer-Encoding wins (RFC 9112 §6.3)
	}
	if code != 200 {
		// Keep the connection only if the error body is short and delimited.
		if !chunked && contentLength >= 0 && contentLength <= 4<<10 {
			if _, err := h.r.Discard(int(contentLength)); err != nil {
				return 0, "", nil, false, readErr("body", err)
			}
			return code, reason, nil, keep, nil
		}
		return code, reason, nil, false, nil
	}
	buf.Reset()
	switch {
	case chunked:
		err = h.readChunked(maxPage, buf)
	case contentLength >= 0:
		if contentLength > maxPage {
			return 0, "", nil, false, fmt.Errorf("%w: Content-Length %d > %d bytes", ErrPageTooLarge, contentLength, maxPage)
		}
		if !gzipped && contentLength <= int64(h.r.Size()) {
			body, err := h.r.Peek(int(contentLength))
			if err != nil {
				return 0, "", nil, false, readErr("body", err)
			}
			h.pending = len(body)
			return code, reason, body, keep, nil
		}
		buf.Grow(int(contentLength))
		_, err = io.CopyN(buf, h.r, contentLength)
	default: // delimited by the end of the connection
		keep = false
		var n int64
		n, err = buf.ReadFrom(io.LimitReader(h.r, maxPage+1))
		if err == nil && n > maxPage {
			err = fmt.Errorf("%w: more than %d bytes", ErrPageTooLarge, maxPage)
		}
	}
	if err != nil {
		if errors.Is(err, ErrPageTooLarge) {
			return 0, "", nil, false, err
		}
		return 0, "", nil, false, readErr("body", err)
	}
	if gzipped {
		if err := gunzip(buf, maxPage); err != nil {
			return 0, "", nil, false, err
		}
	}
	return code, reason, buf.Bytes(), keep, nil
}

func (h *http1) readChunked(maxPage int64, buf *bytes.Buffer) error {
	var total int64
	for {
		line, err := h.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 { // chunk extensions
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: bad chunk size %q", errMalformedResponse, truncate(line))
		}
		if size == 0 {
			for { // trailers, then the final empty line
				line, err := h.r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(trimCRLF(line)) == 0 {
					return nil
				}
			}
		}
		if total += size; total > maxPage {
			return fmt.Errorf("%w: more than %d bytes", ErrPageTooLarge, maxPage)
		}
		buf.Grow(int(size))
		if _, err := io.CopyN(buf, h.r, size); err != nil {
			return err
		}
		crlf, err := h.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(trimCRLF(crlf)) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformedResponse)
		}
	}
}

func gunzip(buf *bytes.Buffer, maxPage int64) error {
	zr, err := gzip.NewReader(bytes.NewReader(bytes.Clone(buf.Bytes())))
	if err != nil {
		return fmt.Errorf("gzip body: %w", err)
	}
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(zr, maxPage+1))
	if err != nil {
		return fmt.Errorf("gzip body: %w", err)
	}
	if n > maxPage {
		return fmt.Errorf("%w: more than %d bytes after gzip", ErrPageTooLarge, maxPage)
	}
	return nil
}

func readErr(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: connection closed in the %s (truncated response)", errMalformedResponse, what)
	}
	return fmt.Errorf("reading %s: %w", what, err)
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether the comma-separated list b has token s (s in
// lower case).
func containsFold(b []byte, s string) bool {
	for part := range bytes.SplitSeq(b, []byte{','}) {
		if asciiEqualFold(bytes.TrimSpace(part), s) {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
