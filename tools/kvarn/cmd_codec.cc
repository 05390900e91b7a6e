// `kvarn codec`: encodes K/V tiles with each codec and prints error statistics and bytes per
// token. Tiles are synthetic (key-like, heavy-tailed channels and a few large-magnitude
// tokens, by default) or read from a file of float32 values.
#include <cmath>
#include <cstring>
#include <iterator>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../../tests/quant/tile_data.h"
#include "commands.h"
#include "quant/codec.h"
#include "quant/distortion.h"

namespace kvarn::cli {
namespace {

struct CodecOptions {
  std::vector<std::string> codecs;
  int head_dim = 128;
  int tiles = 16;
  std::string kind = "realistic";
  std::string input;
  uint64_t seed = 1;
};

// Reads token-major float32 values [n][D] (K, then V of the same shape) from a file.
bool ReadFloats(const std::string& path, int D, std::vector<float>* k, std::vector<float>* v) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "kvarn codec: cannot open %s\n", path.c_str());
    return false;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t n = bytes.size() / sizeof(float);
  if (bytes.size() % (2 * sizeof(float) * size_t(D)) != 0 || n == 0) {
    std::fprintf(stderr,
                 "kvarn codec: %s: %zu bytes is not K and V of whole tokens of %d float32 "
                 "channels\n",
                 path.c_str(), bytes.size(), D);
    return false;
  }
  k->resize(n / 2);
  v->resize(n / 2);
  std::memcpy(k->data(), bytes.data(), n / 2 * sizeof(float));
  std::memcpy(v->data(), bytes.data() + n / 2 * sizeof(float), n / 2 * sizeof(float));
  return true;
}

int Run(const CodecOptions& o) {
  using testing::TileKind;
  TileKind kind = TileKind::kRealistic;
  const std::pair<const char*, TileKind> kinds[] = {
      {"realistic", TileKind::kRealistic}, {"random", TileKind::kRandom},
      {"outlier", TileKind::kOutlier},     {"tiny", TileKind::kTiny},
      {"constant", TileKind::kConstant},   {"zero", TileKind::kZero}};
  bool found = false;
  for (auto& [name, k] : kinds)
    if (o.kind == name) kind = k, found = true;
  if (!found) {
    std::fprintf(stderr, "kvarn codec: unknown --kind '%s'\n", o.kind.c_str());
    return 2;
  }
  const int D = o.head_dim;
  // Inputs in units of 128-token tiles (the tile codecs with G=64 take two per tile).
  std::vector<float> K, V;
  if (!o.input.empty()) {
    if (!ReadFloats(o.input, D, &K, &V)) return 2;
  } else {
    for (int i = 0; i < o.tiles; ++i) {
      auto k = testing::MakeTile(kind, 128, D, o.seed + 2 * uint64_t(i));
      auto v = testing::MakeTile(testing::TileKind::kRandom, 128, D, o.seed + 2 * uint64_t(i) + 1);
      K.insert(K.end(), k.begin(), k.end());
      V.insert(V.end(), v.begin(), v.end());
    }
  }
  const int n_tokens = int(K.size() / size_t(D));
  std::printf("kvarn codec: %d tokens of %s K/V tiles, head_dim %d\n", n_tokens,
              o.input.empty() ? o.kind.c_str() : o.input.c_str(), D);
  std::printf("%-20s %9s %9s %9s %9s %9s %9s %10s %11s %10s\n", "codec", "B/token", "vs_f16",
              "K_SNR_dB", "V_SNR_dB", "K_cos", "K_maxerr", "K_|dnorm|", "E_M/E_T@5%", "E_M/E_T@1%");
  for (const std::string& name : o.codecs) {
    CodecSpec spec;
    std::unique_ptr<Codec> codec;
    Status st = ParseCodecSpec(name, &spec);
    if (st.ok()) st = Codec::Create(spec, D, &codec);
    if (!st.ok()) {
      std::fprintf(stderr, "kvarn codec: %s\n", st.message().c_str());
      return 2;
    }
    const int per = spec.is_tile() ? spec.group : 128;
    const int usable = n_tokens / per * per;
    if (usable == 0) {
      std::fprintf(stderr, "kvarn codec: %s needs at least %d tokens\n", name.c_str(), per);
      return 2;
    }
    std::vector<float> kd(size_t(usable) * D), vd(size_t(usable) * D);
    std::vector<uint8_t> rec(codec->RecordBytes(per));
    for (int t0 = 0; t0 < usable; t0 += per) {
      const size_t off = size_t(t0) * D;
      st = codec->Encode(K.data() + off, V.data() + off, per, rec.data(), rec.size());
      if (st.ok())
        st = codec->Decode(rec.data(), rec.size(), per, kd.data() + off, vd.data() + off);
      if (!st.ok()) {
        std::fprintf(stderr, "kvarn codec: %s: tokens %d..%d: %s\n", name.c_str(), t0,
                     t0 + per - 1, st.message().c_str());
        return 1;
      }
    }
    const size_t n = size_t(usable) * D;
    const Distortion dk = MeasureDistortion(K.data(), kd.data(), n);
    const Distortion dv = MeasureDistortion(V.data(), vd.data(), n);
    std::vector<double> em(usable), ed(usable);
    KeyErrorSplit(K.data(), kd.data(), usable, D, em.data(), ed.data());
    KeyErrorSummary sum;
    st = SummarizeKeyError(em.data(), ed.data(), size_t(usable), {0.05, 0.01}, &sum);
    if (!st.ok()) {
      std::fprintf(stderr, "kvarn codec: %s\n", st.message().c_str());
      return 1;
    }
    const double bpt = codec->BytesPerToken();
    std::printf("%-20s %9.2f %8.2fx %9.2f %9.2f %9.5f %9.4f %10.4f %11.3f %10.3f\n",
                spec.Name().c_str(), bpt, 4.0 * D / bpt, dk.snr_db, dv.snr_db, dk.cosine,
                dk.max_abs_err, sum.mean_abs_norm_err, sum.top[0].magnitude_share,
                sum.top[1].magnitude_share);
  }
  std::printf(
      "B/token: bytes of K+V per token per KV head (records only; sink and tail excluded).\n"
      "K_|dnorm|: mean | ||K|| - ||K^|| | per token (the paper's magnitude error).\n"
      "E_M/E_T@q: share of magnitude error in the total key error of the worst q of tokens.\n");
  return 0;
}

}  // namespace

Runner AddCodecCommand(CLI::App& app) {
  auto o = std::make_shared<CodecOptions>();
  o->codecs = {"kvarn_k2v2_g128", "hadamard_k2v2_g128", "varn_k2v2_g128", "kivi_k2v2_g128",
               "kvarn_k4v2_g128", "kvarn_k4v4_g128", "kvarn_k4v2_g64", "q8_0", "q4_0", "q4_1",
               "f16"};
  CLI::App* c = app.add_subcommand(
      "codec", "encode K/V tiles with each codec; print error statistics and bytes per token");
  c->add_option("-c,--codec", o->codecs, "codecs to compare (names as in --cache-type)");
  c->add_option("-d,--head-dim", o->head_dim, "head dimension")->check(CLI::Range(1, 4096));
  c->add_option("-n,--tiles", o->tiles, "synthetic 128-token tiles")->check(CLI::Range(1, 100000));
  c->add_option("--kind", o->kind, "synthetic data: realistic|random|outlier|tiny|constant|zero");
  c->add_option("-f,--input", o->input,
                "float32 file: K [n][head_dim] then V [n][head_dim], instead of synthetic tiles");
  c->add_option("--seed", o->seed, "seed of the synthetic data");
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
