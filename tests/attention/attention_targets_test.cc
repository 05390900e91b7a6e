// The fused kernels on every SIMD level this CPU runs (common/dispatch.h's forcing switch: the
// other suites only run the best one), with the register-tile row counts that the GQA grids do
// not reach (groups of 2, 4 and 5 rows; 10 and 15 rows with three queries).
//  - float kernels (per-token cache types): the double reference, 4x the naive float path's
//    error plus a few ulps (attention_test.cc's rule);
//  - integer path (tile codecs): the double reference over the same dequantized cache, within
//    twice the error of the integer path's scalar form (attention_int_test.cc's rule).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "common/dispatch.h"
#include "common/rng.h"

namespace kvarn {
namespace {

constexpr double kEps = 1.1920929e-7;

class ScopedLevel {
 public:
  explicit ScopedLevel(const std::string& level) { EXPECT_TRUE(SetSimdLevel(level).ok()); }
  ~ScopedLevel() { EXPECT_TRUE(SetSimdLevel("best").ok()); }
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;
};

// Fills one sequence of a 1-layer cache with len key-like tokens (steps of at most 200 tokens,
// so earlier blocks are encoded as in decoding).
std::unique_ptr<KvCache> MakeCache(const std::string& codec, int Hk, int D, int len, int* seq) {
  KvCacheConfig c;
  c.n_layers = 1;
  c.n_kv_heads = Hk;
  c.head_dim = D;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok()) << codec;
  c.max_tokens = len + 1;
  std::unique_ptr<KvCache> cache;
  EXPECT_TRUE(KvCache::Create(c, &cache).ok());
  EXPECT_TRUE(cache->AddSequence(seq).ok());
  Rng rng(11);
  for (int pos = 0; pos < len;) {
    const int n = std::min(200, len - pos);
    EXPECT_TRUE(cache->BeginStep(*seq, n).ok());
    std::vector<float> k(size_t(n) * Hk * D), v(k.size());
    for (int t = 0; t < n; ++t) {
      const double loud = (pos + t) % 37 == 5 ? 6.0 : 1.0;
      for (int i = 0; i < Hk * D; ++i) {
        k[size_t(t) * Hk * D + i] = float(loud * (rng.Normal() + 0.5 * ((i * 7) % 5 - 2)));
        v[size_t(t) * Hk * D + i] = float(rng.Normal());
      }
    }
    EXPECT_TRUE(cache->Write(*seq, 0, pos, n, k.data(), v.data()).ok());
    EXPECT_TRUE(cache->EndStep(*seq).ok());
    pos += n;
  }
  return cache;
}

// Compares Attend (1 and 2 threads) with the double reference on the current level.
void CheckAgainstReference(const KvCache& cache, const SeqView& view, int H, int n_q,
                           const std::string& what) {
  const int D = cache.config().head_dim;
  AttentionParams p;
  p.n_heads = H;
  p.scale = float(1.0 / std::sqrt(double(D)));
  Rng rng(3);
  const int pos0 = view.length() - n_q;
  std::vector<float> q(size_t(n_q) * H * D);
  for (float& x : q) x = float(rng.Normal());
  std::vector<float> ref(q.size()), base(q.size()), fast(q.size(), NAN);
  ASSERT_TRUE(AttendReference<double>(cache, view, 0, p, q.data(), n_q, pos0, ref.data()).ok());
  const bool tile = cache.config().codec.is_tile();
  // The baseline whose own error sizes the tolerance: the naive float path for float kernels,
  // the integer path's scalar form for tile records.
  if (tile) {
    ASSERT_TRUE(AttendFusedReference(cache, view, 0, p, q.data(), n_q, pos0, base.data()).ok());
  } else {
    ASSERT_TRUE(AttendReference<float>(cache, view, 0, p, q.data(), n_q, pos0, base.data()).ok());
  }
  double base_err = 0, out_max = 0;
  for (size_t e = 0; e < ref.size(); ++e) {
    base_err = std::max(base_err, std::fabs(double(base[e]) - ref[e]));
    out_max = std::max(out_max, std::fabs(double(ref[e])));
  }
  const double tol = (tile ? 2 : 4) * base_err + 16 * kEps * std::max(out_max, 1.0);
  for (int threads : {1, 2}) {
    p.n_threads = threads;
    ASSERT_TRUE(Attend(cache, view, 0, p, q.data(), n_q, pos0, fast.data()).ok());
    double err = 0;
    for (size_t e = 0; e < ref.size(); ++e)
      err = std::max(err, std::fabs(double(fast[e]) - ref[e]));
    ASSERT_LE(err, tol) << what << " n_q=" << n_q << " threads=" << threads << " baseline error "
                        << base_err;
  }
}

TEST(AttentionTargets, EveryLevelAndRowGroupMatchesReference) {
  // Lengths: a partial tail block after records (tile codecs) / partial rows (row codecs), with
  // a remainder of 1..3 tokens after the 4-token score groups.
  const std::string codecs[] = {"f16",
                                "f32",
                                "q8_0",
                                "q4_1",
                                "kvarn_k4v2_g128",
                                "kvarn_k4v4_g64",
                                "kivi_k2v2_g128",
                                "kvarn_k2v2_g128"};
  std::vector<std::string> levels = SupportedSimdLevels();
  for (const std::string& level : levels) {
    ScopedLevel scoped(level);
    ASSERT_EQ(level == "reference", SimdTargetName() == "reference") << level;
    for (const std::string& codec : codecs) {
      for (int D : {64, 128}) {
        int seq = 0;
        const int len = 3 * 128 + 2 + (D == 64 ? 1 : 0);
        std::unique_ptr<KvCache> cache = MakeCache(codec, 1, D, len, &seq);
        SeqView view;
        ASSERT_TRUE(cache->View(seq, &view).ok());
        for (int gqa : {2, 4, 5}) {
          for (int n_q : {1, 3}) {
            CheckAgainstReference(
                *cache, view, gqa, n_q,
                level + " " + codec + " D=" + std::to_string(D) + " gqa=" + std::to_string(gqa));
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvarn
