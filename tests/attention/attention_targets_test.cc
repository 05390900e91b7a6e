// The fused kernels on every Highway target this CPU supports (attention_test.cc only runs the
// best one), and the register-tile row counts that attention_test.cc's GQA grid does not reach
// (groups of 2, 4 and 5 rows; 10 and 15 rows with three queries). Same oracle and the same
// tolerance rule as attention_test.cc: the double reference, 4x the naive float path's error
// plus a few ulps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "common/rng.h"
#include "hwy/targets.h"

namespace kvarn {
namespace {

constexpr double kEps = 1.1920929e-7;

// Restricts Highway's dispatch to one target for the scope, then restores the CPU's own set.
class ScopedTarget {
 public:
  explicit ScopedTarget(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~ScopedTarget() { hwy::SetSupportedTargetsForTest(0); }
  ScopedTarget(const ScopedTarget&) = delete;
  ScopedTarget& operator=(const ScopedTarget&) = delete;
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

// Compares Attend (1 and 2 threads) with the double reference on the current target.
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
  std::vector<float> ref(q.size()), naive(q.size()), fast(q.size(), NAN);
  ASSERT_TRUE(AttendReference<double>(cache, view, 0, p, q.data(), n_q, pos0, ref.data()).ok());
  ASSERT_TRUE(AttendReference<float>(cache, view, 0, p, q.data(), n_q, pos0, naive.data()).ok());
  double naive_err = 0, out_max = 0;
  for (size_t e = 0; e < ref.size(); ++e) {
    naive_err = std::max(naive_err, std::fabs(double(naive[e]) - ref[e]));
    out_max = std::max(out_max, std::fabs(double(ref[e])));
  }
  const double tol = 4 * naive_err + 16 * kEps * std::max(out_max, 1.0);
  for (int threads : {1, 2}) {
    p.n_threads = threads;
    ASSERT_TRUE(Attend(cache, view, 0, p, q.data(), n_q, pos0, fast.data()).ok());
    for (size_t e = 0; e < ref.size(); ++e)
      ASSERT_NEAR(fast[e], ref[e], tol) << what << " n_q=" << n_q << " threads=" << threads
                                        << " element " << e << " naive error " << naive_err;
  }
}

TEST(AttentionTargets, EveryTargetAndRowGroupMatchesReference) {
  // Lengths: a partial tail block after records (tile codecs) / partial rows (row codecs), with
  // a remainder of 1..3 tokens after the 4-token score groups.
  const std::string codecs[] = {"f16", "f32", "q8_0", "q4_1", "kvarn_k4v2_g128",
                                "kvarn_k4v4_g64", "kivi_k2v2_g128"};
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    ScopedTarget scoped(target);
    for (const std::string& codec : codecs) {
      for (int D : {64, 128}) {
        int seq = 0;
        const int len = 3 * 128 + 2 + (D == 64 ? 1 : 0);
        std::unique_ptr<KvCache> cache = MakeCache(codec, 1, D, len, &seq);
        SeqView view;
        ASSERT_TRUE(cache->View(seq, &view).ok());
        for (int gqa : {2, 4, 5}) {
          for (int n_q : {1, 3}) {
            CheckAgainstReference(*cache, view, gqa, n_q,
                                  std::string(hwy::TargetName(target)) + " " + codec +
                                      " D=" + std::to_string(D) + " gqa=" + std::to_string(gqa));
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvarn
