// Encode/decode time per (K, V) tile pair of one KV head, SIMD beside the forced reference.
// Bytes/s are of the fp16 input a tile holds (2 tensors x G x D x 2 bytes), single thread.
// encode = prepare (rotation + fp16 rounding) + encode_from_pool (VarN, RTN, packing).
//   build/release/bench/kvarn_bench_codec --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "../tests/quant/tile_data.h"
#include "common/dispatch.h"
#include "quant/codec.h"
#include "quant/tile_codec.h"

namespace kvarn {
namespace {

struct Setup {
  std::unique_ptr<Codec> codec;
  std::vector<float> k, v, kd, vd;
  std::vector<uint8_t> record;
  int G = 0, D = 0;
};

Setup Make(const std::string& name, int D) {
  Setup s;
  CodecSpec spec;
  if (!ParseCodecSpec(name, &spec).ok() || !Codec::Create(spec, D, &s.codec).ok()) std::abort();
  s.G = spec.is_tile() ? spec.group : 128;
  s.D = D;
  s.k = testing::MakeTile(testing::TileKind::kRealistic, s.G, D, 1);
  s.v = testing::MakeTile(testing::TileKind::kRandom, s.G, D, 2);
  s.kd.resize(s.k.size());
  s.vd.resize(s.v.size());
  s.record.resize(s.codec->RecordBytes(s.G));
  return s;
}

void Finish(benchmark::State& state, const Setup& s) {
  state.SetBytesProcessed(int64_t(state.iterations()) * 2 * s.G * s.D * 2);
  SetForceReference(false);
}

void BM_Encode(benchmark::State& state, const std::string& name, int D, bool reference) {
  Setup s = Make(name, D);
  SetForceReference(reference);
  for (auto _ : state) {
    if (!s.codec->Encode(s.k.data(), s.v.data(), s.G, s.record.data(), s.record.size()).ok())
      state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(s.record.data());
  }
  Finish(state, s);
}

// Encoding from the rotated fp16 pool (what the cache's commit does): no rotation cost.
void BM_EncodeFromPool(benchmark::State& state, const std::string& name, int D, bool reference) {
  Setup s = Make(name, D);
  CodecSpec spec;
  (void)ParseCodecSpec(name, &spec);
  TileShape shape{D, spec.group, spec.k_bits, spec.v_bits, spec.effective_iters(), spec.rotate};
  std::vector<f16_t> kp(s.k.size()), vp(s.v.size());
  (void)PrepareTokens(shape, s.k.data(), s.G, kp.data());
  (void)PrepareTokens(shape, s.v.data(), s.G, vp.data());
  SetForceReference(reference);
  for (auto _ : state) {
    EncodeTile(shape, kp.data(), vp.data(), s.record.data(), nullptr);
    benchmark::DoNotOptimize(s.record.data());
  }
  Finish(state, s);
}

// The rest of `encode`: rotation and fp16 rounding of the K and V tokens of one tile.
void BM_Prepare(benchmark::State& state, const std::string& name, int D, bool reference) {
  Setup s = Make(name, D);
  CodecSpec spec;
  (void)ParseCodecSpec(name, &spec);
  TileShape shape{D, spec.group, spec.k_bits, spec.v_bits, spec.effective_iters(), spec.rotate};
  std::vector<f16_t> kp(s.k.size()), vp(s.v.size());
  SetForceReference(reference);
  for (auto _ : state) {
    if (!PrepareTokens(shape, s.k.data(), s.G, kp.data()).ok() ||
        !PrepareTokens(shape, s.v.data(), s.G, vp.data()).ok())
      state.SkipWithError("prepare failed");
    benchmark::DoNotOptimize(kp.data());
    benchmark::DoNotOptimize(vp.data());
  }
  Finish(state, s);
}

void BM_Decode(benchmark::State& state, const std::string& name, int D, bool reference) {
  Setup s = Make(name, D);
  (void)s.codec->Encode(s.k.data(), s.v.data(), s.G, s.record.data(), s.record.size());
  SetForceReference(reference);
  for (auto _ : state) {
    (void)s.codec->Decode(s.record.data(), s.record.size(), s.G, s.kd.data(), s.vd.data(),
                          Frame::kRotated);
    benchmark::DoNotOptimize(s.kd.data());
  }
  Finish(state, s);
}

int Register() {
  const char* presets[] = {"kvarn_k4v2_g128", "kvarn_k4v4_g128", "kvarn_k2v2_g128",
                           "kvarn_k4v2_g64", "kvarn_k4v4_g64"};
  for (const char* p : presets) {
    for (int D : {64, 128, 256}) {
      for (bool ref : {false, true}) {
        const std::string suffix = std::string("/") + p + "/D" + std::to_string(D) +
                                   (ref ? "/reference" : "/simd");
        benchmark::RegisterBenchmark(("encode" + suffix).c_str(), BM_Encode, p, D, ref);
        benchmark::RegisterBenchmark(("encode_from_pool" + suffix).c_str(), BM_EncodeFromPool,
                                     p, D, ref);
        benchmark::RegisterBenchmark(("prepare" + suffix).c_str(), BM_Prepare, p, D, ref);
        benchmark::RegisterBenchmark(("decode" + suffix).c_str(), BM_Decode, p, D, ref);
      }
    }
  }
  return 0;
}
const int registered = Register();

}  // namespace
}  // namespace kvarn

BENCHMARK_MAIN();
