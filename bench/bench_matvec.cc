// MatVec (decode) and MatMul (prefill) throughput of the weights kernels, single thread, beside
// the forced scalar reference. GB/s counts the weight bytes read per product (the quantity a
// decode step is bound by); G MAC/s is rows * cols * tokens per second.
//   build/release/bench/kvarn_bench_matvec --benchmark_filter=MatVec
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "common/dispatch.h"
#include "common/rng.h"
#include "weights/matmul.h"
#include "weights/synthetic.h"

namespace kvarn {
namespace {

struct Problem {
  std::vector<uint8_t> data;
  WeightMatrix w;
  std::vector<float> x, y;
};

Problem Make(GgmlType type, int64_t rows, int64_t cols, int64_t n_tok) {
  Problem p;
  size_t row_bytes = 0;
  if (!GgmlRowBytes(type, cols, &row_bytes).ok()) std::abort();
  p.data.resize(row_bytes * static_cast<size_t>(rows));
  Rng rng(1);
  for (int64_t r = 0; r < rows; ++r) {
    FillRandomRow(type, cols, 0.05f, rng, p.data.data() + static_cast<size_t>(r) * row_bytes);
  }
  p.w = {type, p.data.data(), rows, cols};
  p.x.resize(static_cast<size_t>(cols * n_tok));
  for (float& v : p.x) v = static_cast<float>(rng.Normal());
  p.y.resize(static_cast<size_t>(rows * n_tok));
  return p;
}

void Report(benchmark::State& state, const Problem& p, int64_t n_tok) {
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(iters * static_cast<double>(p.data.size()) / 1e9,
                                              benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(
      iters * static_cast<double>(p.w.rows * p.w.cols * n_tok) / 1e9, benchmark::Counter::kIsRate);
  SetForceReference(false);
}

void BM_MatVec(benchmark::State& state, GgmlType type, bool reference) {
  Problem p = Make(type, state.range(0), state.range(1), 1);
  SetForceReference(reference);
  for (auto _ : state) {
    if (!MatVec(p.w, p.x.data(), p.y.data(), 1).ok()) state.SkipWithError("MatVec failed");
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  Report(state, p, 1);
}

void BM_MatMul(benchmark::State& state, GgmlType type) {
  const int64_t n_tok = state.range(2);
  Problem p = Make(type, state.range(0), state.range(1), n_tok);
  for (auto _ : state) {
    if (!MatMul(p.w, p.x.data(), n_tok, p.y.data(), 1).ok()) state.SkipWithError("MatMul failed");
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  Report(state, p, n_tok);
}

// Qwen2.5-1.5B (hidden 1536, FFN 8960) and SmolLM2-135M (hidden 576, FFN 1536) shapes. The
// k-quants need cols % 256 == 0, which 576 is not (llama.cpp stores such tensors in another type).
void MatVecShapes(benchmark::internal::Benchmark* b, GgmlType type) {
  b->ArgNames({"rows", "cols"});
  for (auto [rows, cols] : {std::pair{1536, 1536}, std::pair{8960, 1536}, std::pair{1536, 8960},
                            std::pair{576, 576}, std::pair{1536, 576}}) {
    if (cols % FindGgmlTypeInfo(type)->block_size == 0) b->Args({rows, cols});
  }
  b->Unit(benchmark::kMicrosecond);
}

void MatMulShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "tok"});
  b->Args({1536, 1536, 64});
  b->Args({8960, 1536, 64});
  b->Unit(benchmark::kMillisecond);
}

int RegisterAll() {
  const GgmlType types[] = {GgmlType::kQ4_K, GgmlType::kQ6_K, GgmlType::kQ4_1, GgmlType::kQ8_0,
                            GgmlType::kF16};
  for (GgmlType type : types) {
    const std::string name = FindGgmlTypeInfo(type)->name;
    MatVecShapes(benchmark::RegisterBenchmark(("MatVec/" + name).c_str(), BM_MatVec, type, false),
                 type);
  }
  for (GgmlType type : types) {
    const std::string name = FindGgmlTypeInfo(type)->name;
    MatVecShapes(
        benchmark::RegisterBenchmark(("MatVecReference/" + name).c_str(), BM_MatVec, type, true),
        type);
  }
  for (GgmlType type : types) {
    const std::string name = FindGgmlTypeInfo(type)->name;
    benchmark::RegisterBenchmark(("MatMul/" + name).c_str(), BM_MatMul, type)->Apply(MatMulShapes);
  }
  return 0;
}

const int kRegistered = RegisterAll();

}  // namespace
}  // namespace kvarn

BENCHMARK_MAIN();
