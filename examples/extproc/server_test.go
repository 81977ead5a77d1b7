package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/kvcache"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/prefix"
)

// harness is the ext_proc server on a loopback port and a client playing
// Envoy's side.
type harness struct {
	pool   *pool.Pool
	srv    *Server
	m      *router.Metrics
	conn   *grpc.ClientConn
	client extprocv3.ExternalProcessorClient
}

func newHarness(t *testing.T, n int, pol router.Policy) *harness {
	t.Helper()
	p := pool.New()
	for i := range n {
		require.NoError(t, p.Store(pool.Endpoint{ID: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("10.1.0.%d:8000", i+1), Models: []string{"m"}}))
	}
	for _, e := range p.Snapshot().Endpoints() {
		e.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})
	}
	h, err := prefix.NewHasher("m", prefix.WithBlockSize(16))
	require.NoError(t, err)
	idx, err := kvcache.New(h)
	require.NoError(t, err)
	s, fc, err := pol.Build(p, idx)
	require.NoError(t, err)
	m := router.NewMetrics(p, fc)
	opts := []router.Option{router.WithPrefix(h, idx), router.WithMetrics(m),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML})}
	if fc != nil {
		opts = append(opts, router.WithFlowControl(fc))
	}
	rt, err := router.New(p, s, opts...)
	require.NoError(t, err)

	es := NewServer(rt, true)
	gs, _ := newGRPCServer(es)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &harness{pool: p, srv: es, m: m, conn: conn, client: extprocv3.NewExternalProcessorClient(conn)}
}

// envoy is one Process stream, driven message by message.
type envoy struct {
	t      *testing.T
	stream extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

func (h *harness) open(t *testing.T) *envoy {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	st, err := h.client.Process(ctx)
	require.NoError(t, err)
	return &envoy{t: t, stream: st, cancel: cancel}
}

func hdrs(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func (e *envoy) send(r *extprocv3.ProcessingRequest) {
	e.t.Helper()
	require.NoError(e.t, e.stream.Send(r))
}

func (e *envoy) requestHeaders(path string, eos bool, md *corev3.Metadata) {
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: hdrs(":method", "POST", ":path", path, ":authority", "gw", "content-type", "application/json"), EndOfStream: eos}},
		MetadataContext: md})
}

func (e *envoy) requestBody(b []byte, eos bool) {
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}})
}

func (e *envoy) responseHeaders(status, contentType string, md *corev3.Metadata) {
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: hdrs(":status", status, "content-type", contentType)}}, MetadataContext: md})
}

func (e *envoy) responseBody(b []byte, eos bool) {
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}})
}

func (e *envoy) recv() *extprocv3.ProcessingResponse {
	e.t.Helper()
	r, err := e.stream.Recv()
	require.NoError(e.t, err)
	return r
}

// routed reads the header response and the re-emitted request body.
func (e *envoy) routed(wantBodyEnd bool) (dest string, md *structpb.Struct, body []byte) {
	e.t.Helper()
	r := e.recv()
	hr := r.GetRequestHeaders()
	require.NotNil(e.t, hr, "want a request-headers response, got %v", r)
	assert.True(e.t, hr.GetResponse().GetClearRouteCache())
	set := hr.GetResponse().GetHeaderMutation().GetSetHeaders()
	require.Len(e.t, set, 2, "destination and the generated x-request-id")
	assert.Equal(e.t, headerDestination, set[0].GetHeader().GetKey())
	assert.Equal(e.t, "x-request-id", set[1].GetHeader().GetKey())
	assert.Regexp(e.t, `^rk-[0-9a-f]{12}-\d+$`, string(set[1].GetHeader().GetRawValue()))
	assert.Equal(e.t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, set[0].GetAppendAction())
	dest = string(set[0].GetHeader().GetRawValue())
	md = r.GetDynamicMetadata()
	for {
		r := e.recv()
		sb := r.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		require.NotNil(e.t, sb, "want a streamed request body, got %v", r)
		assert.LessOrEqual(e.t, len(sb.GetBody()), bodyChunkLimit)
		body = append(body, sb.GetBody()...)
		if sb.GetEndOfStream() || (!wantBodyEnd && len(sb.GetBody()) < bodyChunkLimit) {
			assert.Equal(e.t, wantBodyEnd, sb.GetEndOfStream())
			return dest, md, body
		}
	}
}

func completionBody(prompt string, stream bool) []byte {
	return fmt.Appendf(nil, `{"model":"m","prompt":%q,"max_tokens":3,"stream":%v}`, prompt, stream)
}

