"""GGUF model runs over a kvarn cache, samplers, session files, and `kvarn run` in Python."""

from __future__ import annotations

import ctypes
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from . import _arrays as A
from ._lib import (BUFFER_TOO_SMALL, ON_ATTENTION, ON_KV, ForwardHooks, KvarnError, ModelInfo,
                   check, last_error, lib)
from .cache import Cache

LOGITS = {"last": 0, "all": 1}


class Sampler:
    """Greedy at temperature 0; otherwise temperature, top-k, top-p, min-p (llama.cpp's order)
    and a draw from a generator seeded with seed: the `kvarn run` sampler, draw for draw."""

    def __init__(self, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                 min_p: float = 0.05, seed: int = 0):
        h = ctypes.c_void_p()
        check(lib.kvarn_sampler_init(temperature, top_k, top_p, min_p, seed, ctypes.byref(h)))
        self._h = h

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.kvarn_sampler_free(self._h)
            self._h = None

    __del__ = close

    def sample(self, logits) -> int:
        x = A.f32(logits, "logits")
        t = lib.kvarn_sampler_sample(self._h, A.fp(x), x.size)
        if t < 0:
            raise ValueError("sampler: invalid logits")
        return t


class Model:
    """A GGUF model (llama, qwen2) with its tokenizer.

    forward() appends tokens to a cache sequence and returns logits of the last token or of
    every token (as `kvarn eval` and `kvarn ppl` compute them); generate() continues as
    `kvarn run` does; save_session()/load_session() persist a sequence (docs/session-format.md).
    A model may serve several threads at once; a cache may not (kvarn.h).
    """

    def __init__(self, path: str | os.PathLike):
        h = ctypes.c_void_p()
        check(lib.kvarn_model_load(os.fsencode(path), ctypes.byref(h)))
        self._h = h
        self.path = os.fspath(path)
        i = ModelInfo()
        check(lib.kvarn_model_get_info(self._h, ctypes.byref(i)))
        self.info = {f: getattr(i, f) for f, _ in ModelInfo._fields_}
        self.info["arch"] = i.arch.decode()
        self.info["name"] = i.name.decode()
        self.n_vocab = i.n_vocab

    def close(self) -> None:
        if getattr(self, "_h", None):
            lib.kvarn_model_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def create_cache(self, codec: str | None = "kvarn_k4v2_g128", max_tokens: int = 4096,
                     byte_budget: int = 0) -> Cache:
        h = ctypes.c_void_p()
        check(lib.kvarn_model_cache_init(self._h, codec.encode() if codec else None, max_tokens,
                                         byte_budget, ctypes.byref(h)))
        i = self.info
        return Cache(i["n_layers"], i["n_kv_heads"], i["head_dim"], max_tokens=max_tokens,
                     _handle=h)

    # ---- text
    def tokenize(self, text: str | bytes, add_bos: bool | None = None,
                 parse_special: bool = False) -> np.ndarray:
        """Token ids (int32). add_bos None: as the model asks (what `kvarn run` does)."""
        b = text.encode() if isinstance(text, str) else bytes(text)
        bos = -1 if add_bos is None else int(add_bos)
        ids = np.empty(len(b) + 2, dtype=np.int32)  # at most one token per byte, and bos
        n = ctypes.c_size_t()
        check(lib.kvarn_model_tokenize(self._h, b, len(b), bos, int(parse_special), A.ip(ids),
                                       ids.size, ctypes.byref(n)))
        return ids[: n.value].copy()

    def tokenize_chat(self, messages: Iterable, add_generation_prompt: bool = True) -> np.ndarray:
        """messages: (role, content) pairs or {"role", "content"} dicts; the model's chat
        template as `kvarn run --chat` applies it."""
        pairs = [(m["role"], m["content"]) if isinstance(m, dict) else tuple(m) for m in messages]
        roles = (ctypes.c_char_p * len(pairs))(*[r.encode() for r, _ in pairs])
        contents = (ctypes.c_char_p * len(pairs))(*[c.encode() for _, c in pairs])
        n = ctypes.c_size_t()
        cap = sum(len(c.encode()) + len(r) + 16 for r, c in pairs) + 64
        ids = np.empty(cap, dtype=np.int32)
        st = lib.kvarn_model_tokenize_chat(self._h, roles, contents, len(pairs),
                                           int(add_generation_prompt), A.ip(ids), ids.size,
                                           ctypes.byref(n))
        if st == BUFFER_TOO_SMALL:
            ids = np.empty(n.value, dtype=np.int32)
            st = lib.kvarn_model_tokenize_chat(self._h, roles, contents, len(pairs),
                                               int(add_generation_prompt), A.ip(ids), ids.size,
                                               ctypes.byref(n))
        check(st)
        return ids[: n.value].copy()

    def detokenize_bytes(self, ids, render_control: bool = False) -> bytes:
        a = A.i32(ids, "ids")
        n = ctypes.c_size_t()
        st = lib.kvarn_model_detokenize(self._h, A.ip(a), a.size, int(render_control), None, 0,
                                        ctypes.byref(n))
        if st != BUFFER_TOO_SMALL:
            check(st)
        buf = ctypes.create_string_buffer(n.value + 1)
        check(lib.kvarn_model_detokenize(self._h, A.ip(a), a.size, int(render_control), buf,
                                         n.value + 1, ctypes.byref(n)))
        return buf.raw[: n.value]

    def detokenize(self, ids, render_control: bool = False) -> str:
        """Text of ids; bytes that are not UTF-8 become U+FFFD."""
        return self.detokenize_bytes(ids, render_control).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(lib.kvarn_model_is_eog(self._h, token))

    # ---- runs
    def forward(self, cache: Cache, seq: int, tokens, logits: str = "last", threads: int = 1,
                on_kv: Callable | None = None, on_attention: Callable | None = None) -> np.ndarray:
        """Appends tokens to seq (one cache step) and returns logits: "last" [n_vocab], or "all"
        [n][n_vocab]. on_kv(layer, k, v) gets each layer's K and V [n][n_kv_heads*head_dim]
        (post-RoPE) before they enter the cache and may modify them in place; on_attention(layer,
        out) gets its attention output [n][n_heads*head_dim]. Both arrays are views valid only
        during the call."""
        t = A.i32(tokens, "tokens")
        n = t.size
        rows = n if logits == "all" else 1
        out = np.empty((rows, self.n_vocab), dtype=np.float32)
        hooks = None
        errors = []
        if on_kv is not None or on_attention is not None:
            kd = self.info["n_kv_heads"] * self.info["head_dim"]
            qd = self.info["n_heads"] * self.info["head_dim"]

            def kv(_, layer, k, v, m):
                try:
                    on_kv(layer, A.view_f32(k, (m, kd)), A.view_f32(v, (m, kd)))
                except BaseException as e:  # raised again after the call
                    errors.append(e)

            def att(_, layer, a, m):
                try:
                    on_attention(layer, A.view_f32(a, (m, qd)))
                except BaseException as e:
                    errors.append(e)

            hooks = ForwardHooks(ON_KV(kv) if on_kv else ON_KV(),
                                 ON_ATTENTION(att) if on_attention else ON_ATTENTION(), None)
        st = lib.kvarn_model_forward(self._h, cache._h, seq, A.ip(t), n, threads,
                                     LOGITS[logits], A.fp(out),
                                     ctypes.byref(hooks) if hooks is not None else None)
        if errors:
            raise errors[0]
        check(st)
        return out[0] if logits == "last" else out

    def prefill(self, cache: Cache, seq: int, tokens, batch: int = 256,
                threads: int = 1) -> np.ndarray:
        """Feeds tokens in chunks of `batch` (as `kvarn run -b` does); the last logits."""
        t = A.i32(tokens, "tokens")
        logits = None
        for i in range(0, t.size, batch):
            logits = self.forward(cache, seq, t[i:i + batch], threads=threads)
        if logits is None:
            raise ValueError("prefill of no tokens")
        return logits

    def generate(self, cache: Cache, seq: int, logits, n_predict: int,
                 sampler: Sampler | None = None, threads: int = 1):
        """Samples from logits (those after the prompt), feeds each token and samples again, up
        to n_predict tokens, stopping before an end-of-generation token; returns (ids, the logits
        after the last fed token). The loop of `kvarn run`."""
        sampler = sampler or Sampler(temperature=0.0)
        x = A.f32(logits, "logits", self.n_vocab)
        ids = np.empty(max(n_predict, 1), dtype=np.int32)
        last = np.empty(self.n_vocab, dtype=np.float32)
        n = ctypes.c_int()
        check(lib.kvarn_model_generate(self._h, cache._h, seq, sampler._h, A.fp(x), n_predict,
                                       threads, A.ip(ids), ctypes.byref(n), A.fp(last)))
        return ids[: n.value].copy(), last

    # ---- sessions
    def save_session(self, path: str | os.PathLike, cache: Cache, seq: int, tokens,
                     logits=None) -> None:
        """Saves seq (which holds exactly `tokens`) and the logits after its last token."""
        t = A.i32(tokens, "tokens")
        lg = None if logits is None else A.f32(logits, "logits", self.n_vocab)
        check(lib.kvarn_session_save(self._h, cache._h, seq, A.ip(t), t.size,
                                     A.fp(lg) if lg is not None else None, os.fsencode(path)))

    def load_session(self, path: str | os.PathLike, cache: Cache, prompt=None):
        """Restores a session into a new sequence of cache: everything (prompt None) or the
        longest prefix of prompt it can supply. Returns (seq, n_reused, logits or None); logits
        are those after the last restored token when the file holds them and all of it was
        restored."""
        p = None if prompt is None else A.i32(prompt, "prompt")
        seq = ctypes.c_int()
        reused = ctypes.c_size_t()
        has = ctypes.c_int()
        logits = np.empty(self.n_vocab, dtype=np.float32)
        check(lib.kvarn_session_load(self._h, cache._h, os.fsencode(path),
                                     A.ip(p) if p is not None else None,
                                     0 if p is None else p.size, ctypes.byref(seq),
                                     ctypes.byref(reused), A.fp(logits), ctypes.byref(has)))
        return seq.value, reused.value, (logits if has.value else None)


