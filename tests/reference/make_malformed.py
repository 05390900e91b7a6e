#!/usr/bin/env python3
"""Writes the malformed-GGUF corpus of tests/model/testdata/malformed/ and its MANIFEST.

Every file is a variation of one tiny, valid llama model (vocabulary 8, embedding 8, one layer,
f32 weights; about 3 KiB) with one defect: truncated at each section, wrong magic or version,
counts and string lengths near 2^64, misaligned/overlapping/out-of-bounds tensor offsets,
unknown or unsupported types, shape overflow, metadata of the wrong type, missing required keys,
unsupported architecture, broken tokenizer metadata. MANIFEST pairs each file with a substring
its error message must contain ("OK" for files that must load); tests/model/malformed_test.cc
loads each through Model::Load and then Tokenizer::FromGguf and checks the first error.

GGUF is written byte by byte with struct (standard library only) rather than with the gguf
package: its writer refuses most of these defects. Deterministic; rerun after changing a case:
    python3 tests/reference/make_malformed.py
"""
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "testdata",
                   "malformed")

# gguf value types and ggml tensor types (ggml's gguf.h / ggml.h).
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
T_F32, T_F16, T_Q8_0, T_Q2_K, T_IQ2_XXS = 0, 1, 8, 10, 16
HUGE = 2**64 - 1


def gstr(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def scalar(t, v):
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B",
           U64: "Q", I64: "q", F64: "d"}[t]
    return struct.pack("<" + fmt, v)


def kv(key, t, v):
    """One key-value pair; v is a Python value, or raw bytes after the type for t=None."""
    if t == STRING:
        body = gstr(v)
    elif t == ARRAY:
        et, items = v
        body = struct.pack("<IQ", et, len(items))
        body += b"".join(gstr(x) if et == STRING else scalar(et, x) for x in items)
    else:
        body = scalar(t, v)
    return gstr(key) + struct.pack("<I", t) + body


# GPT-2 byte-level spellings of the few characters the tiny vocabulary uses.
SPACE, NEWLINE = "\u0120", "\u010a"


def base_kvs(arch="llama"):
    a = arch + "."
    return [
        ("general.architecture", STRING, arch),
        ("general.name", STRING, "tiny"),
        (a + "block_count", U32, 1),
        (a + "context_length", U32, 64),
        (a + "embedding_length", U32, 8),
        (a + "feed_forward_length", U32, 8),
        (a + "attention.head_count", U32, 1),
        (a + "attention.head_count_kv", U32, 1),
        (a + "attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, "smollm"),
        ("tokenizer.ggml.tokens", ARRAY,
         (STRING, ["a", "b", "c", "ab", SPACE, NEWLINE, "<|im_start|>", "<|im_end|>"])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [1, 1, 1, 1, 1, 1, 3, 3])),
        ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"])),
        ("tokenizer.ggml.eos_token_id", U32, 7),
    ]


def base_tensors(E=8, F=8, V=8):
    """(name, ne, type, n_bytes) of the tiny llama's f32 tensors."""
    mats = [("token_embd.weight", [E, V])]
    t = [("output_norm.weight", [E]), ("blk.0.attn_norm.weight", [E]),
         ("blk.0.ffn_norm.weight", [E])]
    mats += [("blk.0.attn_q.weight", [E, E]), ("blk.0.attn_k.weight", [E, E]),
             ("blk.0.attn_v.weight", [E, E]), ("blk.0.attn_output.weight", [E, E]),
             ("blk.0.ffn_gate.weight", [E, F]), ("blk.0.ffn_up.weight", [E, F]),
             ("blk.0.ffn_down.weight", [F, E])]
    out = []
    for name, ne in mats + t:
        n = 1
        for d in ne:
            n *= d
        out.append([name, ne, T_F32, 4 * n])
    return out


