#!/usr/bin/python3
"""Pickles block tuples for serialize_diff_test.go.

Reads JSON lines {"parent": hex, "tokens": [...], "extra": <tagged>} on stdin
and writes, per line, the hex of pickle.dumps((parent, tuple(tokens), extra),
protocol=5): exactly what vLLM's "sha256" and "xxhash" algorithms hash.
Tagged values: null, {"s": str}, {"i": int}, {"b": hex}, {"t": [tagged...]}.
"""
import json
import pickle
import sys


def dec(v):
    if v is None:
        return None
    if "s" in v:
        return v["s"]
    if "i" in v:
        return v["i"]
    if "b" in v:
        return bytes.fromhex(v["b"])
    return tuple(dec(x) for x in v["t"])


for line in sys.stdin:
    c = json.loads(line)
    obj = (bytes.fromhex(c["parent"]), tuple(c["tokens"]), dec(c["extra"]))
    print(pickle.dumps(obj, protocol=5).hex(), flush=True)