def session_tokens(path: str | os.PathLike) -> np.ndarray:
    """The token ids a session file holds (header validated; no model needed)."""
    n = ctypes.c_size_t()
    st = lib.kvarn_session_tokens(os.fsencode(path), None, 0, ctypes.byref(n))
    if st != BUFFER_TOO_SMALL and st != 0:
        check(st)
    ids = np.empty(n.value, dtype=np.int32)
    check(lib.kvarn_session_tokens(os.fsencode(path), A.ip(ids), ids.size, ctypes.byref(n)))
    return ids


def run(model: Model, prompt: str, n_predict: int = 128, cache_type: str = "kvarn_k4v2_g128",
        chat: bool = False, system: str = "", temperature: float = 0.8, top_k: int = 40,
        top_p: float = 0.95, min_p: float = 0.05, seed: int = 0, ctx: int = 4096,
        batch: int = 256, threads: int = 1, prompt_cache: str | None = None) -> str:
    """`kvarn run` in Python, flag for flag (-p -n --cache-type --chat --system --temp --top-k
    --top-p --min-p -s -c -b -t --prompt-cache): the same tokens, so the same text."""
    if chat:
        msgs = ([("system", system)] if system else []) + [("user", prompt)]
        ids = model.tokenize_chat(msgs)
    else:
        ids = model.tokenize(prompt)
    if ids.size == 0:
        raise ValueError("empty prompt")
    if ids.size >= ctx:
        raise ValueError(f"prompt of {ids.size} tokens does not fit the context of {ctx}")
    cache = model.create_cache(cache_type, ctx)
    seq, reused, logits = -1, 0, None
    if prompt_cache and os.path.exists(prompt_cache):
        seq, reused, logits = model.load_session(prompt_cache, cache, ids)
    if seq < 0:
        seq = cache.add_sequence()
    if reused < ids.size:
        logits = model.prefill(cache, seq, ids[reused:], batch=batch, threads=threads)
        if prompt_cache:
            model.save_session(prompt_cache, cache, seq, ids, logits)
    out, _ = model.generate(cache, seq, logits, n_predict,
                            Sampler(temperature, top_k, top_p, min_p, seed), threads)
    return model.detokenize(out)
