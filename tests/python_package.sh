#!/usr/bin/env bash
# ctest python_package: `pip install ./python` into a temporary directory (offline:
# --no-build-isolation with the venv's pinned setuptools, --no-deps, --no-index), then the
# package's pytest suite (python/tests) against this build's libkvarn.so and kvarn CLI.
# Usage: python_package.sh LIBKVARN KVARN_CLI SOURCE_DIR
# The Python is the project venv's (scripts/fetch_models.sh venv), or $KVARN_PYTHON. Without a
# venv the test is skipped (exit 77); a venv without pytest or numpy is a failure.
set -uo pipefail
lib=$1
cli=$2
src=$3
cache=${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}
py=${KVARN_PYTHON:-$cache/venv/bin/python}
if [[ ! -x $py ]]; then
  echo "python_package: no Python venv at $py (scripts/fetch_models.sh venv): skipped"
  exit 77
fi
if ! "$py" -c "import pytest, numpy, gguf" 2>/dev/null; then
  echo "python_package: $py lacks pytest, numpy or gguf: run scripts/fetch_models.sh venv"
  exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvarn_python_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Build from a copy, so setuptools' build/ and egg-info never land in the source tree.
cp -r "$src/python" "$tmp/src"
rm -rf "$tmp/src/tests"
if ! "$py" -m pip install --no-deps --no-build-isolation --no-index --disable-pip-version-check \
  -q --target "$tmp/site" "$tmp/src" >"$tmp/pip.log" 2>&1; then
  echo "python_package: pip install ./python failed:"
  cat "$tmp/pip.log"
  exit 1
fi
cd "$tmp" || exit 1
KVARN_LIBRARY=$lib KVARN_CLI=$cli KVARN_EXPECT_PACKAGE_IN="$tmp/site" PYTHONPATH="$tmp/site" \
  "$py" -m pytest -q -p no:cacheprovider --rootdir "$src/python" "$src/python/tests"
rc=$?
if ((rc == 5)); then
  echo "python_package: pytest collected no tests"
  exit 1
fi
exit "$rc"
