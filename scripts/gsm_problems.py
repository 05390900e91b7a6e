#!/usr/bin/env python3
"""Writes the GSM-style task of `kvarn eval --gsm` (issue 6, docs/eval.md): grade-school math
problems generated offline by reasoning-gym's `gsm_symbolic` with fixed seeds, and a few-shot
prefix of worked examples from a disjoint seed.

Output JSON: {"generator", "seed", "fewshot_seed", "fewshot": PREFIX, "problems": [{"id",
"question", "answer"}]}. The prefix is "Question: Q\\nAnswer: COT\\n#### N\\n\\n" per example, in
the format of GSM8K's worked solutions (which gsm_symbolic reproduces in `answer_cot`); a problem
is posed as "Question: Q\\nAnswer:" after it, and its answer is the number after "####".

Usage: gsm_problems.py OUT.json [--n 60] [--seed 1234] [--shots 8] [--fewshot-seed 99]
"""
import argparse
import importlib.metadata
import json

from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import (GSMSymbolicDataset,
                                                                GSMSymbolicDatasetConfig)

# reasoning-gym appends this to every question; the few-shot format already says what to give.
SUFFIX = " Give the result as your final answer. Do not include units."


def clean(q: str) -> str:
    return q[:-len(SUFFIX)] if q.endswith(SUFFIX) else q


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--fewshot-seed", type=int, default=99)
    a = ap.parse_args()

    test = GSMSymbolicDataset(GSMSymbolicDatasetConfig(seed=a.seed, size=a.n))
    shots = GSMSymbolicDataset(GSMSymbolicDatasetConfig(seed=a.fewshot_seed, size=4 * a.shots))
    problems, seen = [], set()
    for i in range(a.n):
        e = test[i]
        q = clean(e["question"])
        seen.add(q)
        problems.append({"id": i, "question": q, "answer": str(e["answer"])})
    prefix, used_templates = [], set()
    for i in range(len(shots)):
        if len(prefix) == a.shots:
            break
        e = shots[i]
        q = clean(e["question"])
        template = shots.task_indices[i]
        # Distinct templates, and never a problem of the test set.
        if q in seen or template in used_templates:
            continue
        used_templates.add(template)
        cot = e["metadata"]["answer_cot"].strip()
        prefix.append(f"Question: {q}\nAnswer: {cot}\n\n")
    if len(prefix) < a.shots:
        raise SystemExit(f"only {len(prefix)} distinct few-shot examples")
    doc = {
        # The distribution's version (reasoning_gym.__version__ of 0.1.25 still says 0.1.19).
        "generator": f"reasoning-gym {importlib.metadata.version('reasoning-gym')} gsm_symbolic",
        "seed": a.seed,
        "fewshot_seed": a.fewshot_seed,
        "fewshot": "".join(prefix),
        "problems": problems,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    print(f"{a.out}: {len(problems)} problems, {len(prefix)} worked examples "
          f"({len(doc['fewshot'])} characters)")


if __name__ == "__main__":
    main()
