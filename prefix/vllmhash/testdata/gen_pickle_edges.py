#!/usr/bin/python3
"""Edge-case vectors for the pickle serializer of prefix/vllmhash.

Run with any CPython 3.10-3.12: /usr/bin/python3 gen_pickle_edges.py > pickle_edges.json
Each case pickles (parent, tuple(tokens), extra) with protocol 5, exactly as
vLLM's "sha256"/"xxhash" algorithms do, and records the bytes (or, for large
inputs, their SHA-256 and length).
"""
import hashlib, json, pickle, sys

def enc(v):
    if v is None: return None
    if isinstance(v, str):
        if len(v) > 1000 and v == v[0] * len(v): return {"s_rep": [v[0], len(v)]}
        return {"s": v}
    if isinstance(v, bytes):
        if len(v) > 1000 and v == v[:1] * len(v): return {"b_rep": [v[:1].hex(), len(v)]}
        return {"b": v.hex()}
    if isinstance(v, int): return {"i": v}
    if isinstance(v, tuple): return {"t": [enc(x) for x in v]}
    raise TypeError(v)

parent = bytes(range(32))
big = "x" * 70000
cases = {
    "int_widths": ([0, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1],
                   (-1, -32, -128, -129, -32768, -2**31, -2**31 - 1, 2**40, -2**40, 2**63 - 1, -2**63, 128, 2**31)),
    "empty_tuple_extra": ([1, 2], ()),
    "empty_tokens": ([], None),
    "nested_sizes": ([7], ((1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ())),
    "unicode": ([1], ("h\u00e9llo \u2713 \U0001F600",)),
    "str_300": ([1], ("y" * 300, b"\x01" * 300)),
    "large_str": ([1, 2, 3], (big,)),
    "large_bytes": ([1, 2, 3], (b"z" * 70000, "after")),
    "frame_split_tokens": (list(range(20000)), ("lora",)),
    "frame_split_exact": (list(range(300, 300 + 13110)), None),
}
out = {}
for name, (tokens, extra) in cases.items():
    p = pickle.dumps((parent, tuple(tokens), extra), protocol=5)
    c = {"tokens": tokens if len(tokens) < 100 else {"range": [tokens[0], len(tokens)]},
         "extra": enc(extra), "len": len(p), "sha256": hashlib.sha256(p).hexdigest()}
    if len(p) < 4096:
        c["hex"] = p.hex()
    out[name] = c
json.dump({"parent_hex": parent.hex(), "python": sys.version.split()[0], "cases": out}, sys.stdout, indent=None)
print()
