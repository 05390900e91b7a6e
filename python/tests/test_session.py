"""Session files from Python: the header parsed independently of libkvarn, as
docs/session-format.md specifies it (struct, zlib.crc32, hashlib.sha256 and gguf-py for the
model fingerprint); files interchangeable with `kvarn run --prompt-cache`; a truncated and a
corrupted file each refused with its named error."""

import hashlib
import os
import struct
import subprocess
import zlib

import gguf
import numpy as np
import pytest

import kvarn

PROMPT = "A session file stores the KV cache of a prompt so that the next run can skip it. " * 4


def parse(path):
    """An independent reader of the documented format (version 1)."""
    b = open(path, "rb").read()
    assert b[:8] == b"KVARNSES"
    version, layout, flags, header_bytes = struct.unpack_from("<IIIQ", b, 8)
    at = 28
    size, = struct.unpack_from("<Q", b, at)
    fp = b[at + 8:at + 40]
    at += 40

    def string():
        nonlocal at
        n, = struct.unpack_from("<I", b, at)
        s = b[at + 4:at + 4 + n].decode()
        at += 4 + n
        return s

    h = {"version": version, "page_layout": layout, "flags": flags, "header_bytes": header_bytes,
         "model_file_size": size, "fingerprint": fp, "arch": string(), "name": string()}
    h["n_layers"], h["n_kv_heads"], h["head_dim"], h["n_vocab"] = struct.unpack_from("<4I", b, at)
    at += 16
    h["codec"] = string()
    (h["codec_kind"], h["rotation"], h["varn_iters"], h["k_bits"], h["v_bits"], h["G"],
     h["record_bytes"], h["row_bytes"], n_tokens, n_blocks) = struct.unpack_from("<10I", b, at)
    at += 40
    h["tokens"] = list(struct.unpack_from(f"<{n_tokens}i", b, at))
    at += 4 * n_tokens
    h["blocks"] = []
    for _ in range(n_blocks):
        kind, tokens, nbytes, crc = struct.unpack_from("<B3xIQI4x", b, at)
        h["blocks"].append((kind, tokens, nbytes, crc))
        at += 24
    if flags & 1:
        h["logits"] = np.frombuffer(b, dtype="<f4", count=h["n_vocab"], offset=at)
        at += 4 * h["n_vocab"]
    assert at + 4 == header_bytes
    assert struct.unpack_from("<I", b, at)[0] == zlib.crc32(b[:at])
    off = header_bytes
    for kind, tokens, nbytes, crc in h["blocks"]:
        assert zlib.crc32(b[off:off + nbytes]) == crc
        off += nbytes
    assert off == len(b)
    return h


def fingerprint(gguf_path):
    """docs/session-format.md: SHA-256 of the GGUF bytes before the data section, then the first
    and last 4 KiB of every tensor's data in table order (all of a tensor under 8 KiB)."""
    r = gguf.GGUFReader(gguf_path)
    raw = open(gguf_path, "rb").read()
    sha = hashlib.sha256(raw[:r.data_offset])
    for t in r.tensors:  # file (table) order
        start, n = t.data_offset, t.n_bytes
        if n <= 8192:
            sha.update(raw[start:start + n])
        else:
            sha.update(raw[start:start + 4096])
            sha.update(raw[start + n - 4096:start + n])
    return sha.digest()


