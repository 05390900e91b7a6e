"""The paged, quantized KV cache and its fused attention (kvarn_cache_* of the C API)."""

from __future__ import annotations

import contextlib
import ctypes

import numpy as np

from . import _arrays as A
from ._lib import CacheStats, check, lib


class Cache:
    """A KV cache for n_layers x n_kv_heads x head_dim with a codec by name.

    Per sequence, one step at a time: begin_step(seq, n) (commits completed tiles first),
    write(seq, layer, pos, k, v) for every layer (k, v [n][n_kv_heads][head_dim], model frame,
    post-RoPE), end_step(seq); or `with cache.step(seq, n):`. attend(seq, layer, q, pos0) runs
    attention of queries [n][n_heads][head_dim] at positions pos0.. over the sequence.
    Not thread-safe (kvarn.h states the rules); a model's create_cache() gives one shaped for it.
    """

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int,
                 codec: str | None = "kvarn_k4v2_g128", max_tokens: int = 4096,
                 byte_budget: int = 0, *, _handle=None):
        if _handle is None:
            h = ctypes.c_void_p()
            check(lib.kvarn_cache_init(n_layers, n_kv_heads, head_dim,
                                       codec.encode() if codec else None, max_tokens,
                                       byte_budget, ctypes.byref(h)))
            _handle = h
        self._h = _handle
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.max_tokens = max_tokens

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.kvarn_cache_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def codec_name(self) -> str:
        return lib.kvarn_cache_codec_name(self._h).decode()

    @property
    def block_tokens(self) -> int:
        return lib.kvarn_cache_block_tokens(self._h)

    # ---- sequences
    def add_sequence(self) -> int:
        s = ctypes.c_int()
        check(lib.kvarn_cache_add_sequence(self._h, ctypes.byref(s)))
        return s.value

    def remove_sequence(self, seq: int) -> None:
        check(lib.kvarn_cache_remove_sequence(self._h, seq))

    def copy_sequence(self, seq: int) -> int:
        s = ctypes.c_int()
        check(lib.kvarn_cache_copy_sequence(self._h, seq, ctypes.byref(s)))
        return s.value

    def length(self, seq: int) -> int:
        n = ctypes.c_int()
        check(lib.kvarn_cache_length(self._h, seq, ctypes.byref(n)))
        return n.value

    def encoded_tokens(self, seq: int) -> int:
        n = ctypes.c_int()
        check(lib.kvarn_cache_encoded_tokens(self._h, seq, ctypes.byref(n)))
        return n.value

    # ---- steps
    def begin_step(self, seq: int, n: int) -> int:
        """Opens a step of n tokens; returns its first position."""
        pos = self.length(seq)
        check(lib.kvarn_cache_begin_step(self._h, seq, n))
        return pos

    def write(self, seq: int, layer: int, pos: int, k, v) -> None:
        k = A.f32(k, "k")
        n = k.size // (self.n_kv_heads * self.head_dim)
        size = n * self.n_kv_heads * self.head_dim
        k = A.f32(k, "k", size)
        v = A.f32(v, "v", size)
        check(lib.kvarn_cache_write(self._h, seq, layer, pos, n, A.fp(k), A.fp(v)))

    def end_step(self, seq: int) -> None:
        check(lib.kvarn_cache_end_step(self._h, seq))

    def abort_step(self, seq: int) -> None:
        check(lib.kvarn_cache_abort_step(self._h, seq))

    @contextlib.contextmanager
    def step(self, seq: int, n: int):
        """begin_step, yield the first position, end_step (abort_step if the block raises)."""
        pos = self.begin_step(seq, n)
        try:
            yield pos
        except BaseException:
            self.abort_step(seq)
            raise
        self.end_step(seq)

    def truncate(self, seq: int, length: int) -> None:
        check(lib.kvarn_cache_truncate(self._h, seq, length))

    # ---- attention
    def attend(self, seq: int, layer: int, q, pos0: int, n_heads: int | None = None,
               scale: float = 0.0, threads: int = 1) -> np.ndarray:
        """q [n][n_heads][head_dim] (or [n][n_heads * head_dim] with n_heads given) at positions
        pos0 .. pos0+n-1, causal; returns out [n][n_heads][head_dim]. scale 0: 1/sqrt(head_dim)."""
        q = np.asarray(q, dtype=np.float32)
        if n_heads is None:
            if q.ndim != 3:
                raise ValueError("q: pass [n][n_heads][head_dim], or n_heads")
            n_heads = q.shape[1]
        q = A.f32(q, "q")
        n = q.size // (n_heads * self.head_dim)
        q = A.f32(q, "q", n * n_heads * self.head_dim)
        out = np.empty((n, n_heads, self.head_dim), dtype=np.float32)
        check(lib.kvarn_cache_attend(self._h, seq, layer, A.fp(q), n, n_heads, pos0, scale,
                                     threads, A.fp(out)))
        return out

    def stats(self) -> dict:
        """Bytes by kind from the cache's own accounting, and the tokens held."""
        s = CacheStats()
        check(lib.kvarn_cache_get_stats(self._h, ctypes.byref(s)))
        return {f: getattr(s, f) for f, _ in CacheStats._fields_}
