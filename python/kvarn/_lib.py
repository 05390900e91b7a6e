"""Loading libkvarn and declaring its C API (include/kvarn/kvarn.h) for ctypes.

The library is looked up, in order: the path in $KVARN_LIBRARY; a libkvarn.so* next to this
module (copied there when a wheel bundles it); libkvarn.so.0 through the dynamic loader
(an installed kvarn, LD_LIBRARY_PATH). Every fallible call goes through check(), which turns
a kvarn_status into KvarnError carrying the library's message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint8, c_uint64, c_void_p)

STATUS_NAMES = {
    0: "ok", 1: "invalid argument", 2: "unsupported", 3: "non-finite value",
    4: "buffer too small", 5: "corrupt data", 6: "out of memory", 7: "I/O error",
    8: "out of range", 9: "internal error",
}
BUFFER_TOO_SMALL = 4


class KvarnError(Exception):
    """A failing libkvarn call: .status is the kvarn_status code, .message the library's text."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{message} [{STATUS_NAMES.get(status, status)}]")


def _load() -> ctypes.CDLL:
    tried = []
    env = os.environ.get("KVARN_LIBRARY")
    if env:
        return ctypes.CDLL(env)  # an explicit path that fails should fail loudly
    here = pathlib.Path(__file__).resolve().parent
    names = [str(p) for p in sorted(here.glob("libkvarn.so*"))]
    names += ["libkvarn.so.0", ctypes.util.find_library("kvarn")]
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            tried.append(f"{name}: {e}")
    raise OSError("libkvarn not found. Set KVARN_LIBRARY to the library's path (a build has it at "
                  "build/release/src/capi/libkvarn.so), or install kvarn (cmake --install) "
                  "where the dynamic loader looks. Tried: " + "; ".join(tried))


lib = _load()

f32p = POINTER(c_float)
i32p = POINTER(c_int32)
u8p = POINTER(c_uint8)


class CacheStats(Structure):
    _fields_ = [("record_bytes", c_size_t), ("sink_bytes", c_size_t), ("tail_bytes", c_size_t),
                ("row_bytes", c_size_t), ("scratch_bytes", c_size_t), ("total_bytes", c_size_t),
                ("budget_bytes", c_size_t), ("tokens", c_int64)]


class ModelInfo(Structure):
    _fields_ = [("arch", c_char_p), ("name", c_char_p), ("n_layers", c_int), ("n_embd", c_int),
                ("n_ff", c_int), ("n_heads", c_int), ("n_kv_heads", c_int), ("head_dim", c_int),
                ("n_vocab", c_int), ("n_ctx_train", c_int), ("bos", c_int32), ("eos", c_int32),
                ("add_bos", c_int)]


ON_KV = CFUNCTYPE(None, c_void_p, c_int, f32p, f32p, c_int)
ON_ATTENTION = CFUNCTYPE(None, c_void_p, c_int, f32p, c_int)


class ForwardHooks(Structure):
    _fields_ = [("on_kv", ON_KV), ("on_attention", ON_ATTENTION), ("user", c_void_p)]


