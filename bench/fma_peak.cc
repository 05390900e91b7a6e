// The machine's float multiply-add peak on one core, for judging how close a kernel runs to it
// (BENCHMARKS.md quotes kernels as a fraction of this figure). Ten independent chains of 256-bit
// FMAs hide the FMA latency, so the loop is bound by FMA throughput alone. x86-64 with AVX2+FMA
// only (the machine this project measures on); built only there.
//
// Usage: kvarn_fma_peak [repetitions]   prints GFLOP/s of each repetition and their median.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int kChains = 10;
constexpr long kIters = 100'000'000;

double OneRun() {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + static_cast<float>(i) * 1e-7f);
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIters; ++i) {
#pragma GCC unroll 10
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Use the results so the loop cannot be removed.
  float sink = 0;
  for (int j = 0; j < kChains; ++j) sink += _mm256_cvtss_f32(acc[j]);
  if (sink == 12345.0f) std::puts("");
  return static_cast<double>(kIters) * kChains * 8 * 2 / s / 1e9;  // 8 lanes, 2 FLOP per FMA
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  std::vector<double> g;
  for (int r = 0; r < reps; ++r) {
    g.push_back(OneRun());
    std::printf("run %d: %.2f GFLOP/s\n", r, g.back());
  }
  std::sort(g.begin(), g.end());
  std::printf("one core, 256-bit FMA, %d chains: median %.2f GFLOP/s over %d runs\n", kChains,
              g[g.size() / 2], reps);
  return 0;
}