func inflight(p *pool.Pool) int64 {
	var n int64
	for _, e := range p.Snapshot().Endpoints() {
		n += e.Load().Requests
	}
	return n
}

func TestNonStreamedExchange(t *testing.T) {
	h := newHarness(t, 3, router.Policy{})
	e := h.open(t)
	body := completionBody(strings.Repeat("a long shared prompt ", 7000), false) // ~147 KB: three chunks back
	e.requestHeaders("/v1/completions", false, nil)
	for i := 0; i < len(body); i += 40000 {
		end := min(i+40000, len(body))
		e.requestBody(body[i:end], end == len(body))
	}
	dest, md, got := e.routed(true)
	assert.Equal(t, body, got, "the body is re-emitted unchanged")
	addrs := strings.Split(dest, ",")
	assert.Len(t, addrs, 3, "primary and two fallbacks")
	lb := md.GetFields()[metadataLB].GetStructValue().GetFields()[headerDestination].GetStringValue()
	assert.Equal(t, dest, lb, "dynamic metadata carries the same value")
	primary := addrs[0]
	ep := endpointAt(t, h.pool, primary)
	assert.Equal(t, int64(1), ep.Load().Requests)

	e.responseHeaders("200", "application/json", nil)
	require.NotNil(t, e.recv().GetResponseHeaders())
	resp := []byte(`{"id":"cmpl-1","choices":[{"text":"abc"}],"usage":{"prompt_tokens":147000,"completion_tokens":3,"total_tokens":147003,"prompt_tokens_details":{"cached_tokens":0}}}`)
	e.responseBody(resp[:50], false)
	e.responseBody(resp[50:], true)
	r := e.recv()
	sb := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	require.NotNil(t, sb, "buffered response re-sent after the end: %v", r)
	assert.Equal(t, resp, sb.GetBody())
	assert.True(t, sb.GetEndOfStream())
	assert.Equal(t, int64(0), ep.Load().Requests, "the end of the response ends the accounting")
	var buf bytes.Buffer
	_, _ = h.m.WriteTo(&buf)
	assert.Contains(t, buf.String(), `routekit_usage_tokens_total{kind="completion"} 3`)
	assert.Contains(t, buf.String(), `routekit_completed_requests_total{status="2xx"} 1`)
	require.NoError(t, e.stream.CloseSend())
}

func endpointAt(t *testing.T, p *pool.Pool, addr string) *pool.Endpoint {
	t.Helper()
	for _, e := range p.Snapshot().Endpoints() {
		if e.Address == addr {
			return e
		}
	}
	t.Fatalf("no endpoint at %s", addr)
	return nil
}

