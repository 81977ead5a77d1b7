package kvevents_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// pythonWithZMQ returns /usr/bin/python3 if it has pyzmq and msgpack. In
// CI (CI=true) their absence fails the test instead of skipping it.
func pythonWithZMQ(t *testing.T) string {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq, msgpack").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s with zmq and msgpack: %v", py, err)
		}
		t.Skipf("%s lacks zmq or msgpack: %v", py, err)
	}
	return py
}

// TestInteropLibzmqPublisher: an independent publisher (libzmq through
// pyzmq, msgpack-python) publishes 200 map-encoded batches; the subscriber
// recovers the ones sent before it joined through the publisher's replay
// socket and applies all of them, in order, exactly once.
func TestInteropLibzmqPublisher(t *testing.T) {
	py := pythonWithZMQ(t)
	const n = 200
	cmd := exec.Command(py, "testdata/pypub.py", "kv@10.1.2.3:8000@qwen", fmt.Sprint(n))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var ports struct{ Pub, Replay int }
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(line, &ports))

	idx := &fakeIndex{}
	sub := newSubscriber(t, idx)
	require.NoError(t, sub.Add(kvevents.Source{
		ID:             "10.1.2.3:8000",
		Endpoint:       fmt.Sprintf("tcp://127.0.0.1:%d", ports.Pub),
		ReplayEndpoint: fmt.Sprintf("tcp://127.0.0.1:%d", ports.Replay),
	}))
	runSubscriber(t, sub)
	waitFor(t, 20*time.Second, "all python batches", func() bool { return len(idx.storedFirsts("10.1.2.3:8000")) >= n })
	want := make([]uint64, n)
	for i := range want {
		want[i] = 1<<63 + uint64(i)
	}
	assert.Equal(t, want, idx.storedFirsts("10.1.2.3:8000"))
	st := sub.Stats()
	assert.Zero(t, st.DecodeErrors)
	assert.Zero(t, st.ApplyErrors)
	assert.Equal(t, uint64(n), st.EventsApplied)
}
