"""numpy <-> ctypes helpers: contiguous copies of the right dtype, with shape checks that name
the argument."""

from __future__ import annotations

import ctypes

import numpy as np

from ._lib import f32p, i32p, u8p


def f32(x, name: str, size: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if size is not None and a.size != size:
        raise ValueError(f"{name}: {a.size} values (shape {a.shape}), expected {size}")
    return a


def i32(x, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: token ids must be integers, got {a.dtype}")
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise ValueError(f"{name}: ids outside int32")
    return np.ascontiguousarray(a, dtype=np.int32).reshape(-1)


def fp(a: np.ndarray):
    return a.ctypes.data_as(f32p)


def ip(a: np.ndarray):
    return a.ctypes.data_as(i32p)


def bp(a: np.ndarray):
    return a.ctypes.data_as(u8p)


def view_f32(ptr, shape) -> np.ndarray:
    """A numpy view of C memory (valid only while the C call that lent it runs)."""
    n = int(np.prod(shape))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                 shape=(n,)).reshape(shape)
