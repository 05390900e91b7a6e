#!/usr/bin/env bash
# Builds a pinned llama.cpp (CPU only) outside the repository and runs llama-bench on kvarn's two
# benchmark models, so that kvarn's numbers can be compared with llama.cpp on the same machine,
# models and thread count. See BENCHMARKS.md, section "llama.cpp on this machine".
#
# Usage: scripts/bench_llamacpp.sh [build|server|smollm2|qwen|all]...   (default: all)
#   build    fetch the pinned llama-cpp-python sdist (PyPI), extract its vendor/llama.cpp, and build
#            llama-bench, llama-perplexity and llama-completion (cmake Release, CPU only, -j2, nice)
#   smollm2  build if needed, then llama-bench on SmolLM2-135M-Instruct.Q4_1.gguf
#   qwen     build if needed, then llama-bench on qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   server   build llama-server and llama-cli too (for scripts/bench_serve.py)
#   all      build, smollm2, qwen
#
# Cache: $KVARN_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/kvarn (the models from
# scripts/fetch_models.sh are read from there); llama.cpp lives in $CACHE/llama.cpp/ and results
# (llama-bench markdown, jsonl, and a summary with medians) in $CACHE/llama.cpp/results/<time>/.
# Nothing of llama.cpp (source or binaries) is ever written into the repository.
# Idempotent: a verified sdist is not downloaded again, an extracted tree not extracted again, an
# existing build only rebuilt by cmake/ninja if something changed.
#
# Environment:
#   THREADS=2           llama-bench -t (default 2: the machine has 2 cores)
#   REPS=5              llama-bench -r
#   JOBS=2              build parallelism
#   NICE=10             nice level of the build (the benchmarks themselves run at normal priority)
#   SMOLLM2_DEPTHS, QWEN_DEPTHS   depths of the decode sweep (default 2048,4096,8192)
#   LLAMACPP_WITH_CLI=1 also build llama-cli and llama-server (they need llama.cpp's whole server:
#                       a long build); the `server` command does the same
#   OMP_WAIT_POLICY     passed through to OpenMP (printed in the header); on a loaded machine
#                       'passive' avoids spin-waiting threads (see BENCHMARKS.md)
set -euo pipefail

CACHE="${KVARN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvarn}"
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
JOBS="${JOBS:-2}"
NICE="${NICE:-10}"
SMOLLM2_DEPTHS="${SMOLLM2_DEPTHS:-2048,4096,8192}"
QWEN_DEPTHS="${QWEN_DEPTHS:-2048,4096,8192}"

# The pin: llama-cpp-python's sdist vendors llama.cpp as a git submodule checkout.
LCP_VERSION="0.3.36"
LCP_SDIST="llama_cpp_python-${LCP_VERSION}.tar.gz"
LCP_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# llama.cpp commit of vendor/llama.cpp (the sdist's .git/modules/vendor/llama.cpp/HEAD; also in its
# CHANGELOG: "update llama.cpp to ggml-org/llama.cpp@0c1e57098"); ggml version from ggml/CMakeLists.txt.
LLAMA_COMMIT="0c1e57098bba43ac29e6e3b677cdceebdd22334f"
GGML_VERSION="0.25.3"

SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_FILE="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"

LC_DIR="$CACHE/llama.cpp"
SRC="$LC_DIR/src-$LCP_VERSION"
BUILD="$LC_DIR/build-$LCP_VERSION"
BIN="$BUILD/bin"

TARGETS=(llama-bench llama-perplexity llama-completion)
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=ON
  -DGGML_CUDA=OFF
  -DGGML_VULKAN=OFF
  -DGGML_OPENMP=ON
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DBUILD_SHARED_LIBS=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF
  # The sdist has no usable git metadata: give llama-bench's build_commit explicitly.
  -DLLAMA_BUILD_COMMIT="${LLAMA_COMMIT:0:9}"
  -DLLAMA_BUILD_NUMBER=0
)
# llama-server (scripts/bench_serve.py's comparison) is built with llama-cli: both need the server
# sources, so either the environment variable or the `server` command turns both on.
if [[ "${LLAMACPP_WITH_CLI:-0}" == 1 || " $* " == *" server "* ]]; then
  TARGETS+=(llama-cli llama-server)
  CMAKE_FLAGS+=(-DLLAMA_BUILD_SERVER=ON)
