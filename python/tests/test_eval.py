"""kvarn.eval against `kvarn eval` on the same model and text: per case and position bucket,
KL, top-1 agreement, perplexities and attention error, and the free-running generation.

The logits behind both are bit-identical (the same C++ forward through the C API), so top-1
agreement and generations must be equal. Only the metric arithmetic differs: numpy's exp,
log and pairwise sums against glibc's and sequential sums, all in float64 (unit roundoff u).
Per position, with V logits, the log-sum-exp of each side differs by at most ~(V + M) u, M the
largest |logit| + |lse|; the KL sum, whose terms' magnitudes add up to S, by at most 2 V u S
more (two summation orders), and its p_j by a relative u |log p_j|. The test computes
b = 2 (2 (V + M) u + 2 V u S + u max|log p| S) for every position from the logits (twice the
estimate, for the constants) and allows the mean of b on KL means, its max on percentiles,
and (V + M) u on the mean negative log-likelihoods behind perplexities. Attention errors are
sums of N exactly computed non-negative float64 terms: relative 2 N u."""

import json
import subprocess

import numpy as np

import kvarn

# Two chunks of 128 with G = 64: the second step's commit encodes tokens 64..127, which the
# second chunk then reads as a record (kvarn eval's minimum is 256 tokens).
N_TOKENS = 256
CODEC = "kvarn_k4v2_g64"


def test_pseudo_decode_and_generation_equal_kvarn_eval(model, smollm2_path, cli, pydocs,
                                                       tmp_path):
    out = tmp_path / "eval"
    subprocess.run([cli, "eval", "-m", smollm2_path, "-n", str(N_TOKENS), "-t", "1",
                    "--cache-types", CODEC, "--schedules", "accumulated", "static",
                    "--gen-tokens", "8", "-o", str(out)],
                   capture_output=True, timeout=300, check=True)
    want = json.loads((out / "eval.json").read_text())
    ids = kvarn.eval.text_tokens(model, pydocs, N_TOKENS)
    u = np.finfo(np.float64).eps / 2
    bounds = {}  # case -> [(position, KL bound, NLL bound)]

    def on_logits(case, pos0, exact, test):
        le, lt = kvarn.eval.log_softmax(exact), kvarn.eval.log_softmax(test)
        V = exact.shape[1]
        m = (np.abs(exact).max(axis=1) + np.abs(le).max(axis=1)
             + np.abs(test).max(axis=1) + np.abs(lt).max(axis=1))
        s = np.abs(np.exp(le) * (le - lt)).sum(axis=1)
        b = 2 * (2 * (V + m) * u + 2 * V * u * s + u * np.abs(le).max(axis=1) * s)
        for i in range(exact.shape[0]):
            bounds.setdefault(case, []).append((pos0 + i, b[i], (V + m[i]) * u))

    got = kvarn.eval.pseudo_decode(model, ids, [CODEC], on_logits=on_logits)
    assert len(got) == len(want["cases"]) == 2
    qd = model.info["n_heads"] * model.info["head_dim"]
    for ci, (g, w) in enumerate(zip(got, want["cases"])):
        assert (g["cache_type"], g["schedule"]) == (w["cache_type"], w["schedule"])
        pos = np.array([p for p, _, _ in bounds[ci]])
        kb = np.array([b for _, b, _ in bounds[ci]])
        nb = np.array([b for _, _, b in bounds[ci]])
        assert g["top1_agreement"] == w["top1_agreement"]
        assert abs(g["kl_mean"] - w["kl_mean"]) <= kb.mean()
        for key in ("ppl_exact", "ppl_test"):
            np.testing.assert_allclose(g[key], w[key], rtol=2 * nb.max(), err_msg=key)
        assert len(g["buckets"]) == len(w["buckets"])
        for gb, wb in zip(g["buckets"], w["buckets"]):
            assert (gb["begin"], gb["end"]) == (wb["begin"], wb["end"])
            assert gb["top1_agreement"] == wb["top1_agreement"]
            sel = (pos >= gb["begin"]) & (pos < gb["end"])
            assert abs(gb["kl_mean"] - wb["kl_mean"]) <= kb[sel].mean(), gb["begin"]
            for key in ("kl_p90", "kl_p99"):
                assert abs(gb[key] - wb[key]) <= kb[sel].max(), key
            for key in ("ppl_exact", "ppl_test"):
                np.testing.assert_allclose(gb[key], wb[key], rtol=2 * nb[sel].max(), err_msg=key)
            n_terms = (gb["end"] - gb["begin"]) * qd
            np.testing.assert_allclose(gb["attn_mae_per_layer"], wb["attn_mae_per_layer"],
                                       rtol=2 * n_terms * u)
            np.testing.assert_allclose(gb["attn_mae_mean"], wb["attn_mae_mean"],
                                       rtol=4 * n_terms * u)
    # The second chunk attends to an encoded tile: the comparison measures quantization, not
    # only fp16 rounding (whose KL is ~1e-7 here).
    assert got[0]["buckets"][-1]["kl_mean"] > 1e-4

    prompt = model.tokenize_chat([("user", "Explain step by step how a hash table works, "
                                   "including collisions and resizing.")])
    gen = kvarn.eval.generation(model, prompt, 8, CODEC)
    w = want["generation"]["cases"][0]
    assert gen["first_divergence"] == w["first_divergence"]
    assert gen["agreement"] == w["agreement"]
    assert model.detokenize(gen["test"]) == w["text"]