def build(kvs=None, tensors=None, magic=b"GGUF", version=3, n_tensors=None, n_kv=None,
          align=32, offsets=None, raw_kv=b"", extra_kv=0, raw_infos=b"", extra_infos=0,
          data_cut=0):
    """A GGUF file. kvs: (key, type, value) triples; tensors: [name, ne, type, n_bytes];
    offsets: explicit tensor offsets (default: packed, aligned); data_cut: bytes removed from
    the end of the data section."""
    kvs = base_kvs() if kvs is None else kvs
    tensors = base_tensors() if tensors is None else tensors
    meta = b"".join(kv(k, t, v) for k, t, v in kvs) + raw_kv
    if offsets is None:
        offsets, at = [], 0
        for _, _, _, nb in tensors:
            offsets.append(at)
            at = (at + nb + align - 1) // align * align
    infos = b""
    for (name, ne, ty, _), off in zip(tensors, offsets):
        infos += gstr(name) + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", ty, off)
    infos += raw_infos
    head = magic + struct.pack("<IQQ", version,
                               len(tensors) + extra_infos if n_tensors is None else n_tensors,
                               len(kvs) + extra_kv if n_kv is None else n_kv)
    out = head + meta + infos
    out += b"\0" * ((-len(out)) % align)
    data_size = 0
    for (_, _, _, nb), off in zip(tensors, offsets):
        if off + nb < 1 << 20:
            data_size = max(data_size, off + nb)
    # Small deterministic weights (norms 1.0): the valid file runs a forward pass.
    data = bytearray(data_size)
    for (name, ne, ty, nb), off in zip(tensors, offsets):
        if ty != T_F32 or off + nb > data_size:
            continue
        for j in range(nb // 4):
            v = 1.0 if "norm" in name else ((j * 37 + len(name)) % 17 - 8) / 64.0
            struct.pack_into("<f", data, off + 4 * j, v)
    out += bytes(data)
    return out[:len(out) - data_cut] if data_cut else out


def replace_kv(key, t, v, arch="llama"):
    return [(k, t, v) if k == key else (k, tt, vv) for k, tt, vv in base_kvs(arch)]


def drop_kv(key):
    return [x for x in base_kvs() if x[0] != key]


def with_tensor(name, **changes):
    ts = base_tensors()
    for t in ts:
        if t[0] == name:
            if "ne" in changes:
                t[1] = changes["ne"]
            if "type" in changes:
                t[2] = changes["type"]
            if "n_bytes" in changes:
                t[3] = changes["n_bytes"]
    return ts


def cases():
    valid = build()
    # Section boundaries of the valid file, for the truncations.
    kv0 = 24
    key_len = len("general.architecture")
    meta_end = kv0 + sum(len(kv(k, t, v)) for k, t, v in base_kvs())
    c = []

    def add(name, data, expect):
        c.append((name, data, expect))

    add("ok_tiny_llama.gguf", valid, "OK")
    # Truncation at each section.
    add("trunc_empty.gguf", b"", "truncated: magic")
    add("trunc_in_magic.gguf", valid[:2], "truncated: magic at offset 0 needs 4 bytes, 2 left")
    add("trunc_in_version.gguf", valid[:6], "truncated: version")
    add("trunc_in_tensor_count.gguf", valid[:12], "truncated: tensor count")
    add("trunc_in_kv_count.gguf", valid[:20], "truncated: metadata count")
    add("trunc_in_key.gguf", valid[:kv0 + 8 + 5], "metadata #0: string length 20 at offset 24")
    add("trunc_in_value.gguf", valid[:kv0 + 8 + key_len + 4 + 3],
        "metadata #0 'general.architecture': truncated: string length")
    add("trunc_in_tensor_infos.gguf", valid[:meta_end + 10], "tensor #0")
    add("trunc_in_data.gguf", build(data_cut=100), "exceeds the data section")
    # Header.
    add("bad_magic.gguf", build(magic=b"GGML"), "bad magic 'GGML'")
    add("bad_version_1.gguf", build(version=1), "GGUF version 1 not supported")
    add("bad_version_big_endian.gguf", build(version=0x03000000), "byte-swapped")
    add("count_tensors_2p64.gguf", build(n_tensors=HUGE),
        "tensor count 18446744073709551615 exceeds the limit")
    add("count_kv_2p64.gguf", build(n_kv=HUGE),
        "metadata count 18446744073709551615 exceeds the limit")
    add("count_kv_one_extra.gguf", build(n_kv=len(base_kvs()) + 1, tensors=[], align=1),
        "metadata #15: truncated: string length")
    # Lengths near 2^64.
    add("len_key_2p64.gguf", build(raw_kv=struct.pack("<Q", HUGE), extra_kv=1),
        "string length 18446744073709551615")
    add("len_string_value_2p63.gguf",
        build(raw_kv=gstr("x.s") + struct.pack("<IQ", STRING, 2**63), extra_kv=1),
        "metadata #15 'x.s': string length 9223372036854775808")
    add("len_string_array_2p64.gguf",
        build(raw_kv=gstr("x.a") + struct.pack("<IIQ", ARRAY, STRING, HUGE), extra_kv=1),
        "array length 18446744073709551615 of strings exceeds")
    add("len_u32_array_2p62.gguf",
        build(raw_kv=gstr("x.a") + struct.pack("<IIQ", ARRAY, U32, 2**62), extra_kv=1),
        "array length 4611686018427387904 of uint32 exceeds")
    add("len_tensor_name_2p64.gguf", build(raw_infos=struct.pack("<Q", HUGE), extra_infos=1),
        "tensor #11: string length 18446744073709551615")
    # Metadata encoding.
    add("kv_unknown_value_type.gguf",
        build(raw_kv=gstr("x.t") + struct.pack("<IB", 13, 0), extra_kv=1),
        "unknown value type 13")
    add("kv_array_of_arrays.gguf",
        build(raw_kv=gstr("x.t") + struct.pack("<IIQ", ARRAY, ARRAY, 1), extra_kv=1),
        "arrays of arrays are not supported")
    add("kv_bool_2.gguf", build(raw_kv=gstr("x.b") + struct.pack("<IB", BOOL, 2), extra_kv=1),
        "bool value 2 is neither 0 nor 1")
    add("kv_duplicate_key.gguf", build(kvs=base_kvs() + [("llama.block_count", U32, 1)]),
        "duplicate key 'llama.block_count'")
    add("kv_alignment_u64.gguf", build(kvs=base_kvs() + [("general.alignment", U64, 32)]),
        "metadata 'general.alignment' is uint64 32, expected uint32")
    add("kv_alignment_48.gguf", build(kvs=base_kvs() + [("general.alignment", U32, 48)]),
        "'general.alignment' is 48, not a power of two")
    # Tensor infos.
    add("tensor_n_dims_5.gguf", build(tensors=with_tensor("token_embd.weight", ne=[8, 1, 1, 1, 8])),
        "tensor #0 'token_embd.weight': n_dims 5 exceeds 4")
    add("tensor_shape_overflow.gguf",
        build(tensors=with_tensor("token_embd.weight", ne=[2**32, 2**32])),
        "shape product overflows 64 bits at ne[1] = 4294967296")
    add("tensor_dim_over_int64.gguf", build(tensors=with_tensor("token_embd.weight", ne=[8, 2**63])),
        "ne[1] = 9223372036854775808 exceeds int64")
    add("tensor_bytes_overflow.gguf", build(tensors=with_tensor("token_embd.weight", ne=[2**62])),
        "byte size of 4611686018427387904 F32 elements overflows 64 bits")
    add("tensor_unknown_type.gguf", build(tensors=with_tensor("token_embd.weight", type=99)),
        "unknown ggml type id 99")
    add("tensor_unsupported_type.gguf",
        build(tensors=with_tensor("token_embd.weight", type=T_IQ2_XXS, ne=[256, 8])),
        "type IQ2_XXS (16) not supported")
    add("tensor_partial_block.gguf", build(tensors=with_tensor("token_embd.weight", type=T_Q8_0)),
        "ne[0] = 8 is not a multiple of the Q8_0 block size 32")
    n = len(base_tensors())
    packed = [i * 256 for i in range(n)]
    add("tensor_misaligned_offset.gguf", build(offsets=[4] + packed[1:]),
        "offset 4 is not a multiple of the alignment 32")
    add("tensor_overlap.gguf", build(offsets=[0, 0] + packed[2:]), "overlaps tensor")
    add("tensor_past_end.gguf", build(offsets=packed[:-1] + [1 << 40]),
        "offset 1099511627776 + 32 bytes exceeds the data section")
    add("tensor_offset_2p64.gguf", build(offsets=packed[:-1] + [2**64 - 32]),
        "offset 18446744073709551584 + 32 bytes exceeds the data section")
    dup = base_tensors()
    dup[1][0] = dup[0][0]
    add("tensor_duplicate_name.gguf", build(tensors=dup), "duplicate name 'token_embd.weight'")
    # Model config (Model::Load after the reader accepted the file).
    add("cfg_no_architecture.gguf", build(kvs=drop_kv("general.architecture")),
        "metadata key 'general.architecture' not found")
    add("cfg_architecture_u32.gguf", build(kvs=replace_kv("general.architecture", U32, 7)),
        "metadata 'general.architecture' is uint32 7, expected string")
    add("cfg_architecture_mamba.gguf", build(kvs=base_kvs("mamba")),
        "architecture 'mamba' not supported")
    add("cfg_no_block_count.gguf", build(kvs=drop_kv("llama.block_count")),
        "missing required key llama.block_count")
    add("cfg_block_count_string.gguf", build(kvs=replace_kv("llama.block_count", STRING, "1")),
        "metadata 'llama.block_count' is string '1', expected an integer that fits int64")
    add("cfg_block_count_0.gguf", build(kvs=replace_kv("llama.block_count", U32, 0)),
        "llama.block_count = 0 outside [1, 1024]")
    add("cfg_block_count_u64_max.gguf", build(kvs=replace_kv("llama.block_count", U64, HUGE)),
        "'llama.block_count' is uint64 18446744073709551615, expected an integer that fits int64")
    add("cfg_block_count_2_one_layer.gguf", build(kvs=replace_kv("llama.block_count", U32, 2)),
        "missing tensor blk.1.attn_norm.weight")
    add("cfg_heads_not_dividing.gguf",
        build(kvs=replace_kv("llama.attention.head_count", U32, 3)),
        "embedding_length 8 not divisible by head_count 3")
    heads = {"llama.attention.head_count": 2, "llama.attention.head_count_kv": 3}
    add("cfg_kv_heads_not_dividing.gguf",
        build(kvs=[(k, t, heads.get(k, v)) for k, t, v in base_kvs()]),
        "head_count 2 is not a multiple of head_count_kv 3")
    add("cfg_eps_string.gguf",
        build(kvs=replace_kv("llama.attention.layer_norm_rms_epsilon", STRING, "1e-5")),
        "'llama.attention.layer_norm_rms_epsilon' is string '1e-5', expected float32")
    add("cfg_no_token_embd.gguf", build(tensors=base_tensors()[1:]),
        "missing tensor token_embd.weight")
    add("cfg_token_embd_1d.gguf", build(tensors=with_tensor("token_embd.weight", ne=[64])),
        "token_embd.weight has shape [64, 1], expected [8, n_vocab]")
    add("cfg_attn_q_shape.gguf", build(tensors=with_tensor("blk.0.attn_q.weight", ne=[8, 4],
                                                           n_bytes=128)),
        "tensor blk.0.attn_q.weight has shape [8, 4], expected [8, 8]")
    add("cfg_norm_f16.gguf", build(tensors=with_tensor("blk.0.attn_norm.weight", type=T_F16,
                                                       n_bytes=16)),
        "tensor blk.0.attn_norm.weight is not f32")
    add("cfg_no_ffn_down.gguf", build(tensors=[t for t in base_tensors()
                                               if t[0] != "blk.0.ffn_down.weight"]),
        "missing tensor blk.0.ffn_down.weight")
    # Tokenizer metadata (Tokenizer::FromGguf on the loaded model's file).
    kvs = base_kvs()
    kvs[11] = ("tokenizer.ggml.tokens", ARRAY,
               (STRING, [b"a", b"b", b"c", b"ab", b"\xff\xfe", b"\xc3", b"<|im_start|>",
                         b"<|im_end|>"]))
    add("tok_vocab_invalid_utf8.gguf", build(kvs=kvs), "OK")  # raw-byte tokens, by design
    add("tok_no_model.gguf", build(kvs=drop_kv("tokenizer.ggml.model")),
        "tokenizer.ggml.model absent")
    add("tok_model_llama.gguf", build(kvs=replace_kv("tokenizer.ggml.model", STRING, "llama")),
        "tokenizer.ggml.model \"llama\": only \"gpt2\"")
    add("tok_unknown_pre.gguf", build(kvs=replace_kv("tokenizer.ggml.pre", STRING, "bogus")),
        'tokenizer.ggml.pre "bogus" is not a pre-tokenizer kvarn knows')
    add("tok_tokens_u32.gguf", build(kvs=replace_kv("tokenizer.ggml.tokens", ARRAY, (U32, [1]))),
        "'tokenizer.ggml.tokens' is array of 1 uint32, expected array of string")
    add("tok_type_count.gguf",
        build(kvs=replace_kv("tokenizer.ggml.token_type", ARRAY, (I32, [1, 1, 1]))),
        "tokenizer.ggml.token_type has 3 entries but tokenizer.ggml.tokens has 8")
    add("tok_type_value.gguf",
        build(kvs=replace_kv("tokenizer.ggml.token_type", ARRAY, (I32, [1, 1, 1, 1, 1, 9, 3, 3]))),
        "tokenizer.ggml.token_type[5] = 9 is not a token type")
    add("tok_merge_unknown.gguf",
        build(kvs=replace_kv("tokenizer.ggml.merges", ARRAY, (STRING, ["a z"]))),
        'tokenizer.ggml.merges[0] "a z": "z" is not in tokenizer.ggml.tokens')
    add("tok_merge_no_space.gguf",
        build(kvs=replace_kv("tokenizer.ggml.merges", ARRAY, (STRING, ["ab"]))),
        "is not two tokens separated by a space")
    add("tok_eos_out_of_range.gguf",
        build(kvs=replace_kv("tokenizer.ggml.eos_token_id", U32, 8)),
        "tokenizer.ggml.eos_token_id = 8 is out of range: the vocabulary has 8 tokens")
    return c


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".gguf"):
            os.remove(os.path.join(OUT, f))
    lines = ["# Malformed GGUF corpus (tests/reference/make_malformed.py writes this and the files).",
             "# <file> | <substring the first error of Model::Load then Tokenizer::FromGguf must",
             "# contain, or OK when both must succeed>"]
    total = 0
    for name, data, expect in cases():
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
        total += len(data)
        assert "|" not in expect
        lines.append(f"{name} | {expect}")
    with open(os.path.join(OUT, "MANIFEST"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"{len(lines) - 3} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
