package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/routekit/routekit/examples/internal/fleet"
	"github.com/routekit/routekit/examples/internal/router"
)

// TestFakeEnvoyAgainstSimFleet plays all of Envoy: for each request it asks
// the picker, sends the re-emitted body to the address the picker named (a
// simulated vLLM server with KV events), and feeds the server's streamed
// response back through the processor chunk by chunk as it arrives.
func TestFakeEnvoyAgainstSimFleet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fl, err := fleet.Start(ctx, fleet.Config{Embedded: 3})
	require.NoError(t, err)
	defer fl.Close()
	runDone := make(chan struct{})
	go func() { _ = fl.Run(ctx); close(runDone) }()
	defer func() { cancel(); <-runDone }()
	rt, m, _, err := fl.Router(router.Policy{})
	require.NoError(t, err)
	gs, _ := newGRPCServer(NewServer(rt, false))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)

	shared := strings.Repeat("Shared context for every turn of this conversation. ", 10)
	var first string
	for i := range 5 {
		dest, events := envoyRequest(t, client, fmt.Sprintf(`{"model":"sim-model","prompt":%q,"max_tokens":12,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`,
			shared+fmt.Sprintf("turn %d", i)))
		assert.NotContains(t, dest, ",", "one address for ORIGINAL_DST")
		if i == 0 {
			first = dest
		}
		assert.Equal(t, first, dest, "turn %d goes where the prefix is", i)
		assert.GreaterOrEqual(t, events, 2, "the response streamed in several chunks")
	}
	for _, e := range fl.Pool.Snapshot().Endpoints() {
		assert.Zero(t, e.Load().Requests, "accounting ended for %s", e.ID)
	}
	assert.Greater(t, m.PrefixHitRatio(), 0.6, "four of five prompts were mostly cached")
}

// envoyRequest runs one request through the picker and the chosen server,
// and returns the destination and how many response chunks went by.
func envoyRequest(t *testing.T, client extprocv3.ExternalProcessorClient, body string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := client.Process(ctx)
	require.NoError(t, err)
	e := &envoy{t: t, stream: st, cancel: cancel}
	e.requestHeaders("/v1/completions", false, nil)
	e.requestBody([]byte(body), true)
	dest, _, sent := e.routed(true)

	resp, err := http.Post("http://"+dest+"/v1/completions", "application/json", strings.NewReader(string(sent)))
	require.NoError(t, err)
	defer resp.Body.Close()
	e.responseHeaders(fmt.Sprint(resp.StatusCode), resp.Header.Get("Content-Type"), nil)
	require.NotNil(t, e.recv().GetResponseHeaders())
	chunks := 0
	buf := make([]byte, 4096)
	var got strings.Builder
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			chunks++
			e.responseBody(buf[:n], false)
			sb := e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
			require.NotNil(t, sb)
			got.Write(sb.GetBody())
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		require.NoError(t, rerr)
	}
	e.responseBody(nil, true)
	assert.True(t, e.recv().GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream())
	assert.Contains(t, got.String(), "data: [DONE]")
	require.NoError(t, st.CloseSend())
	return dest, chunks
}
