package kvpublish_test

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/go-zeromq/zmq4"

	"github.com/routekit/routekit/internal/kvpublish"
	"github.com/routekit/routekit/kvcache/kvevents"
)

// A publisher numbers batches from 0 and answers a replay request with the
// buffered batches and the end marker.
func Example() {
	p, err := kvpublish.New(kvpublish.Config{
		Endpoint:       "tcp://127.0.0.1:0",
		ReplayEndpoint: "tcp://127.0.0.1:0",
		Mode:           kvpublish.ModeBind,
		Topic:          "kv@10.0.0.7:8000@my-model",
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	for range 2 {
		b := kvevents.Batch{TS: 1767225600.5, Events: []kvevents.Event{{Type: kvevents.AllBlocksCleared}}}
		seq, _ := p.Publish(&b, kvevents.MapCurrent)
		fmt.Println("published seq", seq)
	}

	d := zmq4.NewDealer(context.Background())
	defer d.Close()
	if err := d.Dial(p.ReplayEndpoint()); err != nil {
		panic(err)
	}
	_ = d.Send(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, 0)))
	for {
		m, err := d.Recv()
		if err != nil {
			panic(err)
		}
		seq := binary.BigEndian.Uint64(m.Frames[2])
		if seq == kvevents.EndSeq {
			fmt.Println("end of replay")
			return
		}
		fmt.Printf("replayed seq %d on topic %s\n", seq, m.Frames[1])
	}
	// Output:
	// published seq 0
	// published seq 1
	// replayed seq 0 on topic kv@10.0.0.7:8000@my-model
	// replayed seq 1 on topic kv@10.0.0.7:8000@my-model
	// end of replay
}
