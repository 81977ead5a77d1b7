package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/routekit/routekit/examples/internal/router"
	"github.com/routekit/routekit/pool"
	"github.com/routekit/routekit/scheduler"
)

// Protocol names of the Gateway API Inference Extension's endpoint picker.
const (
	// headerDestination carries the chosen endpoint and its fallbacks,
	// "ip:port,ip:port", to Envoy's ORIGINAL_DST cluster.
	headerDestination = "x-gateway-destination-endpoint"
	// metadataLB is the dynamic-metadata namespace the destination is also
	// published under.
	metadataLB = "envoy.lb"
	// metadataSubsetHint / keySubset: the proxy's list of allowed endpoints.
	metadataSubsetHint = "envoy.lb.subset_hint"
	keySubset          = "x-gateway-destination-endpoint-subset"
	// keyServed: the endpoint Envoy actually used (after its own retries).
	keyServed = "x-gateway-destination-endpoint-served"
	// bodyChunkLimit is the largest body chunk sent back to Envoy (some
	// Envoy builds cap gRPC messages near 64 KiB).
	bodyChunkLimit = 62000
	// maxRequestBody bounds a buffered request body.
	maxRequestBody = 64 << 20
)

// Server is an Envoy external processor (envoy.service.ext_proc.v3) that
// picks the endpoint of each inference request with a router.Router, speaking
// the endpoint-picker protocol in FULL_DUPLEX_STREAMED mode. It is safe for
// concurrent use: each gRPC stream is one HTTP request.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	rt        *router.Router
	pool      *pool.Pool
	fallbacks bool // put the fallbacks in the destination header and metadata

	active atomic.Int64
}

// NewServer returns a Server routing with rt. With fallbacks, the
// destination value lists the decision's fallback endpoints after the chosen
// one ("ip:port,ip:port,..."), for proxies that retry along it (Envoy's
// override_host load-balancing policy); without, it is the chosen endpoint
// alone, which is what an ORIGINAL_DST cluster accepts.
func NewServer(rt *router.Router, fallbacks bool) *Server {
	return &Server{rt: rt, pool: rt.Pool(), fallbacks: fallbacks}
}

// Active returns the number of streams being processed.
func (s *Server) Active() int64 { return s.active.Load() }

// stream is one request's state.
type stream struct {
	srv  *Server
	send func(*extprocv3.ProcessingResponse) error

	headers   http.Header
	path      string
	body      []byte
	routed    bool
	newID     string // x-request-id generated here, to pass upstream
	subset    []string
	hasSubset bool

	flight    *router.Flight
	status    int
	streaming bool
	sse       router.SSEScanner
	respBody  []byte
}

// Process implements extprocv3.ExternalProcessorServer.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	s.active.Add(1)
	defer s.active.Add(-1)
	st := &stream{srv: s, send: srv.Send}
	err := st.run(srv.Context(), srv.Recv)
	if st.flight != nil { // the stream ended before the response did
		cause := err
		if cause == nil {
			cause = errors.New("extproc: stream closed before the response ended")
		}
		st.flight.End(router.Outcome{Status: st.status, Err: cause})
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}

func (st *stream) run(ctx context.Context, recv func() (*extprocv3.ProcessingRequest, error)) error {
	for {
		req, err := recv()
		if err != nil {
			return err
		}
		st.readMetadata(req.GetMetadataContext())
		switch v := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			st.headers = headerMap(v.RequestHeaders.GetHeaders())
			st.path = st.headers.Get(":path")
			if st.headers.Get(router.HeaderRequestID) == "" {
				st.newID = router.NewRequestID()
				st.headers.Set(router.HeaderRequestID, st.newID)
			}
			if v.RequestHeaders.GetEndOfStream() { // no body (GET /v1/models, ...)
				if err := st.routeWithoutBody(); err != nil {
					return err
				}
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			if st.routed {
				return status.Error(codes.FailedPrecondition, "extproc: request body after the request was routed")
			}
			st.body = append(st.body, v.RequestBody.GetBody()...)
			if len(st.body) > maxRequestBody {
				return st.reject(http.StatusRequestEntityTooLarge, "rejected-body-too-large",
					fmt.Errorf("request body over %d bytes", maxRequestBody))
			}
			if v.RequestBody.GetEndOfStream() {
				if done, err := st.route(ctx, true); done || err != nil {
					return err
				}
			}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			if !st.routed { // trailers end a body whose last chunk had no end_of_stream
				if done, err := st.route(ctx, false); done || err != nil {
					return err
				}
			}
			if err := st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
				RequestTrailers: &extprocv3.TrailersResponse{}}}); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if err := st.responseHeaders(v.ResponseHeaders); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			if err := st.responseBody(v.ResponseBody); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			// Trailers end a body whose last chunk had no end_of_stream: a
			// buffered JSON body goes back first (trailers follow it).
			body := st.respBody
			st.end(nil)
			st.respBody = nil
			if !st.streaming && len(body) > 0 {
				if err := st.sendBody(body, false, false); err != nil {
					return err
				}
			}
			if err := st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
				ResponseTrailers: &extprocv3.TrailersResponse{}}}); err != nil {
				return err
			}
		default:
			return status.Errorf(codes.Unimplemented, "extproc: unsupported message %T", v)
		}
	}
}

