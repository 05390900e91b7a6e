#!/usr/bin/env bash
# ctest entry of the openai-client tests: finds the cache's venv (scripts/fetch_models.sh) and
# the model, and runs openai_client_test.py with them. Exit 77 (ctest: skipped) when the venv or
# the model was never fetched, as the C++ model tests skip; a venv without the pinned openai
# package is an error (scripts/fetch_models.sh venv installs it).
# Usage: run_openai_client_test.sh KVARN_BINARY [--quick]
set -euo pipefail
CACHE="${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}"
PY="$CACHE/venv/bin/python"
MODEL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -x "$PY" ]]; then echo "skipped: $PY absent (scripts/fetch_models.sh venv)"; exit 77; fi
if [[ ! -f "$MODEL" ]]; then echo "skipped: $MODEL absent (scripts/fetch_models.sh)"; exit 77; fi
exec "$PY" "$(dirname "$0")/openai_client_test.py" --kvarn "$1" --model "$MODEL" "${@:2}"
