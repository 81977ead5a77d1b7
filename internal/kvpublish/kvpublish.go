package kvpublish

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/routekit/routekit/kvcache/kvevents"
)

// Config mirrors vLLM's KVEventsConfig for the "zmq" publisher. The zero
// value of each field means vLLM's default.
// It is plain data with no internal synchronisation: share it only read-only.
type Config struct {
	// Endpoint is the PUB address; default "tcp://*:5557". The
	// DataParallelRank is added to its port.
	Endpoint string
	// ReplayEndpoint is the ROUTER address answering replay requests; empty
	// means no replay socket. The rank is added to its port too.
	ReplayEndpoint string
	// BufferSteps is how many batches the replay buffer keeps; default
	// 10000.
	BufferSteps int
	// HWM is the PUB high-water mark in messages; default 100000.
	HWM int
	// Topic is the first frame of every message; default "" (vLLM's).
	// llm-d deployments use "kv@<endpoint>@<model>".
	Topic string
	// DataParallelRank is the engine's rank: it offsets both ports and is
	// written into batches that carry no rank.
	DataParallelRank int
	// Mode says whether to bind or connect the PUB socket; the zero value
	// applies vLLM's heuristic (ShouldBind).
	Mode Mode
	// LegacyReplay makes replay replies use the layout of vLLM before
	// v0.26.0 (PR #45177): [seq, payload] without the topic frame.
	LegacyReplay bool
	// Drop, when set, is asked about each message before it is sent;
	// returning true keeps the message in the replay buffer but does not
	// send it, as when PUB drops above its high-water mark. For fault
	// injection.
	Drop func(seq uint64) bool
}

// Mode chooses how the PUB socket attaches to its endpoint.
// It is a plain value, safe to copy and to read from several goroutines.
type Mode uint8

// The PUB socket modes.
const (
	// ModeAuto binds or connects as vLLM does (kvevents.ShouldBind).
	ModeAuto Mode = iota
	// ModeBind binds the endpoint; subscribers connect.
	ModeBind
	// ModeConnect connects to a subscriber that binds the endpoint.
	ModeConnect
)

// Publisher publishes KV-event batches over ZeroMQ. It is safe for
// concurrent use.
type Publisher struct {
	cfg      Config
	bind     bool
	endpoint string // resolved PUB address
	replayEP string // resolved ROUTER address, or ""
	pub      zmq4.Socket
	router   zmq4.Socket

	mu     sync.Mutex // guards seq, ring, head, closed
	seq    uint64
	ring   []entry
	head   int // index of the oldest entry in ring when full
	closed bool
}

type entry struct {
	seq     uint64
	payload []byte
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("kvpublish: publisher closed")

// New creates the publisher's sockets. In bind mode it binds them now, as
// net.Listen would; in connect mode the PUB socket connects in Run. The
// ROUTER socket is always bound, as in vLLM. zmq4 runs its own I/O
// goroutines for the sockets until Close, which the caller must call.
func New(cfg Config) (*Publisher, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = "tcp://*:5557"
	}
	if cfg.BufferSteps <= 0 {
		cfg.BufferSteps = 10000
	}
	if cfg.HWM <= 0 {
		cfg.HWM = 100000
	}
	ep, err := kvevents.OffsetEndpoint(cfg.Endpoint, cfg.DataParallelRank)
	if err != nil {
		return nil, fmt.Errorf("kvpublish: %w", err)
	}
	p := &Publisher{cfg: cfg, endpoint: ep, ring: make([]entry, 0, min(cfg.BufferSteps, 1024))}
	switch cfg.Mode {
	case ModeBind:
		p.bind = true
	case ModeConnect:
	default:
		p.bind = kvevents.ShouldBind(cfg.Endpoint)
	}
	opts := []zmq4.Option{zmq4.WithTimeout(5 * time.Second)}
	if !p.bind {
		opts = append(opts, zmq4.WithAutomaticReconnect(true), zmq4.WithDialerMaxRetries(-1),
			zmq4.WithDialerRetry(100*time.Millisecond))
	}
	p.pub = zmq4.NewPub(context.Background(), opts...)
	if err := p.pub.SetOption(zmq4.OptionHWM, cfg.HWM); err != nil {
		p.pub.Close()
		return nil, fmt.Errorf("kvpublish: set HWM: %w", err)
	}
	if p.bind {
		if err := p.pub.Listen(ep); err != nil {
			p.pub.Close()
			return nil, fmt.Errorf("kvpublish: bind %s: %w", ep, err)
		}
		p.endpoint = resolved(ep, p.pub.Addr())
	}
	if cfg.ReplayEndpoint != "" {
		rep, err := kvevents.OffsetEndpoint(cfg.ReplayEndpoint, cfg.DataParallelRank)
		if err != nil {
			p.pub.Close()
			return nil, fmt.Errorf("kvpublish: %w", err)
		}
		p.router = zmq4.NewRouter(context.Background(), zmq4.WithTimeout(5*time.Second))
		if err := p.router.Listen(rep); err != nil {
			p.pub.Close()
			p.router.Close()
			return nil, fmt.Errorf("kvpublish: bind replay %s: %w", rep, err)
		}
		p.replayEP = resolved(rep, p.router.Addr())
	}
	return p, nil
}

