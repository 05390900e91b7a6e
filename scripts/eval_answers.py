#!/usr/bin/env python3
"""Answers issue 6's report questions from a `kvarn eval` eval.json, with the numbers: writes
Markdown to stdout (scripts/eval_runs.sh appends it to the run's directory as answers.md).

Every statement is computed from the file; nothing here is tuned or hand-entered. Standard
library only.

Also draws kl_static_vs_accumulated.png beside EVAL.json (gnuplot): mean KL against position
for kvarn_k4v2, kvarn_k2v2 and kivi_k2v2 under both schedules, the paper's Fig. 4 comparison.

Usage: eval_answers.py EVAL.json
"""
import json
import os
import subprocess
import sys


def bucket_kl(c, i):
    return c["buckets"][i]["kl_mean"]


def encoded_buckets(c, chunk):
    """Buckets whose positions all read encoded history: from position 2G on (block 1 is
    encoded at the step whose query index is 2G; before that a tile cache reads only fp16)."""
    return [b for b in c["buckets"] if b["begin"] >= 2 * chunk and b["end"] > b["begin"]]


def growth(c, chunk):
    """(last / first bucket, mean of the last third / mean of the first third, first, last)
    over the buckets that read encoded history."""
    b = encoded_buckets(c, chunk)
    if len(b) < 2:
        return float("nan"), float("nan"), b[0], b[0]
    third = max(1, len(b) // 3)
    head = sum(x["kl_mean"] for x in b[:third]) / third
    tail = sum(x["kl_mean"] for x in b[-third:]) / third
    return (b[-1]["kl_mean"] / max(b[0]["kl_mean"], 1e-12), tail / max(head, 1e-12), b[0], b[-1])


def plot_schedules(j, path):
    d = os.path.dirname(os.path.abspath(path))
    dat, gp, png = (os.path.join(d, "kl_static_vs_accumulated" + e) for e in (".dat", ".gp", ".png"))
    series = []
    with open(dat, "w") as f:
        for t in ("kvarn_k4v2_g128", "kvarn_k2v2_g128", "kivi_k2v2_g128"):
            for sched in ("accumulated", "static"):
                c = next((c for c in j["cases"] if c["cache_type"] == t and c["schedule"] == sched), None)
                if c is None:
                    continue
                series.append(f"{t} {sched}")
                for b in c["buckets"]:
                    f.write(f"{(b['begin'] + b['end']) // 2} {b['kl_mean']}\n")
                f.write("\n\n")
    with open(gp, "w") as f:
        f.write("set terminal pngcairo size 900,560 noenhanced\n")
        f.write(f"set output '{png}'\nset title 'mean KL(exact || cache): accumulated (solid) vs static (dashed)'\n")
        f.write("set xlabel 'position (tokens)'\nset key outside right\nset logscale y\nset grid\nplot ")
        f.write(", ".join(
            f"'{dat}' index {i} using 1:2 with linespoints lc {i // 2 + 1} dt {1 + i % 2} title '{s}'"
            for i, s in enumerate(series)) + "\n")
    try:
        subprocess.run(["gnuplot", gp], check=True, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        print("eval_answers.py: gnuplot failed; kl_static_vs_accumulated.png not drawn", file=sys.stderr)


def main():
    j = json.load(open(sys.argv[1]))
    plot_schedules(j, sys.argv[1])
    cases = {(c["cache_type"], c["schedule"]): c for c in j["cases"]}
    types = []
    for c in j["cases"]:
        if c["cache_type"] not in types:
            types.append(c["cache_type"])
    out = []
    w = out.append
    w(f"## Answers ({j['model']}, {j['tokens']} tokens, buckets of {j['bucket']})\n")
    chunk = j.get("chunk", 128)
    w("Computed by `scripts/eval_answers.py` from eval.json. KL is the mean KL(exact || cache) of "
      "the next-token distribution. Growth is measured over the buckets from position "
      f"{2 * chunk} on, where a tile cache first reads encoded history (block 1 is encoded at the "
      f"step whose query index is {2 * chunk}): 'first' and 'last' are those buckets' end points, "
      "'thirds' the mean KL of the last third of them over the first third.\n")

    w("### 1. Does KL grow with position under accumulation, and faster than under static?\n")
    w("| cache type | accumulated first → last | thirds | static first → last | thirds | accumulated / static, whole run |")
    w("|---|---|---|---|---|---|")
    grow_acc, faster = 0, 0
    n_q = 0
    for t in types:
        a, s = cases.get((t, "accumulated")), cases.get((t, "static"))
        if not a or not s:
            continue
        _, ga, fa, la = growth(a, chunk)
        _, gs, fs, ls = growth(s, chunk)
        ratio = a["kl_mean"] / max(s["kl_mean"], 1e-12)
        w(f"| {t} | {fa['kl_mean']:.5f} → {la['kl_mean']:.5f} | {ga:.2f}× | "
          f"{fs['kl_mean']:.5f} → {ls['kl_mean']:.5f} | {gs:.2f}× | {ratio:.2f} |")
        if t in ("f16",):
            continue
        n_q += 1
        grow_acc += ga > 1
        faster += ga > gs
    w("")
    w(f"Quantized cache types whose accumulated KL grows (last third over first third > 1): "
      f"{grow_acc} of {n_q}; growing faster than their static KL: {faster} of {n_q}. The last "
      "column is the whole run's mean KL under accumulation over the static one (> 1: errors "
      "that reach the cache add to the errors of reading it).\n")

    w("### 2. Is kvarn 2/2 below kivi 2/2 and hadamard 2/2?\n")
    w("| schedule | kvarn_k2v2 | kivi_k2v2 | hadamard_k2v2 | varn_k2v2 | kvarn below both? |")
    w("|---|---|---|---|---|---|")
    for sched in ("accumulated", "static"):
        vals = {}
        for t in ("kvarn_k2v2_g128", "kivi_k2v2_g128", "hadamard_k2v2_g128", "varn_k2v2_g128"):
            c = cases.get((t, sched))
            vals[t] = c["kl_mean"] if c else float("nan")
        below = vals["kvarn_k2v2_g128"] < vals["kivi_k2v2_g128"] and \
            vals["kvarn_k2v2_g128"] < vals["hadamard_k2v2_g128"]
        w(f"| {sched} | {vals['kvarn_k2v2_g128']:.5f} | {vals['kivi_k2v2_g128']:.5f} | "
          f"{vals['hadamard_k2v2_g128']:.5f} | {vals['varn_k2v2_g128']:.5f} | {'yes' if below else 'no'} |")
    w("")

    w("### 3. kvarn_k4v2 against q8_0 and q4_0\n")
    w(f"| cache type | bytes/token/head (D={j.get('head_dim', '?')}) | accumulated KL | "
      "top-1 agreement | ppl exact → cache |")
    w("|---|---|---|---|---|")
    for t in ("kvarn_k4v2_g128", "q8_0", "q4_0", "kvarn_k2v2_g128"):
        c = cases.get((t, "accumulated"))
        if not c:
            continue
        bpt = c.get("bytes_per_token_head")
        bpt = f"{bpt:.1f}" if bpt is not None else "-"
        w(f"| {t} | {bpt} | {c['kl_mean']:.5f} | {c['top1_agreement']:.4f} | "
          f"{c['ppl_exact']:.3f} → {c['ppl_test']:.3f} |")
    w("\n(bytes: K and V of one token and KV head once its block is encoded, from the cache's own "
      "page accounting, eval.json's bytes_per_token_head.)\n")

    w("### 4. Is the largest-error tail dominated by magnitude error, and does KVarN shrink it?\n")
    w("Keys the case wrote vs what its cache returns, every encoded token, layer and KV head; "
      "E_M = (‖K‖−‖K̂‖)², E_D = 2‖K‖‖K̂‖(1−cos θ); share = ΣE_M / Σ(E_M+E_D) over the tokens "
      "with the largest total error.\n")
    w("| cache type (accumulated) | mean abs norm error | magnitude share: all | top 0.1% | top 1% | top 5% | top 10% |")
    w("|---|---|---|---|---|---|---|")
    for t in types:
        c = cases.get((t, "accumulated"))
        if not c or "key_error" not in c:
            continue
        k = c["key_error"]
        tops = {round(x["fraction"], 4): x["magnitude_share"] for x in k.get("top", [])}
        def g(f):
            v = tops.get(f)
            return f"{v:.3f}" if v is not None else "-"
        w(f"| {t} | {k['mean_abs_norm_error']:.4f} | {k['magnitude_share_all']:.3f} | {g(0.001)} | "
          f"{g(0.01)} | {g(0.05)} | {g(0.1)} |")
    w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
