#!/usr/bin/python3
"""An independent vLLM-style KV-event publisher on libzmq (pyzmq) and msgpack-python.

Used by interop_test.go. It binds a PUB socket and a replay ROUTER socket on
127.0.0.1 (random ports, printed as one JSON line), then publishes COUNT
batches the way vLLM >= 0.26 does: frames [topic, seq (8 bytes big-endian),
msgpack([ts, [event maps], dp_rank])], one every 5 ms, keeping them for
replay. It answers replay requests [identity, b"", start_seq] with
[identity, b"", topic, seq, payload] per batch and the END_SEQ marker, until
its stdin is closed.

usage: pypub.py TOPIC COUNT
"""
import json
import select
import sys
import time

import msgpack
import zmq

topic = sys.argv[1].encode()
count = int(sys.argv[2])
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
router = ctx.socket(zmq.ROUTER)
replay_port = router.bind_to_random_port("tcp://127.0.0.1")
print(json.dumps({"pub": pub_port, "replay": replay_port}), flush=True)

END_SEQ = (-1).to_bytes(8, "big", signed=True)
ring = []


def batch(i):
    h = (1 << 63) + i  # above 2^63: packed as uint64 (0xcf)
    ev = {
        "type": "BlockStored",
        "block_hashes": [h],
        "parent_block_hash": h - 1 if i > 0 else None,
        "token_ids": [(i * 16 + j) * 7919 % 151000 for j in range(16)],
        "block_size": 16,
        "lora_id": None,
        "medium": "GPU",
        "lora_name": None,
        "extra_keys": [None],
        "group_idx": 0,
        "kv_cache_spec_kind": "full_attention",
    }
    return msgpack.packb([time.time(), [ev], 0], use_bin_type=True)


def serve_replay():
    while router.poll(0):
        frames = router.recv_multipart()
        if len(frames) != 3:
            continue
        ident, _, start = frames
        start = int.from_bytes(start, "big")
        for seq, payload in ring:
            if seq >= start:
                router.send_multipart([ident, b"", topic, seq.to_bytes(8, "big"), payload])
        router.send_multipart([ident, b"", b"", END_SEQ, b""])


seq = 0
stdin_open = True
while stdin_open:
    if seq < count:
        payload = batch(seq)
        ring.append((seq, payload))
        pub.send_multipart([topic, seq.to_bytes(8, "big"), payload])
        seq += 1
    serve_replay()
    r, _, _ = select.select([sys.stdin], [], [], 0.005)
    if r and not sys.stdin.read(1):
        stdin_open = False
