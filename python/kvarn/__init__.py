"""kvarn: KVarN KV-cache quantization (arXiv 2606.03458) from Python, through libkvarn's C API.

    import kvarn
    m = kvarn.Model("SmolLM2-135M-Instruct.Q4_1.gguf")
    print(kvarn.run(m, "Why is the sky blue?", n_predict=64, temperature=0))
    cache = m.create_cache("kvarn_k4v2_g128", max_tokens=4096)
    seq = cache.add_sequence()
    logits = m.forward(cache, seq, m.tokenize("Hello"), logits="all")    # [n][n_vocab]

Objects: Codec (tile records), Cache (paged quantized KV cache, attend), Model (tokenize,
forward, generate, sessions), Sampler; kvarn.eval reproduces `kvarn eval`. The library is
found through $KVARN_LIBRARY or the dynamic loader (see README.md).
"""

from ._lib import KvarnError, lib
from .cache import Cache
from .codec import Codec
from .model import Model, Sampler, run, session_tokens
from . import eval  # noqa: F401  (kvarn.eval)

__version__ = "0.1.0"


def simd_target() -> str:
    """The SIMD target libkvarn's kernels run on here, e.g. "AVX2"."""
    return lib.kvarn_simd_target().decode()


def set_force_reference(force: bool) -> None:
    """Process-wide: run the scalar reference kernels instead of SIMD."""
    lib.kvarn_set_force_reference(int(force))


__all__ = ["Cache", "Codec", "KvarnError", "Model", "Sampler", "eval", "run", "session_tokens",
           "set_force_reference", "simd_target"]