// resolved replaces an ephemeral or wildcard TCP address by the one bound.
func resolved(ep string, addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || !strings.HasPrefix(ep, "tcp://") {
		return ep
	}
	host := strings.TrimPrefix(ep, "tcp://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "*" || host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "tcp://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Endpoint returns the PUB address, with the bound port when the
// configured one was ephemeral and 127.0.0.1 for a wildcard host.
func (p *Publisher) Endpoint() string { return p.endpoint }

// ReplayEndpoint returns the ROUTER address, or "" without replay.
func (p *Publisher) ReplayEndpoint() string { return p.replayEP }

// Topic returns the topic frame the publisher sends.
func (p *Publisher) Topic() string { return p.cfg.Topic }

// NextSeq returns the sequence number the next message will get.
func (p *Publisher) NextSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// Publish encodes b in schema s, filling in the publisher's rank when b
// has none (as vLLM does), and publishes it. It returns the message's
// sequence number.
func (p *Publisher) Publish(b *kvevents.Batch, s kvevents.Schema) (uint64, error) {
	if !b.DataParallelRank.Valid {
		c := *b
		c.DataParallelRank = kvevents.Some(int64(p.cfg.DataParallelRank))
		b = &c
	}
	payload, err := kvevents.AppendBatch(nil, b, s)
	if err != nil {
		return 0, fmt.Errorf("kvpublish: %w", err)
	}
	return p.PublishPayload(payload)
}

// PublishPayload publishes an already encoded payload (which the publisher
// keeps for replay: do not modify it afterwards). It returns the message's
// sequence number.
func (p *Publisher) PublishPayload(payload []byte) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	seq := p.seq
	p.seq++
	if len(p.ring) < p.cfg.BufferSteps {
		p.ring = append(p.ring, entry{seq, payload})
	} else {
		p.ring[p.head] = entry{seq, payload}
		p.head = (p.head + 1) % len(p.ring)
	}
	if p.cfg.Drop != nil && p.cfg.Drop(seq) {
		return seq, nil
	}
	// Sent under the lock so that the wire order is the sequence order.
	msg := zmq4.NewMsgFrom([]byte(p.cfg.Topic), binary.BigEndian.AppendUint64(nil, seq), payload)
	if err := p.pub.Send(msg); err != nil {
		return seq, fmt.Errorf("kvpublish: send seq %d: %w", seq, err)
	}
	return seq, nil
}

// Run connects the PUB socket in connect mode (retrying until it
// succeeds) and answers replay requests until ctx is done. It returns nil
// when ctx is done and an error if the sockets fail.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.bind {
		dialed := make(chan error, 1)
		go func() { dialed <- p.pub.Dial(p.endpoint) }()
		select {
		case err := <-dialed:
			if err != nil {
				return fmt.Errorf("kvpublish: connect %s: %w", p.endpoint, err)
			}
		case <-ctx.Done():
			return nil
		}
	}
	if p.router == nil {
		<-ctx.Done()
		return nil
	}
	reqs := make(chan zmq4.Msg)
	errc := make(chan error, 1)
	go func() {
		for {
			msg, err := p.router.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kvpublish: replay socket: %w", err)
		case msg := <-reqs:
			p.answer(msg)
		}
	}
}

// answer serves one replay request [identity, "", start_seq]; anything
// else is ignored, as vLLM does.
func (p *Publisher) answer(msg zmq4.Msg) {
	f := msg.Frames
	if len(f) != 3 || len(f[1]) != 0 || len(f[2]) != 8 {
		return
	}
	id, start := f[0], binary.BigEndian.Uint64(f[2])
	p.mu.Lock()
	var todo []entry
	n := len(p.ring)
	for i := range n {
		e := p.ring[(p.head+i)%n]
		if e.seq >= start {
			todo = append(todo, e)
		}
	}
	p.mu.Unlock()
	topic := []byte(p.cfg.Topic)
	for _, e := range todo {
		seq := binary.BigEndian.AppendUint64(nil, e.seq)
		var reply zmq4.Msg
		if p.cfg.LegacyReplay {
			reply = zmq4.NewMsgFrom(id, nil, seq, e.payload)
		} else {
			reply = zmq4.NewMsgFrom(id, nil, topic, seq, e.payload)
		}
		if p.router.Send(reply) != nil {
			return
		}
	}
	end := binary.BigEndian.AppendUint64(nil, kvevents.EndSeq)
	if p.cfg.LegacyReplay {
		_ = p.router.Send(zmq4.NewMsgFrom(id, nil, end, nil))
	} else {
		_ = p.router.Send(zmq4.NewMsgFrom(id, nil, nil, end, nil))
	}
}

// Close closes the sockets. Publish fails afterwards.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	var errs []error
	if err := p.pub.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kvpublish: close pub socket: %w", err))
	}
	if p.router != nil {
		if err := p.router.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kvpublish: close replay socket: %w", err))
		}
	}
	return errors.Join(errs...)
}
