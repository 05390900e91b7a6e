#!/usr/bin/env bash
# Installs kvarn's build dependencies from Debian. Idempotent and non-interactive: packages
# already present are left alone, and apt is only called when something is missing.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config   # toolchain
  libhwy-dev                         # Highway: portable SIMD with runtime dispatch
  libgtest-dev libgmock-dev          # GoogleTest
  libbenchmark-dev                   # Google Benchmark
  libcli11-dev                       # CLI11: command-line parsing
  nlohmann-json3-dev                 # JSON: evaluation output, the server's requests and responses
  libcpp-httplib-dev                 # cpp-httplib: the HTTP server of `kvarn serve`
  gnuplot-nox                        # plots of the evaluation reports
  python3 python3-venv python3-pip   # test oracles only (numpy, gguf), never at run time
  unzip ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all build dependencies present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
