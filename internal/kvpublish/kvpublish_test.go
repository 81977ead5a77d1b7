package kvpublish_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
)

func newSub(t *testing.T, ep string, bind bool) zmq4.Socket {
	t.Helper()
	sub := zmq4.NewSub(context.Background(), zmq4.WithDialerMaxRetries(-1), zmq4.WithDialerRetry(20*time.Millisecond))
	t.Cleanup(func() { sub.Close() })
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, ""))
	if bind {
		require.NoError(t, sub.Listen(ep))
	} else {
		require.NoError(t, sub.Dial(ep))
	}
	return sub
}

// recvAsync delivers the subscriber's messages on a channel.
func recvAsync(sub zmq4.Socket) <-chan zmq4.Msg {
	ch := make(chan zmq4.Msg, 1024)
	go func() {
		defer close(ch)
		for {
			m, err := sub.Recv()
			if err != nil {
				return
			}
			ch <- m
		}
	}()
	return ch
}

// publishUntilReceived publishes payload every few milliseconds until the
// subscriber gets one (PUB drops messages before a subscription arrives),
// and returns the first message received.
func publishUntilReceived(t *testing.T, p *kvpublish.Publisher, payload []byte, ch <-chan zmq4.Msg) zmq4.Msg {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		_, err := p.PublishPayload(payload)
		require.NoError(t, err)
		select {
		case m := <-ch:
			return m
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("subscriber received nothing")
		}
	}
}

func TestFramesMatchGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/golden.json")
	require.NoError(t, err)
	var g struct {
		KVEvents struct {
			Topic    string `json:"topic"`
			Profiles map[string]struct {
				Frames []string `json:"zmq_frames_hex"`
			} `json:"profiles"`
		} `json:"kv_events"`
	}
	require.NoError(t, json.Unmarshal(raw, &g))
	frames := g.KVEvents.Profiles["map_current/int"].Frames
	require.Len(t, frames, 3)
	payload, err := hex.DecodeString(frames[2])
	require.NoError(t, err)

	p, err := kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind, Topic: g.KVEvents.Topic})
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, uint64(0), p.NextSeq())
	sub := newSub(t, p.Endpoint(), false)
	m := publishUntilReceived(t, p, payload, recvAsync(sub))
	require.Len(t, m.Frames, 3)
	assert.Equal(t, frames[0], hex.EncodeToString(m.Frames[0]), "topic frame")
	assert.Len(t, m.Frames[1], 8)
	assert.Equal(t, frames[2], hex.EncodeToString(m.Frames[2]), "payload frame")
	// The first message ever published carries the golden seq frame.
	if binary.BigEndian.Uint64(m.Frames[1]) == 0 {
		assert.Equal(t, frames[1], hex.EncodeToString(m.Frames[1]))
	}
}

func TestConnectModeAndRank(t *testing.T) {
	// A subscriber binds; the publisher (rank 0) connects, as in llm-d's
	// centralized mode.
	sub := zmq4.NewSub(context.Background())
	defer sub.Close()
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, "kv@"))
	require.NoError(t, sub.Listen("tcp://127.0.0.1:0"))
	ep := "tcp://" + sub.Addr().String()
	assert.False(t, kvevents.ShouldBind(ep))

	p, err := kvpublish.New(kvpublish.Config{Endpoint: ep, Topic: "kv@pod-a@m"})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	b := kvevents.Batch{TS: 1, Events: []kvevents.Event{{Type: kvevents.AllBlocksCleared}}}
	payload, err := kvevents.AppendBatch(nil, &b, kvevents.MapCurrent)
	require.NoError(t, err)
	m := publishUntilReceived(t, p, payload, recvAsync(sub))
	assert.Equal(t, "kv@pod-a@m", string(m.Frames[0]))
	cancel()
	assert.NoError(t, <-done)
}

func TestPublishFillsRank(t *testing.T) {
	p, err := kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind, DataParallelRank: 3})
	require.NoError(t, err)
	defer p.Close()
	sub := newSub(t, p.Endpoint(), false)
	ch := recvAsync(sub)
	b := kvevents.Batch{TS: 2, Events: []kvevents.Event{{Type: kvevents.AllBlocksCleared}}}
	deadline := time.After(10 * time.Second)
	for {
		_, err := p.Publish(&b, kvevents.ArrayLast)
		require.NoError(t, err)
		select {
		case m := <-ch:
			var got kvevents.Batch
			require.NoError(t, kvevents.Decode(m.Frames[2], &got))
			assert.Equal(t, kvevents.Some(int64(3)), got.DataParallelRank)
			assert.False(t, b.DataParallelRank.Valid, "caller's batch untouched")
			return
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("nothing received")
		}
	}
}

// replay asks for start and collects the replies up to the end marker.
func replay(t *testing.T, ep string, start uint64) [][][]byte {
	t.Helper()
	d := zmq4.NewDealer(context.Background(), zmq4.WithDialerMaxRetries(-1))
	defer d.Close()
	require.NoError(t, d.Dial(ep))
	require.NoError(t, d.Send(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, start))))
	var out [][][]byte
	for {
		m, err := d.Recv()
		require.NoError(t, err)
		out = append(out, m.Frames)
		seq := m.Frames[len(m.Frames)-2]
		if binary.BigEndian.Uint64(seq) == kvevents.EndSeq {
			return out
		}
	}
}

