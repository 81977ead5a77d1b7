package vllmsim_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/internal/vllmsim"
	"github.com/routekit/routekit/kvcache/kvevents"
	"github.com/routekit/routekit/prefix/vllmhash"
)

// promptTokens is what ByteTokenizer makes of s.
func promptTokens(s string) []uint32 {
	t := make([]uint32, len(s))
	for i := range len(s) {
		t[i] = uint32(s[i])
	}
	return t
}

func decodeBytes(t []uint32) string {
	b := make([]byte, len(t))
	for i, x := range t {
		b[i] = byte(x)
	}
	return string(b)
}

// wantKeys computes vLLM's sha256_cbor (PYTHONHASHSEED "0") event hashes of
// the full blocks of tokens directly with vllmhash.
func wantKeys(t *testing.T, tokens []uint32) []uint64 {
	t.Helper()
	h, err := vllmhash.New(vllmhash.SHA256CBOR, "0")
	require.NoError(t, err)
	var out []uint64
	for _, d := range h.AppendBlockHashes(nil, vllmhash.Digest{}, tokens, 16, nil) {
		out = append(out, d.Uint64())
	}
	return out
}

func TestKVEventsOverZMQ(t *testing.T) {
	for _, schema := range []kvevents.Schema{kvevents.MapCurrent, kvevents.ArrayLast} {
		t.Run(schema.String(), func(t *testing.T) {
			f := startFleet(t, vllmsim.ReplicaSpec{KVEvents: true, KVSchema: schema})
			r := f.Replicas[0]
			require.NotEmpty(t, r.KVEndpoint)
			sub := zmq4.NewSub(context.Background(), zmq4.WithAutomaticReconnect(true))
			defer sub.Close()
			require.NoError(t, sub.Dial(r.KVEndpoint))
			require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, r.KVTopic))

			// The subscription propagates asynchronously: send distinct
			// prompts (5 full blocks each) until a message arrives.
			msgs := make(chan zmq4.Msg, 16)
			go func() {
				for {
					m, err := sub.Recv()
					if err != nil {
						close(msgs)
						return
					}
					msgs <- m
				}
			}()
			var m zmq4.Msg
			for i := 0; m.Frames == nil; i++ {
				require.Less(t, i, 200, "no KV event received")
				prompt := fmt.Sprintf("%03d", i) + strings.Repeat("0123456789abcdef", 5)[3:] + "tail"
				code, _ := post(t, r.URL+"/v1/completions", `{"prompt":"`+prompt+`","max_tokens":1}`)
				require.Equal(t, 200, code)
				select {
				case m = <-msgs:
				case <-time.After(200 * time.Millisecond):
				}
			}
			require.Len(t, m.Frames, 3)
			assert.Equal(t, r.KVTopic, string(m.Frames[0]))
			require.Len(t, m.Frames[1], 8)
			var b kvevents.Batch
			require.NoError(t, kvevents.Decode(m.Frames[2], &b))
			require.NotEmpty(t, b.Events)
			ev := b.Events[0]
			assert.Equal(t, kvevents.BlockStored, ev.Type)
			var got []uint64
			for _, h := range ev.BlockHashes {
				got = append(got, h.Uint64())
			}
			require.Len(t, ev.TokenIDs, 80)
			prompt := decodeBytes(ev.TokenIDs)
			assert.True(t, strings.HasSuffix(prompt, "cdef0123456789abcdef"), prompt)
			want := wantKeys(t, ev.TokenIDs)
			assert.Equal(t, want, got)
			assert.Equal(t, want, r.BlockKeys(promptTokens(prompt)))
			assert.False(t, ev.ParentBlockHash.Valid)
			assert.Equal(t, 16, ev.BlockSize)
			assert.Equal(t, "GPU", ev.Medium.V)
			assert.Len(t, ev.TokenIDs, 80)
			assert.True(t, b.DataParallelRank.Valid)
			assert.Zero(t, b.DataParallelRank.V)
		})
	}
}

func TestKVEventsLateSubscriberReplay(t *testing.T) {
	f := startFleet(t, vllmsim.ReplicaSpec{KVEvents: true})
	r := f.Replicas[0]
	// Publish with nobody listening.
	for i := range 3 {
		code, _ := post(t, r.URL+"/v1/completions", `{"prompt":"`+strings.Repeat(string(rune('a'+i)), 40)+`","max_tokens":1}`)
		require.Equal(t, 200, code)
	}
	d := zmq4.NewDealer(context.Background())
	defer d.Close()
	require.NoError(t, d.Dial(r.KVReplayEndpoint))
	require.NoError(t, d.Send(zmq4.NewMsgFrom([]byte{}, binary.BigEndian.AppendUint64(nil, 0))))
	var seqs []uint64
	var stored int
	for {
		m, err := d.Recv()
		require.NoError(t, err)
		require.Len(t, m.Frames, 4) // "", topic, seq, payload (vLLM ≥ v0.26 layout)
		seq := binary.BigEndian.Uint64(m.Frames[2])
		if seq == kvevents.EndSeq {
			assert.Empty(t, m.Frames[3])
			break
		}
		assert.Equal(t, r.KVTopic, string(m.Frames[1]))
		seqs = append(seqs, seq)
		var b kvevents.Batch
		require.NoError(t, kvevents.Decode(m.Frames[3], &b))
		for _, ev := range b.Events {
			if ev.Type == kvevents.BlockStored {
				stored += len(ev.BlockHashes)
			}
		}
	}
	require.NotEmpty(t, seqs)
	for i, s := range seqs {
		assert.Equal(t, uint64(i), s)
	}
	assert.Equal(t, 6, stored) // 2 full blocks per 40-token prompt
}

