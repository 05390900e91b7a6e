#!/usr/bin/env bash
# The main job (README): builds kvarn and runs the CLI on the default model with the KVarN
# cache. Extra arguments go to the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target kvarn_cli >/dev/null
exec build/release/tools/kvarn/kvarn codec "$@"