def _declare(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_S = c_int  # kvarn_status
_P = c_void_p  # opaque handles
for _name, _res, _args in [
    ("kvarn_status_string", c_char_p, [c_int]),
    ("kvarn_last_error", c_char_p, []),
    ("kvarn_codec_init", _S, [c_char_p, c_int, POINTER(_P)]),
    ("kvarn_codec_free", None, [_P]),
    ("kvarn_codec_name", c_char_p, [_P]),
    ("kvarn_codec_tokens_per_record", c_int, [_P]),
    ("kvarn_codec_record_bytes", c_size_t, [_P, c_int]),
    ("kvarn_codec_encode", _S, [_P, f32p, f32p, c_int, u8p, c_size_t]),
    ("kvarn_codec_decode", _S, [_P, u8p, c_size_t, c_int, f32p, f32p, c_int]),
    ("kvarn_cache_init", _S, [c_int, c_int, c_int, c_char_p, c_int, c_size_t, POINTER(_P)]),
    ("kvarn_cache_free", None, [_P]),
    ("kvarn_cache_codec_name", c_char_p, [_P]),
    ("kvarn_cache_block_tokens", c_int, [_P]),
    ("kvarn_cache_add_sequence", _S, [_P, POINTER(c_int)]),
    ("kvarn_cache_remove_sequence", _S, [_P, c_int]),
    ("kvarn_cache_copy_sequence", _S, [_P, c_int, POINTER(c_int)]),
    ("kvarn_cache_length", _S, [_P, c_int, POINTER(c_int)]),
    ("kvarn_cache_encoded_tokens", _S, [_P, c_int, POINTER(c_int)]),
    ("kvarn_cache_begin_step", _S, [_P, c_int, c_int]),
    ("kvarn_cache_write", _S, [_P, c_int, c_int, c_int, c_int, f32p, f32p]),
    ("kvarn_cache_end_step", _S, [_P, c_int]),
    ("kvarn_cache_abort_step", _S, [_P, c_int]),
    ("kvarn_cache_truncate", _S, [_P, c_int, c_int]),
    ("kvarn_cache_attend", _S, [_P, c_int, c_int, f32p, c_int, c_int, c_int, c_float, c_int, f32p]),
    ("kvarn_cache_get_stats", _S, [_P, POINTER(CacheStats)]),
    ("kvarn_model_load", _S, [c_char_p, POINTER(_P)]),
    ("kvarn_model_free", None, [_P]),
    ("kvarn_model_get_info", _S, [_P, POINTER(ModelInfo)]),
    ("kvarn_model_cache_init", _S, [_P, c_char_p, c_int, c_size_t, POINTER(_P)]),
    ("kvarn_model_tokenize", _S, [_P, c_char_p, c_size_t, c_int, c_int, i32p, c_size_t,
                                  POINTER(c_size_t)]),
    ("kvarn_model_tokenize_chat", _S, [_P, POINTER(c_char_p), POINTER(c_char_p), c_size_t, c_int,
                                       i32p, c_size_t, POINTER(c_size_t)]),
    ("kvarn_model_detokenize", _S, [_P, i32p, c_size_t, c_int, c_char_p, c_size_t,
                                    POINTER(c_size_t)]),
    ("kvarn_model_is_eog", c_int, [_P, c_int32]),
    ("kvarn_model_forward", _S, [_P, _P, c_int, i32p, c_int, c_int, c_int, f32p,
                                 POINTER(ForwardHooks)]),
    ("kvarn_sampler_init", _S, [c_float, c_int, c_float, c_float, c_uint64, POINTER(_P)]),
    ("kvarn_sampler_free", None, [_P]),
    ("kvarn_sampler_sample", c_int32, [_P, f32p, c_int]),
    ("kvarn_model_generate", _S, [_P, _P, c_int, _P, f32p, c_int, c_int, i32p, POINTER(c_int),
                                  f32p]),
    ("kvarn_session_save", _S, [_P, _P, c_int, i32p, c_size_t, f32p, c_char_p]),
    ("kvarn_session_load", _S, [_P, _P, c_char_p, i32p, c_size_t, POINTER(c_int),
                                POINTER(c_size_t), f32p, POINTER(c_int)]),
    ("kvarn_session_tokens", _S, [c_char_p, i32p, c_size_t, POINTER(c_size_t)]),
    ("kvarn_set_force_reference", None, [c_int]),
    ("kvarn_simd_target", c_char_p, []),
]:
    _declare(_name, _res, *_args)


def check(status: int) -> None:
    """Raises KvarnError for a failing status, with the library's message for this thread."""
    if status != 0:
        raise KvarnError(status, lib.kvarn_last_error().decode("utf-8", "replace"))


def last_error() -> str:
    return lib.kvarn_last_error().decode("utf-8", "replace")