else
  CMAKE_FLAGS+=(-DLLAMA_BUILD_SERVER=OFF)
fi

log() { printf 'bench_llamacpp: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_sdist() {
  mkdir -p "$LC_DIR"
  local f="$LC_DIR/$LCP_SDIST"
  if [[ -f "$f" && "$(sha256_of "$f")" == "$LCP_SHA256" ]]; then
    log "sdist $LCP_SDIST present (sha256 ok)"
    return
  fi
  rm -f "$f"
  local tmp
  tmp="$(mktemp -d "$LC_DIR/dl.XXXXXX")"
  log "downloading llama-cpp-python==$LCP_VERSION sdist from PyPI (pip prepares its metadata: minutes)"
  nice -n "$NICE" "$PYTHON" -m pip download --no-deps --no-binary=:all: --disable-pip-version-check \
    --no-input -q -d "$tmp" "llama-cpp-python==$LCP_VERSION"
  [[ -f "$tmp/$LCP_SDIST" ]] || die "pip did not produce $LCP_SDIST"
  local got
  got="$(sha256_of "$tmp/$LCP_SDIST")"
  [[ "$got" == "$LCP_SHA256" ]] || { rm -rf "$tmp"; die "$LCP_SDIST: sha256 $got, expected $LCP_SHA256"; }
  mv "$tmp/$LCP_SDIST" "$f"
  rm -rf "$tmp"
}

extract_src() {
  if [[ -f "$SRC/.kvarn-extracted" ]]; then
    log "source tree $SRC present"
    return
  fi
  local top="llama_cpp_python-$LCP_VERSION"
  local head
  head="$(tar -xzOf "$LC_DIR/$LCP_SDIST" "$top/.git/modules/vendor/llama.cpp/HEAD" | tr -d '[:space:]')"
  [[ "$head" == "$LLAMA_COMMIT" ]] || die "vendored llama.cpp is at $head, expected $LLAMA_COMMIT"
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  log "extracting $top/vendor/llama.cpp (commit $LLAMA_COMMIT) to $SRC"
  tar -xzf "$LC_DIR/$LCP_SDIST" -C "$SRC.tmp" --strip-components=3 "$top/vendor/llama.cpp"
  # vendor/llama.cpp/.git names the superproject's module dir, which is not extracted. Point it at a
  # path that never exists so that llama.cpp's cmake git queries fail cleanly instead of finding
  # some enclosing repository.
  printf 'gitdir: .git-absent\n' >"$SRC.tmp/.git"
  local v
  v="$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))$/\2/p' "$SRC.tmp/ggml/CMakeLists.txt" | paste -sd.)"
  [[ "$v" == "$GGML_VERSION" ]] || die "ggml version in the tree is '$v', expected $GGML_VERSION"
  printf '%s %s\n' "$LCP_VERSION" "$LLAMA_COMMIT" >"$SRC.tmp/.kvarn-extracted"
  mv "$SRC.tmp" "$SRC"
}

