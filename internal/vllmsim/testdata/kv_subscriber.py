# Independent libzmq peer for internal/vllmsim's KV-event interop test.
# Run with Debian's /usr/bin/python3 (python3-zmq, python3-msgpack).
#
# usage: kv_subscriber.py <pub endpoint> <replay endpoint> <topic> <n batches>
#
# Subscribes to the topic, prints "ready", then prints one JSON line per
# live message until n arrived; then asks the replay socket (DEALER) for
# everything from seq 0 and prints one JSON line per replayed message and
# one for the end marker.
import json
import struct
import sys

import msgpack
import zmq

pub, replay, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
sub.setsockopt(zmq.RCVTIMEO, 20000)
sub.connect(pub)
print("ready", flush=True)


def describe(frames, kind):
    t, seq, payload = frames
    batch = msgpack.unpackb(payload, raw=False)
    events = []
    for ev in batch[1]:
        if isinstance(ev, dict):
            events.append(ev)
        else:  # array encoding: [tag, fields...]
            events.append({"type": ev[0], "fields": ev[1:]})
    return json.dumps({
        "kind": kind,
        "topic": t.decode(),
        "seq": struct.unpack(">Q", seq)[0],
        "batch_len": len(batch),
        "ts_is_float": isinstance(batch[0], float),
        "rank": batch[2] if len(batch) > 2 else None,
        "events": events,
    })


for _ in range(n):
    print(describe(sub.recv_multipart(), "live"), flush=True)

dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.RCVTIMEO, 20000)
dealer.connect(replay)
dealer.send_multipart([b"", struct.pack(">Q", 0)])
while True:
    frames = dealer.recv_multipart()
    assert frames[0] == b"", frames
    frames = frames[1:]
    if len(frames) == 3 and frames[1] == b"\xff" * 8:
        print(json.dumps({"kind": "end"}), flush=True)
        break
    print(describe(frames, "replay"), flush=True)