func TestReplay(t *testing.T) {
	tests := []struct {
		name   string
		legacy bool
	}{
		{name: "v0.26 layout", legacy: false},
		{name: "legacy layout", legacy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kvpublish.New(kvpublish.Config{
				Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind,
				BufferSteps: 3, Topic: "kv-events", LegacyReplay: tt.legacy,
			})
			require.NoError(t, err)
			defer p.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.Run(ctx)
			for i := range 5 {
				seq, err := p.PublishPayload([]byte{byte(i)})
				require.NoError(t, err)
				assert.Equal(t, uint64(i), seq)
			}
			// Seqs 0 and 1 fell out of the 3-batch buffer.
			got := replay(t, p.ReplayEndpoint(), 1)
			require.Len(t, got, 4)
			for i, want := range []uint64{2, 3, 4} {
				f := got[i]
				if tt.legacy {
					require.Len(t, f, 3)
					assert.Empty(t, f[0])
					assert.Equal(t, want, binary.BigEndian.Uint64(f[1]))
					assert.Equal(t, []byte{byte(want)}, f[2])
				} else {
					require.Len(t, f, 4)
					assert.Empty(t, f[0])
					assert.Equal(t, "kv-events", string(f[1]))
					assert.Equal(t, want, binary.BigEndian.Uint64(f[2]))
					assert.Equal(t, []byte{byte(want)}, f[3])
				}
			}
			end := got[3]
			if tt.legacy {
				assert.Equal(t, []string{"", "ffffffffffffffff", ""}, hexFrames(end))
			} else {
				assert.Equal(t, []string{"", "", "ffffffffffffffff", ""}, hexFrames(end))
			}
			// A start past the newest batch yields only the end marker.
			assert.Len(t, replay(t, p.ReplayEndpoint(), 99), 1)
		})
	}
}

func hexFrames(f [][]byte) []string {
	out := make([]string, len(f))
	for i, b := range f {
		out[i] = hex.EncodeToString(b)
	}
	return out
}

func TestDropKeepsForReplay(t *testing.T) {
	p, err := kvpublish.New(kvpublish.Config{
		Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind,
		Drop: func(seq uint64) bool { return seq == 0 },
	})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	_, err = p.PublishPayload([]byte("dropped"))
	require.NoError(t, err)
	got := replay(t, p.ReplayEndpoint(), 0)
	require.Len(t, got, 2)
	assert.Equal(t, "dropped", string(got[0][3]))
}

func TestNewErrors(t *testing.T) {
	_, err := kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:70000", Mode: kvpublish.ModeBind})
	assert.Error(t, err)
	_, err = kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:x", DataParallelRank: 1})
	assert.Error(t, err)
	p, err := kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind})
	require.NoError(t, err)
	require.NoError(t, p.Close())
	_, err = p.PublishPayload(nil)
	assert.ErrorIs(t, err, kvpublish.ErrClosed)
}

func TestOffsetEndpoint(t *testing.T) {
	tests := []struct {
		give string
		rank int
		want string
	}{
		{"tcp://*:5557", 0, "tcp://*:5557"},
		{"tcp://*:5557", 2, "tcp://*:5559"},
		{"tcp://10.0.0.1:5558", 1, "tcp://10.0.0.1:5559"},
		{"inproc://kv", 1, "inproc://kv_dp1"},
		{"ipc:///tmp/kv", 1, "ipc:///tmp/kv"},
	}
	for _, tt := range tests {
		got, err := kvevents.OffsetEndpoint(tt.give, tt.rank)
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
}

// TestReplayIgnoresMalformedRequests sends requests vLLM would ignore (a
// short or long start sequence, a non-empty delimiter frame, extra frames)
// and then a valid one on the same DEALER: the malformed ones get no reply,
// and the publisher keeps serving.
func TestReplayIgnoresMalformedRequests(t *testing.T) {
	p, err := kvpublish.New(kvpublish.Config{
		Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0", Mode: kvpublish.ModeBind,
		Topic: "kv-events",
	})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	for _, b := range []string{"batch0", "batch1"} {
		_, err = p.PublishPayload([]byte(b))
		require.NoError(t, err)
	}

	// The malformed requests ask from seq 0, the valid one from seq 1, so a
	// malformed request that got answered shows up as a reply for seq 0.
	d := zmq4.NewDealer(context.Background(), zmq4.WithDialerMaxRetries(-1))
	defer d.Close()
	require.NoError(t, d.Dial(p.ReplayEndpoint()))
	for _, frames := range [][][]byte{
		{nil, {0, 0, 0, 0}},                    // 4-byte start
		{nil, make([]byte, 9)},                 // 9-byte start
		{[]byte("x"), make([]byte, 8)},         // non-empty delimiter
		{nil, make([]byte, 8), []byte("more")}, // extra frame
		{nil},                                  // no start at all
	} {
		require.NoError(t, d.Send(zmq4.NewMsgFrom(frames...)))
	}
	require.NoError(t, d.Send(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, 1))))
	first, err := d.Recv()
	require.NoError(t, err)
	require.Len(t, first.Frames, 4, "the first reply answers the valid request")
	assert.Equal(t, uint64(1), binary.BigEndian.Uint64(first.Frames[2]))
	assert.Equal(t, "batch1", string(first.Frames[3]))
	end, err := d.Recv()
	require.NoError(t, err)
	require.Len(t, end.Frames, 4)
	assert.Equal(t, kvevents.EndSeq, binary.BigEndian.Uint64(end.Frames[2]))

	cancel()
	assert.NoError(t, <-runErr)
}
