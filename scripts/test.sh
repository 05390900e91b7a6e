#!/usr/bin/env bash
# The test command (README; .ci/run calls it): installs dependencies, fetches the pinned
# models and corpus into the cache, builds the release and the sanitizer (ASan+UBSan) builds,
# and runs the whole suite in both. Fails on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/fetch_models.sh

for preset in release asan; do
  echo "=== build: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)"
  echo "=== test: $preset"
  ctest --preset "$preset"
done
