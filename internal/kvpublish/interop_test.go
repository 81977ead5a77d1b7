package kvpublish_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
)

// TestInteropLibzmqSubscriber: a libzmq SUB and DEALER (pyzmq) read our
// PUB frames and replay replies exactly as they would vLLM's.
func TestInteropLibzmqSubscriber(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s with zmq: %v", py, err)
		}
		t.Skipf("%s lacks zmq: %v", py, err)
	}
	p, err := kvpublish.New(kvpublish.Config{Endpoint: "tcp://127.0.0.1:0", ReplayEndpoint: "tcp://127.0.0.1:0",
		Mode: kvpublish.ModeBind, Topic: "kv@pod@m"})
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	const count = 5
	cmd := exec.CommandContext(ctx, py, "testdata/pysub.py", p.Endpoint(), p.ReplayEndpoint(), fmt.Sprint(count), "0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan []string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var f []string
			if json.Unmarshal(sc.Bytes(), &f) == nil {
				lines <- f
			}
		}
	}()
	next := func() []string {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "python subscriber exited")
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("python subscriber is silent")
			return nil
		}
	}
	require.Equal(t, []string{"ready"}, next())

	batch := kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.AllBlocksCleared}}}
	payload, err := kvevents.AppendBatch(nil, &batch, kvevents.ArrayLast)
	require.NoError(t, err)
	received := 0
	var lastSeq uint64
	for received < count {
		_, err := p.PublishPayload(payload)
		require.NoError(t, err)
		select {
		case l := <-lines:
			require.Len(t, l, 3)
			assert.Equal(t, hex.EncodeToString([]byte("kv@pod@m")), l[0])
			assert.Equal(t, hex.EncodeToString(payload), l[2])
			b, _ := hex.DecodeString(l[1])
			lastSeq = binary.BigEndian.Uint64(b)
			received++
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The replay from 0 returns every batch published, then the marker.
	total := p.NextSeq()
	for i := range total {
		l := next()
		require.Len(t, l, 4, "[\"\", topic, seq, payload]")
		assert.Empty(t, l[0])
		assert.Equal(t, fmt.Sprintf("%016x", i), l[2])
	}
	assert.Equal(t, []string{"", "", "ffffffffffffffff", ""}, next())
	assert.GreaterOrEqual(t, lastSeq, uint64(count-1))
}
