#!/usr/bin/env bash
# The main job (README): builds kvarn and runs the CLI on the default model with the KVarN
# cache. Extra arguments go to the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target kvarn_cli >/dev/null
# No arguments: a short greedy chat on the default model (fetched if absent) with the default
# KVarN cache (kvarn_k4v2_g128).
if [[ $# -eq 0 ]]; then
  set -- --chat -p "Why is the sky blue? Answer in three sentences." -n 200 --temp 0
fi
exec build/release/tools/kvarn/kvarn run "$@"
