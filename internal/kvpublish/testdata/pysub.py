#!/usr/bin/python3
"""An independent libzmq (pyzmq) consumer of a KV-event publisher.

Used by interop_test.go. It connects a SUB socket to PUB_ENDPOINT and prints
each message's frames as a JSON list of hex strings, one line each, until it
has printed COUNT messages; then it sends a replay request for START over a
DEALER socket to REPLAY_ENDPOINT and prints each reply the same way, up to
and including the end marker.

usage: pysub.py PUB_ENDPOINT REPLAY_ENDPOINT COUNT START
"""
import json
import sys

import zmq

pub_ep, replay_ep, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(pub_ep)
print(json.dumps(["ready"]), flush=True)
for _ in range(count):
    print(json.dumps([f.hex() for f in sub.recv_multipart()]), flush=True)

dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.RCVTIMEO, 5000)
dealer.connect(replay_ep)
dealer.send_multipart([b"", start.to_bytes(8, "big")])
while True:
    frames = dealer.recv_multipart()
    print(json.dumps([f.hex() for f in frames]), flush=True)
    if frames[-2] == b"\xff" * 8:
        break
