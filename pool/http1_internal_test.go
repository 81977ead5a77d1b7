package pool

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzHTTP1Response feeds arbitrary bytes to the HTTP/1.1 response parser: it
// must never panic, never return a body larger than the limit, and return a
// body only for a 200.
func FuzzHTTP1Response(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nclose-delimited"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\nno"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxPage = 1 << 12
		h := &http1{r: bufio.NewReaderSize(bytes.NewReader(data), 256)}
		var buf bytes.Buffer
		for range 3 { // 1xx responses loop inside roundTrip; emulate a few reads
			code, _, body, _, err := h.readResponse(maxPage, &buf)
			if err != nil {
				return
			}
			if len(body) > maxPage {
				t.Fatalf("body of %d bytes over the %d limit", len(body), maxPage)
			}
			if code != 200 && body != nil {
				t.Fatalf("body returned for status %d", code)
			}
			if h.pending > 0 {
				_, _ = h.r.Discard(h.pending)
				h.pending = 0
			}
		}
	})
}
