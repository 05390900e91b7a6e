// The KVarN tile codec against its double-precision reference and the spec's properties.
// How to add a case: extend the parameter grid of GoldenTest or add a TEST with a derived bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>
#include <vector>

#include "common/dispatch.h"
#include "common/fp16.h"
#include "quant/codec.h"
#include "quant/tile_codec.h"
#include "quant/tile_ref.h"
#include "tile_data.h"

namespace kvarn {
namespace {

using testing::MakeTile;
using testing::TileKind;
using testing::TileKindName;

constexpr float kEps = 1.1920929e-7f;  // float epsilon

std::vector<f16_t> Prepare(const TileShape& s, const std::vector<float>& x) {
  std::vector<f16_t> out(x.size());
  EXPECT_TRUE(PrepareTokens(s, x.data(), int(x.size() / s.head_dim), out.data()).ok());
  return out;
}

float F16At(const std::vector<uint8_t>& rec, size_t off, size_t i) {
  f16_t h;
  std::memcpy(&h, rec.data() + off + 2 * i, 2);
  return F16ToF32(h);
}

// Unpacked codes of a record, K as [D][G] and V as [G][D].
void Codes(const TileShape& s, const std::vector<uint8_t>& rec, std::vector<uint8_t>* kc,
           std::vector<uint8_t>* vc) {
  const TileRecordLayout L = s.layout();
  kc->resize(size_t(s.head_dim) * s.group);
  vc->resize(size_t(s.head_dim) * s.group);
  for (int d = 0; d < s.head_dim; ++d)
    ref::UnpackRow(rec.data() + L.k_codes() + d * L.k_row_bytes(), s.group, s.k_bits,
                   kc->data() + size_t(d) * s.group);
  for (int t = 0; t < s.group; ++t)
    ref::UnpackRow(rec.data() + L.v_codes() + t * L.v_row_bytes(), s.head_dim, s.v_bits,
                   vc->data() + size_t(t) * s.head_dim);
}

// ------------------------------------------------------------------ Hadamard

std::vector<double> DenseHadamard(int D) {
  // Sylvester: H[i][j] = (-1)^popcount(i & j) / sqrt(D).
  std::vector<double> H(size_t(D) * D);
  for (int i = 0; i < D; ++i)
    for (int j = 0; j < D; ++j)
      H[size_t(i) * D + j] = (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0 : 1.0) / std::sqrt(D);
  return H;
}

class HadamardTest : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(HadamardTest, MatchesDenseSylvesterAndIsInvolution) {
  const auto [D, force_ref] = GetParam();
  SetForceReference(force_ref);
  const std::vector<double> H = DenseHadamard(D);
  Rng rng(static_cast<uint64_t>(D));
  const int n = 5;
  std::vector<float> x(size_t(n) * D);
  for (float& v : x) v = float(rng.Normal() * (rng.Uniform() < 0.05 ? 40 : 1));
  std::vector<float> y = x;
  FwhtBatch(y.data(), n, D);
  for (int t = 0; t < n; ++t) {
    double l1 = 0;
    for (int d = 0; d < D; ++d) l1 += std::fabs(x[size_t(t) * D + d]);
    // log2(D) butterfly stages plus the scaling, each adding at most eps times the running
    // magnitude, which is bounded by sum|x| (scaled by 1/sqrt(D) at the end).
    const double tol = (std::log2(D) + 2) * kEps * l1 / std::sqrt(D);
    for (int i = 0; i < D; ++i) {
      double want = 0;
      for (int j = 0; j < D; ++j) want += H[size_t(i) * D + j] * x[size_t(t) * D + j];
      ASSERT_NEAR(y[size_t(t) * D + i], want, tol) << "D=" << D << " t=" << t << " i=" << i;
    }
  }
  FwhtBatch(y.data(), n, D);  // H*H = I
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-6 * (1 + std::fabs(x[i])) + 2 * (std::log2(D) + 2) * kEps * 40);
  SetForceReference(false);
}

TEST_P(HadamardTest, PreservesDotProducts) {
  const auto [D, force_ref] = GetParam();
  SetForceReference(force_ref);
  Rng rng(7);
  std::vector<float> q(D), k(D);
  for (int i = 0; i < D; ++i) {
    q[i] = float(rng.Normal());
    k[i] = float(rng.Normal());
  }
  double dot = 0, mag = 0;
  for (int i = 0; i < D; ++i) {
    dot += double(q[i]) * k[i];
    mag += std::fabs(double(q[i]) * k[i]);
  }
  std::vector<float> qr = q, kr = k;
  FwhtBatch(qr.data(), 1, D);
  FwhtBatch(kr.data(), 1, D);
  double rdot = 0;
  for (int i = 0; i < D; ++i) rdot += double(qr[i]) * kr[i];
  // Both rotations are accurate to ~log2(D)*eps relative in norm; the product error is bounded
  // by that times |q||k| <= D * max, which mag (sum |q_i k_i|) approximates from below; use
  // the Cauchy-Schwarz bound |q||k| instead.
  double nq = 0, nk = 0;
  for (int i = 0; i < D; ++i) {
    nq += double(q[i]) * q[i];
    nk += double(k[i]) * k[i];
  }
  EXPECT_NEAR(rdot, dot, 2 * (std::log2(D) + 2) * kEps * std::sqrt(nq * nk) * std::sqrt(D));
  (void)mag;
  SetForceReference(false);
}

INSTANTIATE_TEST_SUITE_P(AllSizes, HadamardTest,
                         ::testing::Combine(::testing::Values(64, 128, 256, 512),
                                            ::testing::Bool()));

// ------------------------------------------------------------------ golden comparison

struct GoldenCase {
  int D, G, bits;
  TileKind kind;
};

class GoldenTest : public ::testing::TestWithParam<std::tuple<int, int, int, TileKind, bool>> {};

// The fast path (SIMD, or the float reference when forced) against the double reference on the
// same fp16 pool: at most 16 differing codes per 16384 and fp16 scales within rtol 0.02 (the
// reference kernel's own tolerance, spec §10/§11 item 7).
TEST_P(GoldenTest, FastPathMatchesDoubleReference) {
  const auto [D, G, bits, kind, force_ref] = GetParam();
  TileShape s;
  s.head_dim = D;
  s.group = G;
  s.k_bits = bits;
  s.v_bits = bits;
  s.iters = 8;
  s.rotate = true;
  const auto kx = MakeTile(kind, G, D, 11 + uint64_t(D) * 3 + uint64_t(G));
  const auto vx = MakeTile(kind, G, D, 97 + uint64_t(D) * 5 + uint64_t(G));
  const auto kp = Prepare(s, kx), vp = Prepare(s, vx);
  const TileRecordLayout L = s.layout();
  std::vector<uint8_t> fast(L.bytes(), 0xA5), gold(L.bytes(), 0x5A);
  TileEncodeInfo fi, gi;
  SetForceReference(force_ref);
  EncodeTile(s, kp.data(), vp.data(), fast.data(), &fi);
  SetForceReference(false);
  ref::RefControl ctl;
  ref::EncodeTileRef<double>(s, kp.data(), vp.data(), gold.data(), &gi, &ctl);
  // The spec picks the iterate of least imbalance. When two candidates tie to within float
  // rounding (e.g. a small-magnitude tile, whose iterates are uniform rescalings of the
  // identity), which one wins is decided by rounding noise, and the scales then differ by
  // design. Accept the fast path's choice only if its imbalance, in double, is within the
  // float rounding of the imbalance (~1e-5 relative: sums over <= 512 terms) of the best one,
  // and then compare against the double reference forced to the same iterate.
  auto near_tie = [](const std::vector<double>& imb, int chosen, int best) {
    return std::fabs(imb[size_t(chosen)] - imb[size_t(best)]) <= 1e-5 * imb[size_t(best)];
  };
  if (fi.k_best_iter != gi.k_best_iter || fi.v_best_iter != gi.v_best_iter) {
    ASSERT_TRUE(near_tie(ctl.k_imbalances, fi.k_best_iter, gi.k_best_iter))
        << "K iterate " << fi.k_best_iter << " vs golden " << gi.k_best_iter;
    ASSERT_TRUE(near_tie(ctl.v_imbalances, fi.v_best_iter, gi.v_best_iter))
        << "V iterate " << fi.v_best_iter << " vs golden " << gi.v_best_iter;
    ctl.k_iter = fi.k_best_iter;
    ctl.v_iter = fi.v_best_iter;
    ref::EncodeTileRef<double>(s, kp.data(), vp.data(), gold.data(), nullptr, &ctl);
  }

  std::vector<uint8_t> fk, fv, gk, gv;
  Codes(s, fast, &fk, &fv);
  Codes(s, gold, &gk, &gv);
  size_t diff = 0;
  for (size_t i = 0; i < fk.size(); ++i) diff += fk[i] != gk[i];
  for (size_t i = 0; i < fv.size(); ++i) diff += fv[i] != gv[i];
  const size_t total = fk.size() + fv.size();
  EXPECT_LE(diff * 16384, 16 * total) << diff << " of " << total << " codes differ";

  auto check = [&](size_t off, size_t n, const char* name) {
    for (size_t i = 0; i < n; ++i) {
      const float a = F16At(fast, off, i), b = F16At(gold, off, i);
      ASSERT_LE(std::fabs(a - b), 0.02f * std::fabs(b) + 6e-8f)
          << name << "[" << i << "] fast " << a << " golden " << b;
    }
  };
  check(L.a_k(), D, "a_K");
  check(L.z_k(), D, "z_K");
  check(L.tau_k(), G, "tau_K");
  check(L.gamma_v(), D, "gamma_V");
  check(L.a_v(), G, "a_V");
  check(L.z_v(), G, "z_V");
}

INSTANTIATE_TEST_SUITE_P(
    Grid, GoldenTest,
    ::testing::Combine(::testing::Values(64, 128, 256), ::testing::Values(64, 128),
                       ::testing::Values(2, 4),
                       ::testing::Values(TileKind::kRandom, TileKind::kOutlier,
                                         TileKind::kConstant, TileKind::kZero, TileKind::kTiny,
                                         TileKind::kRealistic),
                       ::testing::Bool()),
    [](const auto& p) {
      return "D" + std::to_string(std::get<0>(p.param)) + "_G" +
             std::to_string(std::get<1>(p.param)) + "_b" +
             std::to_string(std::get<2>(p.param)) + "_" +
             TileKindName(std::get<3>(p.param)) + (std::get<4>(p.param) ? "_ref" : "_simd");
    });

// ------------------------------------------------------------------ properties

TEST(TileCodec, RecordSizesMatchSpec) {
  struct Row { const char* name; int D; size_t bytes; } rows[] = {
      {"kvarn_k4v2_g128", 128, 13824}, {"kvarn_k4v4_g128", 128, 17920},
      {"kvarn_k4v2_g64", 128, 7296},   {"kvarn_k2v2_g128", 128, 9728},
      {"kvarn_k4v4_g64", 128, 9344},   {"kvarn_k4v2_g128", 64, 7296}};
  for (const Row& r : rows) {
    CodecSpec spec;
    ASSERT_TRUE(ParseCodecSpec(r.name, &spec).ok()) << r.name;
    std::unique_ptr<Codec> c;
    ASSERT_TRUE(Codec::Create(spec, r.D, &c).ok()) << r.name;
    EXPECT_EQ(c->RecordBytes(spec.group), r.bytes) << r.name << " D=" << r.D;
  }
}

TEST(TileCodec, ZeroIterationsIsPlainRtnOfRotatedTile) {
  TileShape s;
  s.iters = 0;
  const auto kx = MakeTile(TileKind::kOutlier, s.group, s.head_dim, 3);
  const auto vx = MakeTile(TileKind::kRandom, s.group, s.head_dim, 4);
  const auto kp = Prepare(s, kx), vp = Prepare(s, vx);
  std::vector<uint8_t> rec(s.layout().bytes());
  EncodeTile(s, kp.data(), vp.data(), rec.data(), nullptr);
  const TileRecordLayout L = s.layout();
  const int D = s.head_dim, G = s.group;
  for (int t = 0; t < G; ++t) ASSERT_EQ(F16At(rec, L.tau_k(), t), 1.0f);
  for (int d = 0; d < D; ++d) ASSERT_EQ(F16At(rec, L.gamma_v(), d), 1.0f);
  std::vector<uint8_t> kc, vc, want(std::max(D, G));
  Codes(s, rec, &kc, &vc);
  std::vector<double> row(std::max(D, G));
  size_t diff = 0;
  for (int d = 0; d < D; ++d) {  // K: per channel over tokens
    for (int t = 0; t < G; ++t) row[t] = F16ToF32(kp[size_t(t) * D + d]);
    double step, lo;
    ref::RtnRow(row.data(), G, s.k_bits, want.data(), &step, &lo);
    for (int t = 0; t < G; ++t) diff += want[t] != kc[size_t(d) * G + t];
    EXPECT_NEAR(F16At(rec, L.a_k(), d), step, 1e-3 * step);
    EXPECT_NEAR(F16At(rec, L.z_k(), d), lo, 1e-3 * std::fabs(lo));
  }
  for (int t = 0; t < G; ++t) {  // V: per token over channels
    for (int d = 0; d < D; ++d) row[d] = F16ToF32(vp[size_t(t) * D + d]);
    double step, lo;
    ref::RtnRow(row.data(), D, s.v_bits, want.data(), &step, &lo);
    for (int d = 0; d < D; ++d) diff += want[d] != vc[size_t(t) * D + d];
  }
  // Only exact .5 ties computed in float vs double may differ.
  EXPECT_LE(diff, 2u);
}

TEST(TileCodec, SelectedImbalanceNeverExceedsInitial) {
  for (TileKind kind : {TileKind::kRandom, TileKind::kOutlier, TileKind::kRealistic,
                        TileKind::kTiny, TileKind::kConstant}) {
    for (bool force : {false, true}) {
      SetForceReference(force);
      TileShape s;
      const auto kp = Prepare(s, MakeTile(kind, s.group, s.head_dim, 5));
      const auto vp = Prepare(s, MakeTile(kind, s.group, s.head_dim, 6));
      std::vector<uint8_t> rec(s.layout().bytes());
      TileEncodeInfo info;
      EncodeTile(s, kp.data(), vp.data(), rec.data(), &info);
      EXPECT_LE(info.k_best_imbalance, info.k_initial_imbalance) << TileKindName(kind);
      EXPECT_LE(info.v_best_imbalance, info.v_initial_imbalance) << TileKindName(kind);
      if (kind == TileKind::kOutlier) {
        // One x30 channel and token: normalization must make real progress (spec §4.5:
        // ~25-45 falls to ~2.2-2.6 within a few iterations).
        EXPECT_GT(info.k_initial_imbalance, 10.0f);
        EXPECT_LT(info.k_best_imbalance, 4.0f);
        EXPECT_GT(info.k_best_iter, 0);
      }
    }
  }
  SetForceReference(false);
}

TEST(TileCodec, PackUnpackIsBitExact) {
  Rng rng(9);
  for (int bits : {2, 4, 8}) {
    for (int n : {8, 64, 128, 256, 512}) {
      std::vector<uint8_t> codes(n), back(n), packed(size_t(n) * bits / 8);
      for (auto& c : codes) c = uint8_t(rng.Next() % (1u << bits));
      ref::PackRow(codes.data(), n, bits, packed.data());
      ref::UnpackRow(packed.data(), n, bits, back.data());
      ASSERT_EQ(codes, back) << bits << " bits, n=" << n;
    }
  }
  // Layout: 4-bit even index in the low nibble; 2-bit index 4j+i at bits 2i..2i+1.
  const uint8_t c4[2] = {0x3, 0xC};
  uint8_t p = 0;
  ref::PackRow(c4, 2, 4, &p);
  EXPECT_EQ(p, 0xC3);
  const uint8_t c2[4] = {1, 2, 3, 0};
  ref::PackRow(c2, 4, 2, &p);
  EXPECT_EQ(p, 0x39);  // 01 | 10<<2 | 11<<4 | 00<<6
}

// The SIMD path packs K codes by a different route (integer sums, then a byte transpose):
// decoding its record with the reference decoder must agree with the SIMD decoder exactly.
TEST(TileCodec, SimdAndReferenceDecodersAgree) {
  for (int bits : {2, 4, 8}) {
    TileShape s;
    s.k_bits = bits;
    s.v_bits = bits;
    const auto kp = Prepare(s, MakeTile(TileKind::kRealistic, s.group, s.head_dim, 21));
    const auto vp = Prepare(s, MakeTile(TileKind::kRandom, s.group, s.head_dim, 22));
    std::vector<uint8_t> rec(s.layout().bytes());
    EncodeTile(s, kp.data(), vp.data(), rec.data(), nullptr);
    const size_t n = size_t(s.group) * s.head_dim;
    std::vector<float> k1(n), v1(n), k2(n), v2(n);
    DecodeTile(s, rec.data(), k1.data(), v1.data());
    ref::DecodeTileRef(s, rec.data(), k2.data(), v2.data());
    for (size_t i = 0; i < n; ++i) {
      // Same fp32 formula; only FMA contraction may differ: one rounding of the product.
      ASSERT_NEAR(k1[i], k2[i], 2 * kEps * std::fabs(k2[i]) + 1e-30f) << i;
      ASSERT_NEAR(v1[i], v2[i], 2 * kEps * std::fabs(v2[i]) + 1e-30f) << i;
    }
  }
}

// Every reconstructed element lies within half a quantization step of its input (in the
// rotated frame), plus the fp16 rounding of the three stored factors.
TEST(TileCodec, ReconstructionWithinHalfStep) {
  for (TileKind kind : {TileKind::kRandom, TileKind::kOutlier, TileKind::kRealistic,
                        TileKind::kTiny, TileKind::kConstant}) {
    for (int bits : {2, 4}) {
      TileShape s;
      s.k_bits = bits;
      s.v_bits = bits;
      const int D = s.head_dim, G = s.group;
      const auto kp = Prepare(s, MakeTile(kind, G, D, 31));
      const auto vp = Prepare(s, MakeTile(kind, G, D, 32));
      const TileRecordLayout L = s.layout();
      std::vector<uint8_t> rec(L.bytes());
      EncodeTile(s, kp.data(), vp.data(), rec.data(), nullptr);
      std::vector<float> k(size_t(G) * D), v(size_t(G) * D);
      DecodeTile(s, rec.data(), k.data(), v.data());
      const double u = 1.0 / 2048;  // fp16 unit roundoff
      for (int t = 0; t < G; ++t) {
        for (int d = 0; d < D; ++d) {
          const size_t i = size_t(t) * D + d;
          const double tau = F16At(rec, L.tau_k(), t), a = F16At(rec, L.a_k(), d);
          const double zk = F16At(rec, L.z_k(), d);
          const double qmax = (1 << bits) - 1;
          const double kb = (0.5 * a + 3 * u * (qmax * a + std::fabs(zk))) * tau * (1 + 3 * u);
          ASSERT_LE(std::fabs(k[i] - F16ToF32(kp[i])), kb + 1e-6 * std::fabs(k[i]))
              << TileKindName(kind) << " K t=" << t << " d=" << d;
          const double g = F16At(rec, L.gamma_v(), d), av = F16At(rec, L.a_v(), t);
          const double zv = F16At(rec, L.z_v(), t);
          const double vb = (0.5 * av + 3 * u * (qmax * av + std::fabs(zv))) * g * (1 + 3 * u);
          ASSERT_LE(std::fabs(v[i] - F16ToF32(vp[i])), vb + 1e-6 * std::fabs(v[i]))
              << TileKindName(kind) << " V t=" << t << " d=" << d;
        }
      }
    }
  }
}

TEST(TileCodec, AllZeroTileDecodesToExactZeros) {
  for (bool force : {false, true}) {
    SetForceReference(force);
    CodecSpec spec;
    std::unique_ptr<Codec> c;
    ASSERT_TRUE(Codec::Create(spec, 128, &c).ok());
    std::vector<float> z(128 * 128, 0.0f), k(z.size(), 1.0f), v(z.size(), 1.0f);
    std::vector<uint8_t> rec(c->RecordBytes(128));
    ASSERT_TRUE(c->Encode(z.data(), z.data(), 128, rec.data(), rec.size()).ok());
    ASSERT_TRUE(c->Decode(rec.data(), rec.size(), 128, k.data(), v.data()).ok());
    for (size_t i = 0; i < z.size(); ++i) {
      ASSERT_EQ(k[i], 0.0f);
      ASSERT_EQ(v[i], 0.0f);
    }
  }
  SetForceReference(false);
}

TEST(TileCodec, RejectsNonFiniteInput) {
  CodecSpec spec;
  std::unique_ptr<Codec> c;
  ASSERT_TRUE(Codec::Create(spec, 128, &c).ok());
  for (bool force : {false, true}) {
    SetForceReference(force);
    for (float bad : {NAN, INFINITY, -INFINITY, 1e30f}) {
      std::vector<float> k = MakeTile(TileKind::kRandom, 128, 128, 1), v = k;
      k[5 * 128 + 17] = bad;
      std::vector<uint8_t> rec(c->RecordBytes(128));
      const Status st = c->Encode(k.data(), v.data(), 128, rec.data(), rec.size());
      ASSERT_EQ(st.code(), StatusCode::kNonFinite) << bad;
      // The message names where: tensor, token, and (for NaN/Inf) the channel.
      EXPECT_NE(st.message().find("K"), std::string::npos) << st.message();
      EXPECT_NE(st.message().find("token 5"), std::string::npos) << st.message();
    }
  }
  SetForceReference(false);
}

TEST(TileCodec, RejectsUnsupportedShapes) {
  CodecSpec spec;
  std::unique_ptr<Codec> c;
  for (int D : {0, 32, 80, 96, 192, 1024}) {
    const Status st = Codec::Create(spec, D, &c);
    EXPECT_EQ(st.code(), StatusCode::kUnsupported) << D;
    EXPECT_NE(st.message().find(std::to_string(D)), std::string::npos) << st.message();
  }
  ASSERT_TRUE(Codec::Create(spec, 128, &c).ok());
  std::vector<float> x(100 * 128);
  std::vector<uint8_t> rec(c->RecordBytes(128));
  EXPECT_EQ(c->Encode(x.data(), x.data(), 100, rec.data(), rec.size()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Encode(x.data(), x.data(), 128, rec.data(), rec.size() - 1).code(),
            StatusCode::kBufferTooSmall);
}

// Spec §4.5/§11 item 10: small-magnitude tiles leave VarN inactive (uniform scales, since
// log-scales cannot go below -0.3); one 10x column gets a column scale of order 10.
TEST(TileCodec, MagnitudeDependenceOfNormalization) {
  TileShape s;
  const int D = s.head_dim, G = s.group;
  const TileRecordLayout L = s.layout();
  std::vector<uint8_t> rec(L.bytes());
  {
    const auto kp = Prepare(s, MakeTile(TileKind::kTiny, G, D, 41));
    EncodeTile(s, kp.data(), kp.data(), rec.data(), nullptr);
    const float tau0 = F16At(rec, L.tau_k(), 0);
    for (int t = 0; t < G; ++t) ASSERT_EQ(F16At(rec, L.tau_k(), t), tau0);
    for (int d = 0; d < D; ++d) ASSERT_EQ(F16At(rec, L.gamma_v(), d), tau0);
    EXPECT_TRUE(tau0 == 1.0f || tau0 == F16ToF32(F32ToF16(std::exp(-0.3f)))) << tau0;
  }
  {
    // V tile (no rotation, so the column stays an outlier): one channel x10.
    s.rotate = false;
    auto x = MakeTile(TileKind::kRandom, G, D, 42);
    for (int t = 0; t < G; ++t) x[size_t(t) * D + 7] *= 10.0f;
    const auto p = Prepare(s, x);
    EncodeTile(s, p.data(), p.data(), rec.data(), nullptr);
    const float g7 = F16At(rec, L.gamma_v(), 7);
    float others = 0;
    for (int d = 0; d < D; ++d) others = std::max(others, d == 7 ? 0.0f : F16At(rec, L.gamma_v(), d));
    EXPECT_GT(g7, 5.0f);
    EXPECT_LT(g7, 20.0f);
    EXPECT_LT(others, 2.0f);
  }
}

}  // namespace
}  // namespace kvarn