// readMetadata picks up the subset hint and the served endpoint.
func (st *stream) readMetadata(md *corev3.Metadata) {
	if md == nil {
		return
	}
	if hint, ok := md.GetFilterMetadata()[metadataSubsetHint]; ok {
		if v, ok := hint.GetFields()[keySubset]; ok {
			st.hasSubset = true
			st.subset = st.subset[:0]
			for _, e := range v.GetListValue().GetValues() {
				if s := e.GetStringValue(); s != "" {
					st.subset = append(st.subset, s)
				}
			}
		}
	}
	if st.flight != nil {
		if lb, ok := md.GetFilterMetadata()[metadataLB]; ok {
			if v, ok := lb.GetFields()[keyServed]; ok {
				st.flight.Served(v.GetStringValue())
			}
		}
	}
}

// route decides on the complete body and replies with the header mutation
// and the body. bodyEnd says whether the body's last chunk ended the stream
// (false when trailers follow). done reports that an immediate response
// ended the exchange.
func (st *stream) route(ctx context.Context, bodyEnd bool) (done bool, err error) {
	st.routed = true
	api, ok := router.APIForPath(st.path)
	var dest string
	if ok {
		f, rerr := st.srv.rt.Route(ctx, &router.Input{API: api, Body: st.body, Header: st.headers,
			Subset: st.subset, HasSubset: st.hasSubset})
		if rerr != nil {
			return true, st.reject(router.Status(rerr), string(router.Reason(rerr)), rerr)
		}
		st.flight = f
		dest = f.Endpoint.Address
		if st.srv.fallbacks {
			dest = f.Destinations()
		}
	} else { // not an inference API: pass through to some endpoint
		ep, perr := st.pickAny()
		if perr != nil {
			return true, st.reject(http.StatusServiceUnavailable, string(scheduler.ReasonNoEndpoints), perr)
		}
		dest = ep.Address
	}
	if err := st.send(headersResponse(dest, st.newID)); err != nil {
		return false, err
	}
	return false, st.sendBody(st.body, bodyEnd, true)
}

// routeWithoutBody answers a bodiless request at once, with a fresh endpoint.
func (st *stream) routeWithoutBody() error {
	st.routed = true
	ep, err := st.pickAny()
	if err != nil {
		return st.reject(http.StatusServiceUnavailable, string(scheduler.ReasonNoEndpoints), err)
	}
	return st.send(headersResponse(ep.Address, st.newID))
}

// pickAny chooses the least-loaded endpoint allowed by the subset hint,
// preferring fresh ones, for requests that carry no prompt.
func (st *stream) pickAny() (*pool.Endpoint, error) {
	var best *pool.Endpoint
	for _, e := range st.srv.pool.Snapshot().Endpoints() {
		if st.hasSubset && !contains(st.subset, e.Address) {
			continue
		}
		if best == nil || (best.Stale() && !e.Stale()) ||
			(best.Stale() == e.Stale() && e.Load().Requests < best.Load().Requests) {
			best = e
		}
	}
	if best == nil {
		return nil, scheduler.ErrNoEndpoints
	}
	return best, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// headersResponse sets the destination (header and metadata) and, when the
// request came without one, the x-request-id the picker generated.
func headersResponse(dest, requestID string) *extprocv3.ProcessingResponse {
	md, _ := structpb.NewStruct(map[string]any{metadataLB: map[string]any{headerDestination: dest}})
	set := []*corev3.HeaderValueOption{{
		Header:       &corev3.HeaderValue{Key: headerDestination, RawValue: []byte(dest)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}}
	if requestID != "" {
		set = append(set, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "x-request-id", RawValue: []byte(requestID)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{ClearRouteCache: true, HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set}},
		}},
		DynamicMetadata: md,
	}
}

// sendBody re-emits body as streamed chunks of at most bodyChunkLimit bytes;
// the last carries end (an empty body is one empty chunk).
func (st *stream) sendBody(body []byte, end, request bool) error {
	for first := true; first || len(body) > 0; first = false {
		n := min(len(body), bodyChunkLimit)
		chunk := &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
				Body: body[:n], EndOfStream: end && n == len(body)}}}}}
		body = body[n:]
		resp := &extprocv3.ProcessingResponse{}
		if request {
			resp.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: chunk}
		} else {
			resp.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: chunk}
		}
		if err := st.send(resp); err != nil {
			return err
		}
	}
	return nil
}

// reject ends the exchange with an immediate response.
func (st *stream) reject(code int, reason string, cause error) error {
	switch code { // Envoy accepts only defined HTTP status codes
	case http.StatusBadRequest, http.StatusTooManyRequests, http.StatusServiceUnavailable,
		http.StatusRequestEntityTooLarge, http.StatusGatewayTimeout, http.StatusInternalServerError:
	case 499: // the client went away; the answer goes nowhere, keep it valid
		code = http.StatusServiceUnavailable
	default:
		code = http.StatusInternalServerError
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": cause.Error(), "type": http.StatusText(code), "code": code}})
	return st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: strings.ToLower(router.HeaderDropReason), RawValue: []byte(reason)}},
				{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")}},
			}},
			Body:    body,
			Details: reason,
		}}})
}

func (st *stream) responseHeaders(h *extprocv3.HttpHeaders) error {
	hm := headerMap(h.GetHeaders())
	st.status, _ = strconv.Atoi(hm.Get(":status"))
	st.streaming = strings.HasPrefix(hm.Get("content-type"), "text/event-stream")
	if err := st.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}); err != nil {
		return err
	}
	if h.GetEndOfStream() {
		st.end(nil)
	}
	return nil
}

// responseBody forwards streamed responses chunk by chunk, reading usage as
// it passes; non-streamed responses are buffered to the end, their usage read,
// and re-sent in chunks.
func (st *stream) responseBody(b *extprocv3.HttpBody) error {
	if st.flight != nil && len(b.GetBody()) > 0 {
		st.flight.FirstToken()
	}
	eos := b.GetEndOfStream()
	if st.streaming {
		_, _ = st.sse.Write(b.GetBody())
		if eos {
			st.end(nil)
		}
		return st.sendBody(b.GetBody(), eos, false)
	}
	st.respBody = append(st.respBody, b.GetBody()...)
	if len(st.respBody) > maxRequestBody { // too big to buffer: pass through from here on
		st.streaming = true
		body := st.respBody
		st.respBody = nil
		if eos {
			st.end(nil)
		}
		return st.sendBody(body, eos, false)
	}
	if !eos {
		return nil
	}
	st.end(nil)
	body := st.respBody
	st.respBody = nil
	return st.sendBody(body, true, false)
}

// end records the end of the response (once).
func (st *stream) end(err error) {
	if st.flight == nil {
		return
	}
	o := router.Outcome{Status: st.status, Err: err}
	if st.streaming {
		o.Usage, o.HasUsage = st.sse.Usage()
	} else {
		o.Usage, o.HasUsage = router.ParseUsage(st.respBody)
	}
	st.flight.End(o)
	st.flight = nil
}

// headerMap turns Envoy's header map into an http.Header (canonical keys;
// pseudo-headers such as :path kept as is).
func headerMap(hm *corev3.HeaderMap) http.Header {
	h := make(http.Header, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		if strings.HasPrefix(hv.GetKey(), ":") {
			h[hv.GetKey()] = append(h[hv.GetKey()], v)
			continue
		}
		h.Add(hv.GetKey(), v)
	}
	return h
}
