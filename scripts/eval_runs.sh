#!/usr/bin/env bash
# The `kvarn eval` runs committed under docs/results/ (issue 6): SmolLM2 over 4,096 tokens and
# the Qwen model over 2,048 tokens of the corpus, all eight cache types, both schedules.
# Usage: scripts/eval_runs.sh [smollm2|qwen]...   (default: both). THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}"
THREADS="${THREADS:-0}"
scripts/fetch_models.sh smollm2 qwen corpus >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target kvarn_cli >/dev/null
K=build/release/tools/kvarn/kvarn
for item in "${@:-smollm2 qwen}"; do
  for m in $item; do
    case "$m" in
      smollm2) out=docs/results/eval_smollm2
               /usr/bin/time -f "%e s wall" "$K" eval -t "$THREADS" -n 4096 -o "$out" ;;
      qwen) out=docs/results/eval_qwen
            /usr/bin/time -f "%e s wall" "$K" eval -t "$THREADS" \
              -m "$CACHE/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" -n 2048 -o "$out" ;;
      *) echo "eval_runs.sh: unknown item '$m' (smollm2 or qwen)" >&2; exit 2 ;;
    esac
    python3 scripts/eval_answers.py "$out/eval.json" > "$out/answers.md"
  done
done
