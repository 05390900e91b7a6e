"""The KV cache from Python: attention against numpy's exact attention (f32 codec: float
arithmetic only; f16: within the fp16 rounding bound derived in tests/capi/capi_cache_test.cc),
the step protocol and its errors, statistics."""

import numpy as np
import pytest

import kvarn


def naive(q, ks, vs, pos0, hk):
    """q [n][H][D]; ks, vs [T][Hk][D]; causal from pos0; float64."""
    n, h, d = q.shape
    out = np.zeros((n, h, d))
    for i in range(n):
        t = pos0 + i + 1
        for j in range(h):
            kh = j // (h // hk)
            s = ks[:t, kh, :].astype(np.float64) @ q[i, j].astype(np.float64) / np.sqrt(d)
            w = np.exp(s - s.max())
            out[i, j] = (w / w.sum()) @ vs[:t, kh, :]
    return out


@pytest.mark.parametrize("codec,tol", [("f32", 1e-4), ("f16", 0.0213)])
def test_attend_matches_numpy(codec, tol):
    L, hk, h, d = 2, 2, 6, 64
    rng = np.random.default_rng(0)
    cache = kvarn.Cache(L, hk, d, codec, max_tokens=512)
    seq = cache.add_sequence()
    ks = {l: [] for l in range(L)}
    vs = {l: [] for l in range(L)}
    for n in (37, 1, 5):
        with cache.step(seq, n) as pos:
            for l in range(L):
                k = rng.uniform(-1, 1, (n, hk, d)).astype(np.float32)
                k[:, :, 3::16] *= 6  # a few large key channels
                v = rng.uniform(-1, 1, (n, hk, d)).astype(np.float32)
                cache.write(seq, l, pos, k, v)
                ks[l].append(k)
                vs[l].append(v)
            q = rng.uniform(-2, 2, (3, h, d)).astype(np.float32)
            for l in range(L):
                out = cache.attend(seq, l, q, pos + n - 3, threads=2)
                want = naive(q, np.concatenate(ks[l]), np.concatenate(vs[l]), pos + n - 3, hk)
                assert np.abs(out - want).max() < tol
    assert cache.length(seq) == 43


def test_steps_errors_and_stats():
    cache = kvarn.Cache(1, 1, 64, "kvarn_k4v2_g64", max_tokens=256)
    assert cache.codec_name == "kvarn_k4v2_g64" and cache.block_tokens == 64
    seq = cache.add_sequence()
    kv = np.full((64, 1, 64), 0.5, np.float32)
    with pytest.raises(RuntimeError):
        with cache.step(seq, 64) as pos:
            cache.write(seq, 0, pos, kv, kv)
            raise RuntimeError("the engine failed mid-step")
    assert cache.length(seq) == 0  # aborted
    for _ in range(2):
        with cache.step(seq, 64) as pos:
            cache.write(seq, 0, pos, kv, kv)
    pos = cache.begin_step(seq, 1)  # encodes block 1
    with pytest.raises(kvarn.KvarnError) as e:
        cache.end_step(seq)  # nothing written
    assert "no K/V for position 128" in e.value.message
    cache.write(seq, 0, pos, kv[:1], kv[:1])
    cache.end_step(seq)
    assert cache.encoded_tokens(seq) == 64
    with pytest.raises(kvarn.KvarnError) as e:
        cache.truncate(seq, 100)
    assert e.value.status == 8
    s = cache.stats()
    assert s["tokens"] == 129 and s["record_bytes"] > 0
    assert s["total_bytes"] == sum(s[k] for k in ("record_bytes", "sink_bytes", "tail_bytes",
                                                  "row_bytes", "scratch_bytes"))
    copy = cache.copy_sequence(seq)
    assert cache.length(copy) == 129
    cache.remove_sequence(seq)
    with pytest.raises(kvarn.KvarnError):
        cache.length(seq)