build() {
  fetch_sdist
  extract_src
  local stamp="$BUILD/.kvarn-cmake-flags" want gen=()
  want="$(printf '%s\n' "${CMAKE_FLAGS[@]}")"
  command -v ninja >/dev/null && gen=(-G Ninja)
  if [[ ! -f "$BUILD/CMakeCache.txt" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "configuring $BUILD"
    nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" "${gen[@]}" "${CMAKE_FLAGS[@]}" >"$LC_DIR/cmake-configure.log" 2>&1 \
      || { tail -30 "$LC_DIR/cmake-configure.log" >&2; die "cmake configure failed (log: $LC_DIR/cmake-configure.log)"; }
    printf '%s\n' "$want" >"$stamp"
  fi
  local t0=$SECONDS
  log "building ${TARGETS[*]} (-j$JOBS, nice $NICE)"
  nice -n "$NICE" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
  log "build step done in $((SECONDS - t0)) s"
  "$BIN/llama-bench" --version 2>&1 | sed 's/^/bench_llamacpp: /' >&2 || true
}

ensure_built() {
  local t
  for t in "${TARGETS[@]}"; do
    [[ -x "$BIN/$t" ]] || { build; return; }
  done
}

RESULTS=""
results_dir() {
  if [[ -z "$RESULTS" ]]; then
    RESULTS="$LC_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$RESULTS"
    log "results in $RESULTS"
  fi
}

# bench NAME ARGS...: one llama-bench invocation. Its markdown table goes to stdout (and
# $RESULTS/NAME.md), its jsonl (per-repetition samples) to $RESULTS/NAME.jsonl. A failing
# invocation (e.g. a refused -fa/-ctk combination) is reported and the next one runs.
bench() {
  local name="$1"
  shift
  results_dir
  local cmd=("$BIN/llama-bench" "$@" -t "$THREADS" -r "$REPS" -o md -oe jsonl)
  printf '\n### %s\n\n' "$name"
  printf 'load before: %s\n' "$(uptime)"
  printf '$ %s\n\n' "${cmd[*]/#$CACHE/\$CACHE}"
  local rc=0 TIMEFORMAT='%R %U %S'
  { time { "${cmd[@]}" 2>"$RESULTS/$name.err" | tee "$RESULTS/$name.md" || rc=$?; }; } 2>"$RESULTS/$name.time"
  grep '^{' "$RESULTS/$name.err" >"$RESULTS/$name.jsonl" || true
  grep -v '^{' "$RESULTS/$name.err" >&2 || true
  printf '\nload after: %s\n' "$(uptime)"
  # CPU time llama-bench got per wall second (the warmup and depth prefills included): up to
  # THREADS on an idle machine (less with OMP_WAIT_POLICY=passive, whose threads sleep at barriers).
  awk '{ printf "llama-bench: wall %.0f s, cpu %.0f s, cpu/wall %.2f\n", $1, $2 + $3, ($1 > 0) ? ($2 + $3) / $1 : 0 }' \
    "$RESULTS/$name.time"
  if ((rc != 0)); then
    log "llama-bench failed (rc $rc) for $name"
    printf 'FAILED (rc %d)\n' "$rc" >>"$RESULTS/$name.md"
  fi
  return 0
}

model_path() {
  local f="$CACHE/$1"
  [[ -f "$f" ]] || die "$f missing: run scripts/fetch_models.sh first"
  printf '%s' "$f"
}

# run_model TAG FILE DEPTHS
run_model() {
  local tag="$1" m depths="$3"
  m="$(model_path "$2")"
  ensure_built
  # (a) prompt processing pp512 and decode tg64 after 512 tokens already in the cache
  #     (llama-bench -d 512), f16 KV cache, flash attention off and on.
  bench "$tag-a-pp512-tg64-d512" -m "$m" -p 512 -n 64 -d 512 -ctk f16 -ctv f16 -fa 0,1
  # (b) decode tg32 at long depths, per KV cache type. A quantized V cache needs -fa 1.
  bench "$tag-b-tg32-f16" -m "$m" -p 0 -n 32 -d "$depths" -ctk f16 -ctv f16 -fa 0,1
  bench "$tag-b-tg32-q8_0" -m "$m" -p 0 -n 32 -d "$depths" -ctk q8_0 -ctv q8_0 -fa 1
  bench "$tag-b-tg32-q4_0" -m "$m" -p 0 -n 32 -d "$depths" -ctk q4_0 -ctv q4_0 -fa 1
}

# Summary of all jsonl in $RESULTS: mean ± std (as llama-bench prints it) and the median of the
# per-repetition tokens/s.
summarize() {
  [[ -n "$RESULTS" ]] || return 0
  "$PYTHON" - "$RESULTS" <<'EOF' | tee "$RESULTS/summary.md"
import json, pathlib, statistics, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.jsonl")):
    rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
kv_order = {"f16": 0, "bf16": 1, "q8_0": 2, "q5_1": 3, "q5_0": 4, "q4_1": 5, "q4_0": 6}
def test(r):
    t = "+".join(x for x in (f"pp{r['n_prompt']}" if r["n_prompt"] else "",
                             f"tg{r['n_gen']}" if r["n_gen"] else "") if x)
    return t + (f" @ d{r['n_depth']}" if r["n_depth"] else "")
def cfg(r):
    return f"{r['type_k']}/{r['type_v']} fa{int(r['flash_attn'])}" if str(r['flash_attn']).isdigit() \
        else f"{r['type_k']}/{r['type_v']} fa {r['flash_attn']}"
def key(r):
    return (r["model_filename"], r["n_prompt"] == 0, r["n_depth"], r["n_prompt"],
            kv_order.get(r["type_k"], 9), kv_order.get(r["type_v"], 9), str(r["flash_attn"]))
def med(r):
    return statistics.median(r["samples_ts"])
rows.sort(key=key)
print("\nAll runs: llama-bench's mean ± sample std and the median of the per-repetition t/s.\n")
print("| model | test | ctk/ctv, flash attn | threads | mean ± std t/s | median t/s | reps |")
print("|---|---|---|---:|---:|---:|---:|")
for r in rows:
    print(f"| {pathlib.Path(r['model_filename']).name} | {test(r)} | {cfg(r)} | {r['n_threads']} "
          f"| {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} | {med(r):.2f} | {len(r['samples_ts'])} |")
for model in dict.fromkeys(r["model_filename"] for r in rows):
    mr = [r for r in rows if r["model_filename"] == model]
    cols = list(dict.fromkeys(cfg(r) for r in mr))
    tests = list(dict.fromkeys(test(r) for r in mr))
    cell = {(test(r), cfg(r)): f"{med(r):.2f}" for r in mr}
    print(f"\n{pathlib.Path(model).name}: median t/s\n")
    print("| test | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for t in tests:
        print(f"| {t} | " + " | ".join(cell.get((t, c), "") for c in cols) + " |")
EOF
}

header() {
  printf '## llama.cpp %s (llama-cpp-python %s sdist), ggml %s\n' "${LLAMA_COMMIT:0:9}" "$LCP_VERSION" "$GGML_VERSION"
  printf 'host: %s, %s cores; %s\n' "$(uname -srm)" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  printf 'load: %s\n' "$(uptime)"
  # ggml's CPU threads come from OpenMP here: on a busy machine its spin-waiting threads fight the
  # other processes for the cores; OMP_WAIT_POLICY=passive makes them block instead.
  printf 'threads %s, reps %s, OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s\n' "$THREADS" "$REPS" \
    "${OMP_WAIT_POLICY:-(unset)}" "${GOMP_SPINCOUNT:-(unset)}"
}

main() {
  local cmds=("$@")
  ((${#cmds[@]})) || cmds=(all)
  local c
  for c in "${cmds[@]}"; do
    case "$c" in
      build | server | smollm2 | qwen | all) ;;
      *) die "unknown command '$c' (build|server|smollm2|qwen|all)" ;;
    esac
  done
  for c in "${cmds[@]}"; do
    case "$c" in
      build | server) build ;;
      smollm2) header; run_model smollm2 "$SMOLLM2_FILE" "$SMOLLM2_DEPTHS" ;;
      qwen) header; run_model qwen "$QWEN_FILE" "$QWEN_DEPTHS" ;;
      all)
        build
        header
        run_model smollm2 "$SMOLLM2_FILE" "$SMOLLM2_DEPTHS"
        run_model qwen "$QWEN_FILE" "$QWEN_DEPTHS"
        ;;
    esac
  done
  summarize
}

main "$@"
