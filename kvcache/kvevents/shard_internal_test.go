package kvevents

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logIndex records, in order, "apply <hash>" per event and "clear" per Clear.
// It is used from one goroutine.
type logIndex struct{ log []string }

func (l *logIndex) Apply(_ string, e *Event) error {
	l.log = append(l.log, fmt.Sprintf("apply %d", e.BlockHashes[0].Uint64()))
	return nil
}
func (l *logIndex) Clear(string) error { l.log = append(l.log, "clear"); return nil }

func (l *logIndex) Drop(string) error { l.log = append(l.log, "drop"); return nil }

// msg is a message whose batch removes the block hash h.
func msg(t *testing.T, seq, h uint64) message {
	t.Helper()
	p, err := AppendBatch(nil, &Batch{TS: 1, Events: []Event{{Type: BlockRemoved, BlockHashes: []Hash{HashUint64(h)}}},
		DataParallelRank: Some(int64(0))}, ArrayLast)
	require.NoError(t, err)
	return message{seq: seq, payload: p}
}

// TestShardReplayEdges drives one source's shard logic directly (no
// sockets): what arrives live while a replay runs, and holes the replay
// leaves, must not be lost silently. Hash 100+seq marks the publisher's
// second incarnation.
func TestShardReplayEdges(t *testing.T) {
	tests := []struct {
		name     string
		proact   bool     // the replay was asked on connecting
		from     uint64   // the replay's start
		replayed []uint64 // sequence numbers the replay returned
		during   []uint64 // live sequence numbers received while it ran (after 0..5)
		after    []uint64 // live sequence numbers received after it
		canAsk   bool     // the source may ask for another replay at once
		want     []string
		wantWait []uint64 // with canAsk: messages waiting for a new replay
	}{
		{
			name: "publisher restarts while a gap replay runs",
			from: 6, replayed: []uint64{6, 7, 8}, during: []uint64{8, 100, 101}, after: []uint64{102},
			want: []string{"apply 6", "apply 7", "apply 8", "clear", "apply 100", "apply 101", "apply 102"},
		},
		{
			name: "a live message lost while a replay runs is a gap",
			from: 6, replayed: []uint64{6, 7, 8}, during: []uint64{8, 10},
			// Replay is cooling down: the gap cannot be filled and clears.
			want: []string{"apply 6", "apply 7", "apply 8", "clear", "apply 10"},
		},
		{
			name: "a live message lost while a replay runs is replayed",
			from: 6, replayed: []uint64{6, 7, 8}, during: []uint64{8, 10, 11}, canAsk: true,
			want: []string{"apply 6", "apply 7", "apply 8"}, wantWait: []uint64{10, 11},
		},
		{
			name:   "a catch-up replay that no longer reaches back",
			proact: true, from: 6, replayed: []uint64{9, 10},
			want: []string{"clear", "apply 9", "apply 10"},
		},
		{
			name: "a replay without holes",
			from: 6, replayed: []uint64{6, 7, 8}, during: []uint64{8, 9}, after: []uint64{10},
			want: []string{"apply 6", "apply 7", "apply 8", "apply 9", "apply 10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := &logIndex{}
			s, err := NewSubscriber(idx, WithReplayLimits(1, 10*time.Millisecond, 50*time.Millisecond))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			rs := &runState{ctx: ctx, sem: make(chan struct{}, 1), shards: []chan item{make(chan item, 16)}}
			// Nothing listens on the replay endpoint (port 1): a replay that
			// is asked fails.
			sr := &source{Source: Source{ID: "a", ReplayEndpoint: "tcp://127.0.0.1:1"}}
			if !tt.canAsk {
				sr.coolUntil = time.Now().Add(time.Hour)
			}
			var b Batch
			for seq := range uint64(6) {
				s.live(rs, sr, msg(t, seq, seq), &b)
			}
			// As startReplay does, without a socket to ask.
			sr.replaying = true
			sr.pending = sr.pending[:0]
			idx.log = nil
			hash := func(seq uint64) uint64 { return seq }
			seqOf := func(v uint64) uint64 { return v % 100 }
			for _, v := range tt.during {
				s.live(rs, sr, msg(t, seqOf(v), v), &b)
			}
			it := item{kind: itemReplay, src: sr, from: tt.from, proactive: tt.proact}
			for _, seq := range tt.replayed {
				it.replayed = append(it.replayed, msg(t, seq, hash(seq)))
			}
			s.replayDone(rs, it, &b)
			for _, v := range tt.after {
				s.live(rs, sr, msg(t, seqOf(v), v), &b)
			}
			assert.Equal(t, tt.want, idx.log)
			assert.Equal(t, tt.canAsk, sr.replaying)
			var waiting []uint64
			for _, m := range sr.pending {
				waiting = append(waiting, m.seq)
			}
			assert.Equal(t, tt.wantWait, waiting)
			cancel()
			rs.wg.Wait()
		})
	}
}

// TestReplayBounded: a replay socket that keeps sending (and never sends
// the end marker) is cut off at the longest gap plus the pending limit.
func TestReplayBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	router := zmq4.NewRouter(ctx)
	defer router.Close()
	require.NoError(t, router.Listen("tcp://127.0.0.1:0"))
	go func() {
		req, err := router.Recv()
		if err != nil || len(req.Frames) == 0 {
			return
		}
		for seq := uint64(0); ctx.Err() == nil && seq < 1000; seq++ {
			reply := zmq4.NewMsgFrom(req.Frames[0], nil, nil, binary.BigEndian.AppendUint64(nil, seq), []byte{0x90})
			if router.Send(reply) != nil {
				return
			}
		}
	}()
	s, err := NewSubscriber(&logIndex{}, WithMaxGap(5), WithReplayLimits(1, 2*time.Second, 5*time.Second))
	require.NoError(t, err)
	s.cfg.maxPending = 3
	got, err := s.fetchReplay(ctx, "tcp://"+router.Addr().String(), 0)
	require.ErrorIs(t, err, errReplayTooLong)
	assert.Len(t, got, 5+3+1)
}
