"""`kvarn eval` in Python: pseudo-decode of a text under the accumulated and static schedules,
compared position by position with the exact (f32) cache, and free-running greedy generation.
The definitions are docs/eval.md's and the arithmetic the same (float64, max-shifted
log-softmax), so the numbers reproduce eval.json's: logits bit for bit, the metrics to the last
few bits of float64 (numpy's exp and summation order are not glibc's).

    m = kvarn.Model("SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = kvarn.eval.text_tokens(m, open("pydocs.txt", "rb").read(), 4096)
    cases = kvarn.eval.pseudo_decode(m, ids, ["kvarn_k4v2_g128", "q4_0"])
    cases[0]["kl_mean"], cases[0]["buckets"][3]["top1_agreement"]
"""

from __future__ import annotations

import numpy as np

from .model import Model, Sampler


def text_tokens(model: Model, text: bytes | str, n_tokens: int, offset: int = 0) -> np.ndarray:
    """The first n_tokens ids of the text from a byte offset, tokenized as `kvarn eval` does
    (n_tokens * 16 bytes, no bos)."""
    b = text.encode() if isinstance(text, str) else text
    ids = model.tokenize(b[offset:offset + n_tokens * 16], add_bos=False)
    if ids.size < n_tokens:
        raise ValueError(f"only {ids.size} tokens")
    return ids[:n_tokens]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Rows of logits -> log-probabilities, max-shifted, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    mx = x.max(axis=-1, keepdims=True)
    return x - (mx + np.log(np.exp(x - mx).sum(axis=-1, keepdims=True)))


def compare(exact: np.ndarray, test: np.ndarray, next_tokens: np.ndarray,
            exact_log_softmax: np.ndarray | None = None) -> dict:
    """Per position (rows): KL(exact || test), top-1 agreement, -log p(next) under both
    (next token -1: none). exact_log_softmax: log_softmax(exact) if already computed."""
    le = log_softmax(exact) if exact_log_softmax is None else exact_log_softmax
    lt = log_softmax(test)
    kl = np.maximum((np.exp(le) * (le - lt)).sum(axis=-1), 0.0)
    agree = np.argmax(exact, axis=-1) == np.argmax(test, axis=-1)
    has = next_tokens >= 0
    rows = np.arange(len(next_tokens))
    nxt = np.where(has, next_tokens, 0)
    return {"kl": kl, "top1": agree, "has_next": has, "nll_exact": -le[rows, nxt],
            "nll_test": -lt[rows, nxt]}


def _percentile(v, pct):
    return float(np.percentile(v, pct)) if len(v) else 0.0


def pseudo_decode(model: Model, tokens, cache_types, schedules=("accumulated", "static"),
                  chunk: int = 128, bucket: int = 256, threads: int = 1,
                  on_logits=None) -> list:
    """Runs the text in chunks of `chunk` tokens (one cache step each) on an exact f32 cache and
    on every (schedule, cache type), as `kvarn eval` does; returns one dict per case in
    eval.json's order and field names (cache_type, schedule, kl_mean, top1_agreement,
    ppl_exact, ppl_test, buckets with kl_mean/kl_p90/kl_p99, top1_agreement, ppl_*,
    attn_mae_per_layer, attn_mae_mean). on_logits(case, pos0, exact, test), if given, sees
    every chunk's logits [n][n_vocab] of both runs (for metrics of one's own). The key-error
    split is not reproduced (it reads the cache's stored keys, which the C API does not
    expose)."""
    tokens = np.asarray(tokens, dtype=np.int32)
    n_tokens = tokens.size
    L = model.info["n_layers"]
    cases = [(c, s == "static") for s in schedules for c in cache_types]
    exact = model.create_cache("f32", n_tokens + 1, 8 << 30)
    exact_seq = exact.add_sequence()
    states = []
    for codec, _ in cases:
        c = model.create_cache(codec, n_tokens + 1, 8 << 30)
        states.append((c, c.add_sequence()))
    per_case = [{"kl": [], "top1": [], "has_next": [], "nll_exact": [], "nll_test": [],
                 "pos": [], "mae": {}} for _ in cases]
    for pos0 in range(0, n_tokens, chunk):
        ids = tokens[pos0:pos0 + chunk]
        n = ids.size
        ek, ev, ea = {}, {}, {}

        def keep_kv(layer, k, v):
            ek[layer], ev[layer] = k.copy(), v.copy()

        def keep_att(layer, a):
            ea[layer] = a.copy()

        exact_logits = model.forward(exact, exact_seq, ids, "all", threads, keep_kv, keep_att)
        exact_ls = log_softmax(exact_logits)  # once for every case, as kvarn eval does
        nxt = np.array([tokens[p + 1] if p + 1 < n_tokens else -1
                        for p in range(pos0, pos0 + n)], dtype=np.int64)
        for ci, ((cache, seq), (_, static), acc) in enumerate(zip(states, cases, per_case)):
            def inject(layer, k, v):
                if static:  # the exact model's K/V go into the cache under test
                    k[...] = ek[layer]
                    v[...] = ev[layer]

            def mae(layer, a):
                # Per position: sum over channels of |a - e| in float64, as eval does.
                acc["mae"].setdefault(layer, []).append(
                    np.abs(a.astype(np.float64) - ea[layer]).sum(axis=1))

            test_logits = model.forward(cache, seq, ids, "all", threads, inject, mae)
            if on_logits is not None:
                on_logits(ci, pos0, exact_logits, test_logits)
            r = compare(exact_logits, test_logits, nxt, exact_ls)
            for key in ("kl", "top1", "has_next", "nll_exact", "nll_test"):
                acc[key].append(r[key])
            acc["pos"].append(np.arange(pos0, pos0 + n))
    out = []
    qd = model.info["n_heads"] * model.info["head_dim"]
    for (codec, static), acc, (cache, _) in zip(cases, per_case, states):
        cat = {k: np.concatenate(acc[k]) for k in ("kl", "top1", "has_next", "nll_exact",
                                                  "nll_test", "pos")}
        mae = {l: np.concatenate(v) for l, v in acc["mae"].items()}  # [positions] per layer
        j = {"cache_type": cache.codec_name, "schedule": "static" if static else "accumulated",
             "buckets": []}
        for b in range(0, n_tokens, bucket):
            sel = (cat["pos"] >= b) & (cat["pos"] < b + bucket)
            nll = sel & cat["has_next"]
            cnt = max(int(nll.sum()), 1)
            per_layer = [float(mae[l][sel].sum() / (sel.sum() * qd)) for l in range(L)]
            j["buckets"].append({
                "begin": b, "end": b + int(sel.sum()),
                "kl_mean": float(cat["kl"][sel].mean()),
                "kl_p90": _percentile(cat["kl"][sel], 90),
                "kl_p99": _percentile(cat["kl"][sel], 99),
                "top1_agreement": float(cat["top1"][sel].mean()),
                "ppl_exact": float(np.exp(cat["nll_exact"][nll].sum() / cnt)),
                "ppl_test": float(np.exp(cat["nll_test"][nll].sum() / cnt)),
                "attn_mae_per_layer": per_layer,
                "attn_mae_mean": float(np.mean(per_layer)),
            })
        has = cat["has_next"]
        j["kl_mean"] = float(cat["kl"].mean())
        j["top1_agreement"] = float(cat["top1"].mean())
        j["ppl_exact"] = float(np.exp(cat["nll_exact"][has].sum() / max(int(has.sum()), 1)))
        j["ppl_test"] = float(np.exp(cat["nll_test"][has].sum() / max(int(has.sum()), 1)))
        out.append(j)
    return out


def generation(model: Model, prompt_ids, n_steps: int, cache_type: str, threads: int = 1) -> dict:
    """Free-running greedy generation with the exact cache and with cache_type, the prompt fed in
    chunks of 256 (as `kvarn eval` does); first step whose tokens differ, agreement, and the ids."""
    def greedy(codec):
        cache = model.create_cache(codec, len(prompt_ids) + n_steps + 1, 8 << 30)
        seq = cache.add_sequence()
        logits = model.prefill(cache, seq, prompt_ids, batch=256, threads=threads)
        ids = []
        for s in range(n_steps):
            ids.append(int(np.argmax(logits)))
            if s + 1 == n_steps:
                break
            logits = model.forward(cache, seq, [ids[-1]], threads=threads)
        return ids

    exact, test = greedy("f32"), greedy(cache_type)
    diff = [i for i, (a, b) in enumerate(zip(exact, test)) if a != b]
    return {"cache_type": cache_type, "first_divergence": diff[0] if diff else -1,
            "agreement": sum(a == b for a, b in zip(exact, test)) / max(len(exact), 1),
            "exact": exact, "test": test}
