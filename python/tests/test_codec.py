"""Codecs through Python: per-token records byte for byte against gguf-py's numpy quantizers
(an independent implementation of llama.cpp's reference), f16/f32 against numpy, the KVarN tile
codec's size, error and rotated frame (against a Hadamard matrix built here)."""

import gguf
import gguf.quants
import numpy as np
import pytest

import kvarn


def rows(n, d, seed):
    r = np.random.default_rng(seed)
    return (r.standard_normal((n, d)) * np.linspace(0.2, 3.0, d)).astype(np.float32)


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1"])
def test_token_codecs_equal_gguf_py_quantizers(name):
    k, v = rows(5, 128, 1), rows(5, 128, 2)
    with kvarn.Codec(name, 128) as c:
        assert c.tokens_per_record == 1
        rec = c.encode(k, v)
        qt = getattr(gguf.GGMLQuantizationType, name.upper())
        want = np.concatenate([gguf.quants.quantize(k, qt).reshape(-1),
                               gguf.quants.quantize(v, qt).reshape(-1)])  # K rows, then V rows
        assert rec.tobytes() == want.tobytes()
        kd, vd = c.decode(rec, 5)
        np.testing.assert_array_equal(kd, gguf.quants.dequantize(gguf.quants.quantize(k, qt), qt))
        np.testing.assert_array_equal(vd, gguf.quants.dequantize(gguf.quants.quantize(v, qt), qt))


def test_f16_and_f32_are_exact_roundings():
    k, v = rows(3, 64, 3), rows(3, 64, 4)
    with kvarn.Codec("f16", 64) as c:
        kd, vd = c.decode(c.encode(k, v), 3)
        np.testing.assert_array_equal(kd, k.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(vd, v.astype(np.float16).astype(np.float32))
    with kvarn.Codec("f32", 64) as c:
        kd, vd = c.decode(c.encode(k, v), 3)
        np.testing.assert_array_equal(kd, k)


def hadamard(d):
    h = np.array([[1.0]])
    while h.shape[0] < d:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(d)


def test_kvarn_tile_codec():
    k, v = rows(128, 128, 5), rows(128, 128, 6)
    with kvarn.Codec("kvarn_k4v2_g128", 128) as c:
        assert c.name == "kvarn_k4v2_g128"
        assert c.tokens_per_record == 128
        assert c.record_bytes() == 13824  # docs/format.md: 108 bytes per token at D = 128
        rec = c.encode(k, v)
        kd, vd = c.decode(rec)
        # 4-bit keys on smooth rows: relative error energy well under 1e-2 (C++ test's bound).
        assert np.sum((kd - k) ** 2) / np.sum(k ** 2) < 1e-2
        # 2-bit values (4 levels per token: ~0.25 of the energy for Gaussian rows): at most
        # half the error of the 1-level baseline that predicts each token's mean.
        baseline = np.sum((v - v.mean(axis=1, keepdims=True)) ** 2)
        assert np.sum((vd - v) ** 2) < 0.5 * baseline
        # The rotated frame is the model frame times the normalized Sylvester-Hadamard matrix.
        kr, vr = c.decode(rec, frame="rotated")
        h = hadamard(128)
        np.testing.assert_allclose(kr, kd @ h, atol=1e-4 * np.abs(kd).max())
        np.testing.assert_allclose(vr, vd @ h, atol=1e-4 * np.abs(vd).max())


def test_errors_carry_status_and_message():
    with pytest.raises(kvarn.KvarnError) as e:
        kvarn.Codec("kvarn_k3v2_g128", 128)
    assert e.value.status == 1 and "K bits 3" in e.value.message
    with pytest.raises(kvarn.KvarnError) as e:
        kvarn.Codec("kvarn_k4v2_g128", 96)
    assert e.value.status == 2
    with kvarn.Codec("q8_0", 64) as c:
        k = np.ones((1, 64), np.float32)
        v = k.copy()
        v[0, 3] = np.nan
        with pytest.raises(kvarn.KvarnError) as e:
            c.encode(k, v)
        assert e.value.status == 3 and "not finite" in e.value.message
        with pytest.raises(ValueError):
            c.encode(np.ones(64), np.ones(32))
