#!/usr/bin/env python3
"""Writes tests/weights/testdata/weights_oracle.bin: ggml weight blocks and their dequantized
values according to gguf-py (gguf.quants.dequantize, the numpy dequantizer maintained with
llama.cpp), an oracle independent of kvarn's C++.

Run from anywhere with a Python that has `gguf` and `numpy`:
    python3 tests/reference/weights_oracle.py [--out PATH]
The output is deterministic for a given gguf/numpy version (fixed seed).

File format (little-endian):
    magic b"KVWO", u32 version (1), u32 entry count, then per entry:
    u32 ggml type id, u32 n values, u32 n bytes, the block bytes, n f32 expected values.
"""
import argparse
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

# (type, block values, block bytes, offsets of fp16 scale fields within a block)
TYPES = [
    (T.F32, 1, 4, []),
    (T.F16, 1, 2, []),
    (T.BF16, 1, 2, []),
    (T.Q8_0, 32, 34, [0]),
    (T.Q4_0, 32, 18, [0]),
    (T.Q4_1, 32, 20, [0, 2]),
    (T.Q5_0, 32, 22, [0]),
    (T.Q5_1, 32, 24, [0, 2]),
    (T.Q4_K, 256, 144, [0, 2]),
    (T.Q5_K, 256, 176, [0, 2]),
    (T.Q6_K, 256, 210, [208]),
]

# Scale fields: random finite values of mixed sign and magnitude, plus edge values.
EDGE_F16 = [0.0, -0.0, 6.0e-8, -6.0e-8, 6.1e-5, 65504.0, -65504.0, 1.0, -1.0]


def random_f16(rng, n):
    mags = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n))
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mags * signs).astype(np.float16)


def finite_f16_bits(rng, n):
    """Random fp16 bit patterns with the inf/NaN exponent replaced (subnormals included)."""
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    special = (bits & 0x7C00) == 0x7C00
    bits[special] &= np.uint16(0x83FF)  # exponent 31 -> 0: a subnormal
    return bits


def make_blocks(rng, qtype, block_bytes, scale_offsets, n_blocks, edge):
    if qtype == T.F32:
        vals = (rng.standard_normal(n_blocks) * 3).astype(np.float32)
        vals[:4] = [0.0, -0.0, 1e-40, -3.4e38][: min(4, n_blocks)]
        return vals.view(np.uint8)
    if qtype == T.F16:
        return finite_f16_bits(rng, n_blocks).view(np.uint8)
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, n_blocks, dtype=np.uint32).astype(np.uint16)
        special = (bits & 0x7F80) == 0x7F80
        bits[special] &= np.uint16(0x807F)
        return bits.view(np.uint8)
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint32).astype(np.uint8)
    for b in range(n_blocks):
        for k, off in enumerate(scale_offsets):
            if edge:
                v = np.float16(EDGE_F16[(b + 3 * k) % len(EDGE_F16)])
            else:
                v = random_f16(rng, 1)[0]
            raw[b, off:off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
    return raw.reshape(-1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "weights", "testdata", "weights_oracle.bin")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args()

    rng = np.random.default_rng(20240531)
    entries = []
    for qtype, block_values, block_bytes, scale_offsets in TYPES:
        # Random rows: 3 blocks of the k-quants, 9 of the 32-value formats, 67 float values.
        n_blocks = {1: 67, 32: 9, 256: 3}[block_values]
        for edge in (False, True):
            data = make_blocks(rng, qtype, block_bytes, scale_offsets, n_blocks, edge)
            assert data.size == n_blocks * block_bytes
            expected = quants.dequantize(data.reshape(1, -1), qtype).reshape(-1)
            expected = np.ascontiguousarray(expected, dtype=np.float32)
            assert expected.size == n_blocks * block_values
            entries.append((int(qtype), expected.size, data.tobytes(), expected.tobytes()))

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(b"KVWO" + struct.pack("<II", 1, len(entries)))
        for type_id, n, data, expected in entries:
            f.write(struct.pack("<III", type_id, n, len(data)))
            f.write(data)
            f.write(expected)
    print(f"wrote {len(entries)} entries to {args.out}")


if __name__ == "__main__":
    main()