func TestStreamedResponseChunkByChunk(t *testing.T) {
	h := newHarness(t, 2, router.Policy{})
	e := h.open(t)
	e.requestHeaders("/v1/chat/completions", false, nil)
	e.requestBody([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true},`), false)
	e.requestBody([]byte(`"messages":[{"role":"user","content":"hi"}]}`), true)
	dest, _, _ := e.routed(true)
	ep := endpointAt(t, h.pool, strings.Split(dest, ",")[0])
	assert.Equal(t, int64(len("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")), ep.Load().UncachedTokens)

	e.responseHeaders("200", "text/event-stream", nil)
	require.NotNil(t, e.recv().GetResponseHeaders())
	chunks := []string{
		"data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}],\"usage\":null}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}],\"usage\":null}\n\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":2,\"total_tokens\":22}}\n\ndata: [DONE]\n\n",
	}
	for i, c := range chunks {
		e.responseBody([]byte(c), false)
		// Each chunk comes back before the next is sent: nothing is held.
		sb := e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		require.NotNil(t, sb)
		assert.Equal(t, c, string(sb.GetBody()))
		assert.False(t, sb.GetEndOfStream())
		if i == 0 {
			assert.Equal(t, int64(0), ep.Load().UncachedTokens, "first token releases prefill tokens")
			assert.Equal(t, int64(1), ep.Load().Requests)
		}
	}
	e.responseBody(nil, true)
	sb := e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	assert.True(t, sb.GetEndOfStream())
	assert.Equal(t, int64(0), ep.Load().Requests)
	var buf bytes.Buffer
	_, _ = h.m.WriteTo(&buf)
	assert.Contains(t, buf.String(), `routekit_usage_tokens_total{kind="prompt"} 20`)

	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}})
	assert.NotNil(t, e.recv().GetResponseTrailers())
}

func TestRequestTrailersEndTheBody(t *testing.T) {
	h := newHarness(t, 2, router.Policy{})
	e := h.open(t)
	body := completionBody("trailers follow", false)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody(body, false)
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{Trailers: hdrs("x-t", "1")}}})
	_, _, got := e.routed(false)
	assert.Equal(t, body, got)
	assert.NotNil(t, e.recv().GetRequestTrailers())
	assert.Equal(t, int64(1), inflight(h.pool))
}

func subsetMD(addrs ...string) *corev3.Metadata {
	vals := make([]any, len(addrs))
	for i, a := range addrs {
		vals[i] = a
	}
	s, _ := structpb.NewStruct(map[string]any{keySubset: vals})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{metadataSubsetHint: s}}
}

func TestSubsetHint(t *testing.T) {
	h := newHarness(t, 4, router.Policy{})
	allowed := []string{"10.1.0.2:8000", "10.1.0.3:8000"}
	for range 10 {
		e := h.open(t)
		e.requestHeaders("/v1/completions", false, subsetMD(allowed...))
		e.requestBody(completionBody("subset please", false), true)
		dest, _, _ := e.routed(true)
		for _, a := range strings.Split(dest, ",") {
			assert.Contains(t, allowed, a)
		}
		e.cancel()
	}
	// The hint may also come with the body, and a hint matching nothing is a 503.
	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
		Body: completionBody("x", false), EndOfStream: true}}, MetadataContext: subsetMD()})
	ir := e.recv().GetImmediateResponse()
	require.NotNil(t, ir)
	assert.Equal(t, 503, int(ir.GetStatus().GetCode()))
	assert.Equal(t, "rejected-no-endpoints", dropReason(ir))
}

func dropReason(ir *extprocv3.ImmediateResponse) string {
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == "x-llm-d-request-dropped-reason" {
			return string(h.GetHeader().GetRawValue())
		}
	}
	return ""
}

func TestRejections(t *testing.T) {
	h := newHarness(t, 1, router.Policy{MaxInFlight: 1})

	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody([]byte(`{"model":"m","prompt":`), true)
	ir := e.recv().GetImmediateResponse()
	require.NotNil(t, ir)
	assert.Equal(t, 400, int(ir.GetStatus().GetCode()))
	assert.Equal(t, "rejected-bad-request", dropReason(ir))
	assert.Contains(t, string(ir.GetBody()), "invalid JSON")

	// Fill the only endpoint, then a sheddable request is refused with 429.
	busy := h.open(t)
	busy.requestHeaders("/v1/completions", false, nil)
	busy.requestBody(completionBody("occupy", false), true)
	busy.routed(true)
	shed := h.open(t)
	shed.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: hdrs(":method", "POST", ":path", "/v1/completions", "x-routekit-priority", "-1")}}})
	shed.requestBody(completionBody("shed me", false), true)
	ir = shed.recv().GetImmediateResponse()
	require.NotNil(t, ir)
	assert.Equal(t, 429, int(ir.GetStatus().GetCode()))
	assert.Equal(t, "rejected-saturated", dropReason(ir))
}

func TestBodilessRequest(t *testing.T) {
	h := newHarness(t, 2, router.Policy{})
	e := h.open(t)
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: hdrs(":method", "GET", ":path", "/v1/models"), EndOfStream: true}}})
	r := e.recv().GetRequestHeaders()
	require.NotNil(t, r)
	v := string(r.GetResponse().GetHeaderMutation().GetSetHeaders()[0].GetHeader().GetRawValue())
	assert.Contains(t, []string{"10.1.0.1:8000", "10.1.0.2:8000"}, v)
	assert.Equal(t, int64(0), inflight(h.pool), "no inference, no accounting")

	// A POST to a non-inference path is passed through with its body.
	e = h.open(t)
	e.requestHeaders("/tokenize", false, nil)
	e.requestBody([]byte(`{"model":"m","prompt":"x"}`), true)
	_, _, got := e.routed(true)
	assert.JSONEq(t, `{"model":"m","prompt":"x"}`, string(got))
}

func TestServedEndpointMovesAccounting(t *testing.T) {
	h := newHarness(t, 3, router.Policy{})
	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody(completionBody("envoy retries", false), true)
	dest, _, _ := e.routed(true)
	addrs := strings.Split(dest, ",")
	served, _ := structpb.NewStruct(map[string]any{keyServed: addrs[1]})
	e.responseHeaders("200", "application/json", &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{metadataLB: served}})
	require.NotNil(t, e.recv().GetResponseHeaders())
	assert.Equal(t, int64(0), endpointAt(t, h.pool, addrs[0]).Load().Requests)
	assert.Equal(t, int64(1), endpointAt(t, h.pool, addrs[1]).Load().Requests)
}

func TestAbortedStreamEndsAccounting(t *testing.T) {
	h := newHarness(t, 2, router.Policy{})
	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody(completionBody("the client goes away", true), true)
	e.routed(true)
	e.responseHeaders("200", "text/event-stream", nil)
	require.NotNil(t, e.recv().GetResponseHeaders())
	e.responseBody([]byte("data: {}\n\n"), false)
	e.recv()
	assert.Equal(t, int64(1), inflight(h.pool))
	e.cancel() // Envoy resets the stream when the client disconnects
	require.Eventually(t, func() bool { return inflight(h.pool) == 0 && h.srv.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestHealth(t *testing.T) {
	h := newHarness(t, 1, router.Policy{})
	hc := healthpb.NewHealthClient(h.conn)
	for _, svc := range healthServices {
		r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		require.NoError(t, err, svc)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, r.GetStatus(), svc)
	}
}

func TestShutdownDrainsStreams(t *testing.T) {
	p := pool.New()
	require.NoError(t, p.Store(pool.Endpoint{ID: "ep-0", Address: "10.2.0.1:8000", Models: []string{"m"}}))
	ep, _ := p.Load("ep-0")
	ep.StoreMetrics(pool.Metrics{ScrapedAt: time.Now()})
	s, fc, err := router.Policy{}.Build(p, nil)
	require.NoError(t, err)
	rt, err := router.New(p, s, router.WithFlowControl(fc),
		router.WithTokenizer(&router.Local{Encoder: router.Bytes{}, Template: router.ChatML}))
	require.NoError(t, err)
	gs, hs := newGRPCServer(NewServer(rt, false))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	h := &harness{pool: p, conn: conn, client: extprocv3.NewExternalProcessorClient(conn)}

	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody(completionBody("in flight at shutdown", true), true)
	e.routed(true)
	e.responseHeaders("200", "text/event-stream", nil)
	require.NotNil(t, e.recv().GetResponseHeaders())

	stopped := make(chan struct{})
	go func() { shutdown(gs, hs, rt, time.Second, 20*time.Second); close(stopped) }()
	hc := healthpb.NewHealthClient(conn)
	require.Eventually(t, func() bool {
		r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "readiness"})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}, time.Second, 5*time.Millisecond, "readiness turns NOT_SERVING first, during the grace period")
	select {
	case <-stopped:
		t.Fatal("shutdown did not wait for the stream in flight")
	case <-time.After(1500 * time.Millisecond): // past the grace period: now draining
	}
	e.responseBody([]byte("data: [DONE]\n\n"), true)
	assert.True(t, e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream())
	require.NoError(t, e.stream.CloseSend())
	_, err = e.stream.Recv()
	assert.Error(t, err, "the server closes the stream after the last message")
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish after the stream ended")
	}
	assert.Zero(t, ep.Load().Requests)
}

// TestResponseTrailersEndABufferedBody checks a JSON response whose body
// ends with trailers rather than an end-of-stream chunk: the buffered body
// is sent back before the trailers (not dropped), and its usage is read.
func TestResponseTrailersEndABufferedBody(t *testing.T) {
	h := newHarness(t, 2, router.Policy{})
	e := h.open(t)
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody(completionBody("trailers end the response", false), true)
	dest, _, _ := e.routed(true)
	ep := endpointAt(t, h.pool, strings.Split(dest, ",")[0])

	e.responseHeaders("200", "application/json", nil)
	require.NotNil(t, e.recv().GetResponseHeaders())
	resp := []byte(`{"id":"cmpl-1","choices":[{"text":"abc"}],"usage":{"prompt_tokens":25,"completion_tokens":3,"total_tokens":28}}`)
	e.responseBody(resp[:40], false)
	e.responseBody(resp[40:], false)
	e.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: hdrs("x-t", "1")}}})
	r := e.recv()
	sb := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	require.NotNil(t, sb, "want the buffered body before the trailers, got %v", r)
	assert.Equal(t, resp, sb.GetBody())
	assert.False(t, sb.GetEndOfStream(), "trailers follow")
	assert.NotNil(t, e.recv().GetResponseTrailers())
	assert.Equal(t, int64(0), ep.Load().Requests, "the trailers end the accounting")
	var buf bytes.Buffer
	_, _ = h.m.WriteTo(&buf)
	assert.Contains(t, buf.String(), `routekit_usage_tokens_total{kind="completion"} 3`)
	require.NoError(t, e.stream.CloseSend())
}
