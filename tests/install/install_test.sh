#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then examples/toy_attention built against the
# installed package twice (CMake's find_package(kvarn), and pkg-config with a plain C compiler)
# and run; also checks that the library exports the C API and nothing else.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR   (registered with ctest in tests/CMakeLists.txt)
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvarn_install_test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
lib=$(find "$tmp/prefix" -name 'libkvarn.so.0' | head -1)
[[ -n $lib ]] || { echo "install: no libkvarn.so.0 under $tmp/prefix"; cat "$tmp/install.log"; exit 1; }
libdir=$(dirname "$lib")
for f in include/kvarn/kvarn.h include/kvarn/kvarn.hpp bin/kvarn; do
  [[ -e $tmp/prefix/$f ]] || { echo "install: $f missing"; exit 1; }
done
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
[[ $soname == libkvarn.so.0 ]] || { echo "install: SONAME is '$soname'"; exit 1; }
others=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRW]/ && $3 !~ /^kvarn_/ {print $3}')
if [[ -n $others ]]; then
  echo "install: libkvarn exports symbols outside the C API:"; echo "$others" | head; exit 1
fi

echo "--- find_package(kvarn)"
cmake -S "$src/examples/toy_attention" -B "$tmp/cmake-build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/configure.log" ||
  { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/cmake-build" >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/cmake-build/toy_attention"

echo "--- pkg-config kvarn"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs kvarn)
cc -std=c11 -O2 -Wall -Werror "$src/examples/toy_attention/toy_attention.c" $flags -lm \
  -o "$tmp/toy_pc"
LD_LIBRARY_PATH="$libdir" "$tmp/toy_pc" >/dev/null
echo "pkg-config build ran ok ($flags)"