def test_header_as_documented(model, smollm2_path, tmp_path):
    path = tmp_path / "s.kvs"
    cache = model.create_cache("kvarn_k4v2_g128", 1024)
    seq = cache.add_sequence()
    ids = model.tokenize(PROMPT * 3)
    logits = model.prefill(cache, seq, ids, batch=128)
    model.save_session(path, cache, seq, ids, logits)
    h = parse(path)
    assert (h["version"], h["page_layout"], h["flags"]) == (1, 2, 1)
    assert h["model_file_size"] == os.path.getsize(smollm2_path)
    assert h["fingerprint"] == fingerprint(smollm2_path)
    assert (h["arch"], h["n_layers"], h["n_kv_heads"], h["head_dim"]) == ("llama", 30, 3, 64)
    assert (h["codec"], h["codec_kind"], h["rotation"], h["varn_iters"]) == \
        ("kvarn_k4v2_g128", 5, 1, 8)
    assert (h["k_bits"], h["v_bits"], h["G"]) == (4, 2, 128)
    assert h["tokens"] == ids.tolist()
    np.testing.assert_array_equal(h["logits"], logits)
    kinds = [k for k, *_ in h["blocks"]]
    n_full = ids.size // 128
    # fp16 sink, records of every complete block after it (the save encodes them), fp16 tail.
    assert kinds == [0] + [1] * (n_full - 1) + ([0] if ids.size % 128 else [])
    lh = 30 * 3
    for kind, tokens, nbytes, _ in h["blocks"]:
        assert nbytes == (lh * h["record_bytes"] if kind == 1 else 2 * lh * tokens * 64 * 2)
    assert list(kvarn.session_tokens(path)) == ids.tolist()


def test_interchangeable_with_cli_prompt_cache(model, smollm2_path, cli, tmp_path):
    path = str(tmp_path / "cli.kvs")
    args = [cli, "run", "-m", smollm2_path, "-t", "1", "-p", PROMPT, "-n", "16", "--temp", "0",
            "--prompt-cache", path]
    first = subprocess.run(args, capture_output=True, timeout=120, check=True)
    assert b"saved" in first.stderr
    # Python restores the CLI's file: every prompt token reused, the same continuation.
    assert kvarn.run(model, PROMPT, n_predict=16, temperature=0, prompt_cache=path) == \
        first.stdout.decode()[:-1]
    # The CLI restores a file Python wrote for a longer prompt: it reuses the common prefix.
    longer = PROMPT + "It also records the model and the codec."
    py_path = str(tmp_path / "py.kvs")
    text = kvarn.run(model, longer, n_predict=16, temperature=0, prompt_cache=py_path)
    again = subprocess.run([cli, "run", "-m", smollm2_path, "-t", "1", "-p", longer, "-n", "16",
                            "--temp", "0", "--prompt-cache", py_path],
                           capture_output=True, timeout=120, check=True)
    assert again.stdout.decode()[:-1] == text
    n = len(model.tokenize(longer))
    assert f"reusing {n} of {n} prompt tokens".encode() in again.stderr


def test_damaged_files_get_named_errors(model, tmp_path):
    path = tmp_path / "d.kvs"
    cache = model.create_cache("f16", 512)
    seq = cache.add_sequence()
    ids = model.tokenize(PROMPT)
    logits = model.prefill(cache, seq, ids)
    model.save_session(path, cache, seq, ids, logits)
    good = path.read_bytes()
    fresh = model.create_cache("f16", 512)
    before = fresh.stats()["total_bytes"]

    path.write_bytes(good[: len(good) - 100])
    with pytest.raises(kvarn.KvarnError) as e:
        model.load_session(path, fresh)
    assert e.value.status == 5 and "truncated" in e.value.message

    bad = bytearray(good)
    bad[len(good) - 50] ^= 0x10  # inside the last block image
    path.write_bytes(bytes(bad))
    with pytest.raises(kvarn.KvarnError) as e:
        model.load_session(path, fresh)
    assert e.value.status == 5 and "checksum mismatch" in e.value.message

    path.write_bytes(good)
    other = model.create_cache("q8_0", 512)
    with pytest.raises(kvarn.KvarnError) as e:
        model.load_session(path, other)
    assert "holds a f16 cache, this cache is q8_0" in e.value.message
    assert fresh.stats()["total_bytes"] == before
    seq2, reused, restored = model.load_session(path, fresh)
    assert reused == ids.size and fresh.length(seq2) == ids.size
    np.testing.assert_array_equal(restored, logits)
