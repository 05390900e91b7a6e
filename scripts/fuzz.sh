#!/usr/bin/env bash
# Runs one libFuzzer target for a given time:
#   scripts/fuzz.sh TARGET SECONDS [extra libFuzzer flags...]
# TARGET is gguf_fuzz, tokenizer_fuzz, record_fuzz or session_fuzz (fuzz/*.cc). Builds the
# "fuzz" preset (clang, -fsanitize=fuzzer,address,undefined) into $KVARN_FUZZ_BUILD (default
# build/fuzz), then fuzzes starting from the committed seeds in fuzz/corpus/TARGET. New inputs go to
# $KVARN_FUZZ_WORK/TARGET/corpus (default build/fuzz-work; never into the committed seeds),
# crash reproducers to $KVARN_FUZZ_WORK/TARGET/, the log to $KVARN_FUZZ_WORK/TARGET/fuzz.log.
# Needs clang and its runtimes (Debian: clang, libclang-rt-14-dev); scripts/test.sh does not.
# Exits non-zero when the fuzzer found a crash, leak, timeout or sanitizer report.
# Reproduce one finding: build/fuzz/fuzz/TARGET path/to/crash-file
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# < 2)); then
  echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2
case "$target" in
  gguf_fuzz | tokenizer_fuzz | record_fuzz | session_fuzz) ;;
  *)
    echo "fuzz: unknown target '$target' (gguf_fuzz, tokenizer_fuzz, record_fuzz, session_fuzz)" >&2
    exit 2
    ;;
esac

build=${KVARN_FUZZ_BUILD:-build/fuzz}
work=${KVARN_FUZZ_WORK:-build/fuzz-work}/$target
if [[ ! -f $build/build.ninja ]]; then
  cmake --preset fuzz -B "$build" >/dev/null
fi
cmake --build "$build" --target "$target" -j "$(nproc)"

mkdir -p "$work/corpus"
# -rss_limit_mb: a hostile count must fail validation, not allocate gigabytes.
# -max_len: GGUF seeds are a few KiB; records up to 512*... bytes (kvarn D=256 records are 28 KiB).
max_len=65536
[[ $target == tokenizer_fuzz ]] && max_len=4096
set +e
"$build/fuzz/$target" "$work/corpus" "fuzz/corpus/$target" \
  -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 \
  -print_final_stats=1 -artifact_prefix="$work/" "$@" 2>&1 | tee "$work/fuzz.log"
rc=${PIPESTATUS[0]}
set -e
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$work/fuzz.log" || true
exit "$rc"
