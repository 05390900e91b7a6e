#!/usr/bin/env bash
# The GSM-style task study of issue 6 (docs/eval.md, "Task accuracy"): generates problems with
# reasoning-gym's gsm_symbolic (pinned, in its own venv in the cache), then runs
# `kvarn eval --gsm` on the Qwen model with f16, kvarn_k4v2, kvarn_k2v2 and kivi 2/2.
#
# Usage: scripts/gsm_study.sh [OUT_DIR] [extra kvarn eval flags...]
#   default OUT_DIR: docs/results/gsm_qwen.  N=50 problems, SEED=1234, SHOTS=8, MAX_TOKENS=256.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}"
OUT="${1:-docs/results/gsm_qwen}"
shift || true
N="${N:-50}" SEED="${SEED:-1234}" SHOTS="${SHOTS:-8}" MAX_TOKENS="${MAX_TOKENS:-256}"
RG_VERSION="0.1.25"

venv="$CACHE/venv-gsm"
if [[ "$(cat "$venv/.kvarn-pins" 2>/dev/null)" != "reasoning-gym==$RG_VERSION" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    "reasoning-gym==$RG_VERSION"
  echo "reasoning-gym==$RG_VERSION" > "$venv/.kvarn-pins"
fi
mkdir -p "$OUT"
problems="$OUT/problems.json"
"$venv/bin/python" scripts/gsm_problems.py "$problems" --n "$N" --seed "$SEED" --shots "$SHOTS"

scripts/fetch_models.sh qwen >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target kvarn_cli >/dev/null
exec build/release/tools/kvarn/kvarn eval -m "$CACHE/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
  --gsm "$problems" --gsm-max-tokens "$MAX_TOKENS" -o "$OUT" "$@"
