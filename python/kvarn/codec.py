"""The tile codec: one KV head's keys and values for a block of tokens <-> a byte record."""

from __future__ import annotations

import ctypes

import numpy as np

from . import _arrays as A
from ._lib import check, lib

FRAMES = {"model": 0, "rotated": 1}


class Codec:
    """A codec by name ("kvarn_k4v2_g128", "kivi_k2v2_g128", "q8_0", "f16", ...) for head_dim.

    encode(k, v) takes model-frame floats [n][head_dim] (n = G for tile codecs) and returns the
    record as uint8 [record_bytes]; decode(record, n) returns (k, v) [n][head_dim]. Records are
    byte-compatible with the reference implementation (docs/format.md).
    """

    def __init__(self, name: str | None = "kvarn_k4v2_g128", head_dim: int = 128):
        h = ctypes.c_void_p()
        check(lib.kvarn_codec_init(name.encode() if name else None, head_dim, ctypes.byref(h)))
        self._h = h
        self.head_dim = head_dim

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.kvarn_codec_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def name(self) -> str:
        return lib.kvarn_codec_name(self._h).decode()

    @property
    def tokens_per_record(self) -> int:
        """G for tile codecs, 1 for per-token codecs."""
        return lib.kvarn_codec_tokens_per_record(self._h)

    def record_bytes(self, n_tokens: int | None = None) -> int:
        n = self.tokens_per_record if n_tokens is None else n_tokens
        b = lib.kvarn_codec_record_bytes(self._h, n)
        if b == 0:
            raise ValueError(f"{self.name}: no record holds {n} tokens")
        return b

    def encode(self, k, v) -> np.ndarray:
        k = A.f32(k, "k")
        n = k.size // self.head_dim
        k = A.f32(k, "k", n * self.head_dim)
        v = A.f32(v, "v", n * self.head_dim)
        rec = np.zeros(self.record_bytes(n), dtype=np.uint8)
        check(lib.kvarn_codec_encode(self._h, A.fp(k), A.fp(v), n, A.bp(rec), rec.size))
        return rec

    def decode(self, record, n_tokens: int | None = None, frame: str = "model"):
        rec = np.ascontiguousarray(record, dtype=np.uint8).reshape(-1)
        n = self.tokens_per_record if n_tokens is None else n_tokens
        k = np.empty((n, self.head_dim), dtype=np.float32)
        v = np.empty((n, self.head_dim), dtype=np.float32)
        check(lib.kvarn_codec_decode(self._h, A.bp(rec), rec.size, n, A.fp(k), A.fp(v),
                                     FRAMES[frame]))
        return k, v
