// Fused attention over the per-token cache types (f32, f16, q8_0, q4_0, q4_1: float kernels)
// against a double-precision reference that dequantizes the same cache with the codec's decoder
// and attends (op test, spec §6.2). Tile codecs take the integer path: attention_int_test.cc.
// How to add a case: extend the codec list or the Combine() grid; lengths are swept inside.
#include "attention/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/dispatch.h"
#include "common/rng.h"

namespace kvarn {
namespace {

constexpr double kEps = 1.1920929e-7;

struct Fixture {
  std::unique_ptr<KvCache> cache;
  int seq = 0;
  int H = 0, Hk = 0, D = 0;
  Rng rng{5};

  Fixture(const std::string& codec, int D_, int Hk_, int gqa) : H(Hk_ * gqa), Hk(Hk_), D(D_) {
    KvCacheConfig c;
    c.n_layers = 2;
    c.n_kv_heads = Hk;
    c.head_dim = D;
    EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok()) << codec;
    c.max_tokens = 8192;
    EXPECT_TRUE(KvCache::Create(c, &cache).ok());
    EXPECT_TRUE(cache->AddSequence(&seq).ok());
  }

  // Appends n tokens (one step) with key-like data: per-channel offsets, a few loud tokens.
  void Append(int n) {
    const int pos = cache->Length(seq);
    ASSERT_TRUE(cache->BeginStep(seq, n).ok());
    for (int l = 0; l < 2; ++l) {
      std::vector<float> k(size_t(n) * Hk * D), v(k.size());
      for (int t = 0; t < n; ++t) {
        const double loud = (pos + t) % 37 == 5 ? 6.0 : 1.0;
        for (int i = 0; i < Hk * D; ++i) {
          k[size_t(t) * Hk * D + i] = float(loud * (rng.Normal() + 0.5 * ((i * 7) % 5 - 2)));
          v[size_t(t) * Hk * D + i] = float(rng.Normal());
        }
      }
      ASSERT_TRUE(cache->Write(seq, l, pos, n, k.data(), v.data()).ok());
    }
    ASSERT_TRUE(cache->EndStep(seq).ok());
  }
};

class AttentionTest : public ::testing::TestWithParam<std::tuple<std::string, int, int>> {};

TEST_P(AttentionTest, FusedMatchesDequantizedDoubleReference) {
  const auto [codec, D, gqa] = GetParam();
  const int Hk = 2;
  Fixture f(codec, D, Hk, gqa);
  const int G = f.cache->block_tokens();
#ifdef KVARN_SANITIZER_BUILD
  // Under ASan the long context runs for one shape only (same code paths, 1/33 of the work).
  const int longest = (D == 64 && gqa == 3) ? 4096 + 3 : 5 * G + 17;
#else
  const int longest = 4096 + 3;
#endif
  const int lengths[] = {1, G - 1, G, G + 1, 2 * G, 5 * G + 17, longest};
  AttentionParams p;
  p.n_heads = f.H;
  p.scale = float(1.0 / std::sqrt(double(D)));
  for (int len : lengths) {
    // The sanitizer grid repeats 5G+17 as its longest length: a repeat adds nothing.
    if (len <= f.cache->Length(f.seq)) continue;
    f.Append(len - f.cache->Length(f.seq));
    SeqView view;
    ASSERT_TRUE(f.cache->View(f.seq, &view).ok());
    for (int n_q : {1, 3}) {
      if (n_q > len) continue;
      const int pos0 = len - n_q;
      std::vector<float> q(size_t(n_q) * f.H * D);
      for (float& x : q) x = float(f.rng.Normal());
      std::vector<float> ref(q.size()), naive(q.size()), fast(q.size(), NAN);
      ASSERT_TRUE(
          AttendReference<double>(*f.cache, view, 1, p, q.data(), n_q, pos0, ref.data()).ok());
      // The naive baseline: the same dequantized context attended in float.
      ASSERT_TRUE(
          AttendReference<float>(*f.cache, view, 1, p, q.data(), n_q, pos0, naive.data()).ok());
      double naive_err = 0, out_max = 0;
      for (size_t e = 0; e < ref.size(); ++e) {
        naive_err = std::max(naive_err, std::fabs(double(naive[e]) - ref[e]));
        out_max = std::max(out_max, std::fabs(double(ref[e])));
      }
      // Tolerance from the naive float implementation's own error (flash-attention's idiom):
      // the fused path reorders the same float operations (folded scales, online softmax,
      // split merges), so it may be a few times worse, never more; plus a floor of a few ulps
      // of the output for cases where the naive path happens to be exact.
      const double tol = 4 * naive_err + 16 * kEps * std::max(out_max, 1.0);
      for (int threads : {1, 2}) {
        p.n_threads = threads;
        ASSERT_TRUE(Attend(*f.cache, view, 1, p, q.data(), n_q, pos0, fast.data()).ok());
        for (size_t e = 0; e < ref.size(); ++e)
          ASSERT_NEAR(fast[e], ref[e], tol)
              << codec << " D=" << D << " gqa=" << gqa << " len=" << len << " n_q=" << n_q
              << " threads=" << threads << " element " << e << " naive error " << naive_err;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCacheTypes, AttentionTest,
                         ::testing::Combine(::testing::Values("f32", "f16", "q8_0", "q4_0", "q4_1"),
                                            ::testing::Values(64, 128, 256),
                                            ::testing::Values(1, 3, 6, 7)),
                         [](const auto& pi) {
                           return std::get<0>(pi.param) + "_D" +
                                  std::to_string(std::get<1>(pi.param)) + "_gqa" +
                                  std::to_string(std::get<2>(pi.param));
                         });

}  // namespace
}  // namespace kvarn