// TestKVEventsPythonSubscriber proves interoperability with an independent
// libzmq + msgpack peer: Debian's python3-zmq subscribes to our PUB socket
// and replays through our ROUTER socket.
func TestKVEventsPythonSubscriber(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq, msgpack").Run(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s lacks zmq/msgpack: %v", py, err)
		}
		t.Fatalf("%s lacks zmq/msgpack in CI: %v", py, err)
	}
	f := startFleet(t, vllmsim.ReplicaSpec{KVEvents: true})
	r := f.Replicas[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/kv_subscriber.py", r.KVEndpoint, r.KVReplayEndpoint, r.KVTopic, "1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	require.Equal(t, "ready", <-lines)

	type pyMsg struct {
		Kind      string           `json:"kind"`
		Topic     string           `json:"topic"`
		Seq       uint64           `json:"seq"`
		BatchLen  int              `json:"batch_len"`
		TSIsFloat bool             `json:"ts_is_float"`
		Rank      *int             `json:"rank"`
		Events    []map[string]any `json:"events"`
	}
	var msgs []pyMsg
	sent := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			var m pyMsg
			dec := json.NewDecoder(strings.NewReader(l))
			dec.UseNumber() // block hashes exceed 2^53
			require.NoError(t, dec.Decode(&m), l)
			msgs = append(msgs, m)
			if m.Kind == "end" {
				break loop
			}
		case <-tick.C:
			if len(msgs) == 0 { // until the subscription has propagated
				sent++
				prompt := fmt.Sprintf("%03d", sent) + strings.Repeat("python interop! ", 3)[3:] // 3 full blocks
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v1/completions",
					strings.NewReader(`{"prompt":"`+prompt+`","max_tokens":1}`))
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
			}
		case <-ctx.Done():
			t.Fatal("python subscriber timed out")
		}
	}
	require.GreaterOrEqual(t, len(msgs), 3) // live, ≥1 replayed, end
	live := msgs[0]
	assert.Equal(t, "live", live.Kind)
	assert.Equal(t, r.KVTopic, live.Topic)
	assert.Equal(t, 3, live.BatchLen)
	assert.True(t, live.TSIsFloat)
	require.NotNil(t, live.Rank)
	assert.Equal(t, 0, *live.Rank)
	ev := live.Events[0]
	assert.Equal(t, "BlockStored", ev["type"])
	var hashes []uint64
	for _, h := range ev["block_hashes"].([]any) {
		v, err := strconv.ParseUint(string(h.(json.Number)), 10, 64)
		require.NoError(t, err)
		hashes = append(hashes, v)
	}
	var toks []uint32
	for _, x := range ev["token_ids"].([]any) {
		v, err := strconv.ParseUint(string(x.(json.Number)), 10, 32)
		require.NoError(t, err)
		toks = append(toks, uint32(v))
	}
	require.Len(t, toks, 48)
	assert.True(t, strings.HasSuffix(decodeBytes(toks), "interop! python interop! "))
	assert.Equal(t, wantKeys(t, toks), hashes)
	assert.Equal(t, "GPU", ev["medium"])
	assert.Equal(t, "full_attention", ev["kv_cache_spec_kind"])
	assert.Equal(t, "end", msgs[len(msgs)-1].Kind)
	assert.Equal(t, "replay", msgs[1].Kind)
	assert.Equal(t, uint64(0), msgs[1].Seq)
}

// The publisher can also connect to a subscriber that binds (llm-d's
// "centralized" mode), as vLLM does for endpoints without a wildcard.
func TestKVEventsConnectModeToBoundSubscriber(t *testing.T) {
	sub := zmq4.NewSub(context.Background())
	defer sub.Close()
	require.NoError(t, sub.Listen("tcp://127.0.0.1:0"))
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, ""))
	ep := "tcp://" + sub.Addr().String()

	srv, err := vllmsim.NewServer(vllmsim.Fast(), vllmsim.WithKVEvents(vllmsim.KVEventsConfig{
		Publisher: kvpublish.Config{Endpoint: ep}, // no wildcard: connect, as vLLM decides
	}))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	msgs := make(chan zmq4.Msg, 16)
	go func() {
		for {
			m, err := sub.Recv()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	var m zmq4.Msg
	for i := 0; m.Frames == nil; i++ {
		require.Less(t, i, 200, "no KV event received")
		code, _ := post(t, hs.URL+"/v1/completions", fmt.Sprintf(`{"prompt":"%03d%s","max_tokens":1}`, i, strings.Repeat("q", 40)))
		require.Equal(t, 200, code)
		select {
		case m = <-msgs:
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.Len(t, m.Frames, 3)
	assert.Empty(t, m.Frames[0]) // vLLM's default topic is ""
	var b kvevents.Batch
	require.NoError(t, kvevents.Decode(m.Frames[2], &b))
	require.NotEmpty(t, b.Events)
	assert.Equal(t, kvevents.BlockStored, b.Events[0].Type)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}
