// The C API's KV cache as an engine sees it: the step protocol, attention against a naive
// double-precision attention over the exact K/V (q/out layouts, GQA head mapping, causal
// offset), the step checks the API adds, the byte budget and the statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kvarn/kvarn.h"
#include "kvarn/kvarn.hpp"

namespace {

// Deterministic pseudo-random values in [-1, 1) (no kvarn internals here: the test sees the
// library only through its C API).
struct Lcg {
  uint64_t s;
  float Next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float(int64_t(s >> 11) % 2000000) / 1000000.0f - 1.0f;
  }
};

// A toy engine: L layers, keys/values/queries drawn per position; keeps the exact K/V to
// compute the naive attention.
struct Toy {
  int L, Hk, D, H;
  std::vector<std::vector<float>> k, v;  // [L][pos][Hk][D]
  void Token(Lcg& rng) {
    k.resize(size_t(L));
    v.resize(size_t(L));
    for (int l = 0; l < L; ++l)
      for (int i = 0; i < Hk * D; ++i) {
        // Keys with a few large channels, as real keys have.
        k[size_t(l)].push_back(rng.Next() * (i % 16 == 3 ? 6.0f : 1.0f));
        v[size_t(l)].push_back(rng.Next());
      }
  }
  // Naive attention of queries q [n][H][D] at positions pos0.. over layer l, in double.
  std::vector<double> Attend(int l, const std::vector<float>& q, int n, int pos0) const {
    std::vector<double> out(size_t(n) * H * D, 0.0);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < H; ++h) {
        const int kh = h / (H / Hk);
        const int T = pos0 + i + 1;
        std::vector<double> s(static_cast<size_t>(T));
        double mx = -1e300;
        for (int t = 0; t < T; ++t) {
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += double(q[(size_t(i) * H + h) * D + d]) *
                   k[size_t(l)][(size_t(t) * Hk + kh) * D + d];
          s[size_t(t)] = dot * scale;
          mx = std::max(mx, s[size_t(t)]);
        }
        double den = 0;
        for (double& x : s) den += (x = std::exp(x - mx));
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d)
            out[(size_t(i) * H + h) * D + d] +=
                s[size_t(t)] / den * v[size_t(l)][(size_t(t) * Hk + kh) * D + d];
      }
    return out;
  }
};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

// Feeds `steps` (token counts per step) through the C API, then attends n_q queries at the
// end of the sequence for every layer; returns the worst error against the naive attention
// and that of a baseline that ignores the keys (uniform weights: the mean of V).
void RunToy(const char* codec, const std::vector<int>& steps, int n_q, double* err,
            double* uniform_err) {
  Toy toy{2, 2, 64, 6, {}, {}};
  kvarn_cache* c = nullptr;
  ASSERT_EQ(kvarn_cache_init(toy.L, toy.Hk, toy.D, codec, 2048, 0, &c), KVARN_OK)
      << kvarn_last_error();
  int seq = -1;
  ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
  Lcg rng{42};
  int pos = 0;
  std::vector<float> q;
  *err = *uniform_err = 0;
  for (size_t si = 0; si < steps.size(); ++si) {
    const int n = steps[si];
    for (int t = 0; t < n; ++t) toy.Token(rng);
    ASSERT_EQ(kvarn_cache_begin_step(c, seq, n), KVARN_OK) << kvarn_last_error();
    for (int l = toy.L - 1; l >= 0; --l) {  // any layer order
      const float* k = toy.k[size_t(l)].data() + size_t(pos) * toy.Hk * toy.D;
      const float* v = toy.v[size_t(l)].data() + size_t(pos) * toy.Hk * toy.D;
      ASSERT_EQ(kvarn_cache_write(c, seq, l, pos, n, k, v), KVARN_OK) << kvarn_last_error();
    }
    const bool last = si + 1 == steps.size();
    if (last) {  // attend inside the step, as decoding does: the step's own tokens included
      const int nq = std::min(n_q, n);
      const int pos0 = pos + n - nq;
      q.resize(size_t(nq) * toy.H * toy.D);
      for (float& x : q) x = rng.Next() * 2.0f;
      for (int l = 0; l < toy.L; ++l) {
        std::vector<float> out(q.size(), NAN);
        ASSERT_EQ(kvarn_cache_attend(c, seq, l, q.data(), nq, toy.H, pos0, 0.0f, 2, out.data()),
                  KVARN_OK)
            << kvarn_last_error();
        const std::vector<double> ref = toy.Attend(l, q, nq, pos0);
        *err = std::max(*err, MaxAbsDiff(out, ref));
        // Uniform baseline: every query gets the mean of V over its causal range.
        std::vector<float> uni(q.size());
        for (int i = 0; i < nq; ++i)
          for (int h = 0; h < toy.H; ++h)
            for (int d = 0; d < toy.D; ++d) {
              double s = 0;
              const int T = pos0 + i + 1, kh = h / (toy.H / toy.Hk);
              for (int t = 0; t < T; ++t)
                s += toy.v[size_t(l)][(size_t(t) * toy.Hk + kh) * toy.D + d];
              uni[(size_t(i) * toy.H + h) * toy.D + d] = float(s / T);
            }
        *uniform_err = std::max(*uniform_err, MaxAbsDiff(uni, ref));
      }
    }
    ASSERT_EQ(kvarn_cache_end_step(c, seq), KVARN_OK) << kvarn_last_error();
    pos += n;
  }
  int len = 0;
  ASSERT_EQ(kvarn_cache_length(c, seq, &len), KVARN_OK);
  EXPECT_EQ(len, pos);
  kvarn_cache_free(c);
}

// f32 stores the exact values: the only error is float arithmetic (softmax and sums over at
// most ~400 terms of magnitude <= 1, ~400 * 6e-8): below 1e-4. f16 rounds K and V with unit
// roundoff 2^-11: with |q| <= 2, 4 key channels of magnitude <= 6 and 60 of magnitude <= 1,
// a score (scaled by 1/8) moves by at most 2 * (4 * 6 + 60) * 2^-11 / 8 = 0.0103, so softmax
// weights move by a factor within e^(+-0.0206), the output (|V| <= 1) by at most 0.0208, plus
// V's own rounding 2^-11: 0.0213 in the worst case. kvarn_k4v2 quantizes 4-bit K and 2-bit V:
// no analytic bound, but it must beat by far the baseline that ignores the keys.
TEST(CApiCache, AttendMatchesNaiveAttention) {
  for (const std::vector<int>& steps :
       {std::vector<int>{1}, std::vector<int>{7, 1, 1}, std::vector<int>{300, 1, 1, 5},
        std::vector<int>{128, 128, 3}}) {
    double err = 0, uni = 0;
    RunToy("f32", steps, 3, &err, &uni);
    EXPECT_LT(err, 1e-4) << "f32, " << steps.size() << " steps";
    RunToy("f16", steps, 3, &err, &uni);
    EXPECT_LT(err, 0.0213) << "f16";
    if (steps[0] + 1 < 260) continue;  // no record read yet
    RunToy("kvarn_k4v2_g128", steps, 3, &err, &uni);
    EXPECT_LT(err, 0.5 * uni) << "kvarn_k4v2_g128: error " << err << ", uniform " << uni;
    EXPECT_GT(uni, 0.05);  // the baseline is not trivially right
  }
}

TEST(CApiCache, StepProtocolErrorsAreNamed) {
  kvarn_cache* c = nullptr;
  ASSERT_EQ(kvarn_cache_init(2, 1, 64, "kvarn_k4v2_g64", 512, 0, &c), KVARN_OK);
  EXPECT_STREQ(kvarn_cache_codec_name(c), "kvarn_k4v2_g64");
  EXPECT_EQ(kvarn_cache_block_tokens(c), 64);
  int seq = -1;
  ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
  std::vector<float> kv(size_t(4) * 64, 0.5f), q(size_t(2) * 64, 0.1f), out(q.size());
  ASSERT_EQ(kvarn_cache_begin_step(c, seq, 4), KVARN_OK);
  ASSERT_EQ(kvarn_cache_write(c, seq, 0, 0, 4, kv.data(), kv.data()), KVARN_OK);
  ASSERT_EQ(kvarn_cache_write(c, seq, 1, 0, 2, kv.data(), kv.data()), KVARN_OK);
  // Layer 1 has positions 2 and 3 missing: attend and end_step refuse, naming them.
  EXPECT_EQ(kvarn_cache_attend(c, seq, 1, q.data(), 1, 2, 3, 0.0f, 1, out.data()),
            KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvarn_last_error()).find("layer 1 has no K/V for position 2"),
            std::string::npos)
      << kvarn_last_error();
  EXPECT_EQ(kvarn_cache_end_step(c, seq), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvarn_last_error()).find("layer 1 has no K/V for position 2"),
            std::string::npos);
  ASSERT_EQ(kvarn_cache_write(c, seq, 1, 2, 2, kv.data(), kv.data()), KVARN_OK);
  EXPECT_EQ(kvarn_cache_attend(c, seq, 1, q.data(), 1, 2, 3, 0.0f, 1, out.data()), KVARN_OK);
  ASSERT_EQ(kvarn_cache_end_step(c, seq), KVARN_OK);
  // Out-of-range writes, bad heads, NaN.
  ASSERT_EQ(kvarn_cache_begin_step(c, seq, 1), KVARN_OK);
  EXPECT_EQ(kvarn_cache_write(c, seq, 0, 3, 1, kv.data(), kv.data()), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cache_write(c, seq, 2, 4, 1, kv.data(), kv.data()), KVARN_ERR_INVALID_ARGUMENT);
  std::vector<float> nan(64, NAN);
  EXPECT_EQ(kvarn_cache_write(c, seq, 0, 4, 1, nan.data(), kv.data()), KVARN_ERR_NON_FINITE);
  EXPECT_NE(std::string(kvarn_last_error()).find("position 4"), std::string::npos);
  ASSERT_EQ(kvarn_cache_abort_step(c, seq), KVARN_OK);
  int len = 0;
  ASSERT_EQ(kvarn_cache_length(c, seq, &len), KVARN_OK);
  EXPECT_EQ(len, 4);
  EXPECT_EQ(kvarn_cache_attend(c, seq, 0, q.data(), 1, 0, 3, 0.0f, 1, out.data()),
            KVARN_ERR_INVALID_ARGUMENT);  // 0 query heads
  EXPECT_EQ(kvarn_cache_attend(c, seq, 0, q.data(), 1, 2, 4, 0.0f, 1, out.data()),
            KVARN_ERR_OUT_OF_RANGE);  // position 4 is not in the cache
  EXPECT_EQ(kvarn_cache_length(c, 7, &len), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cache_remove_sequence(c, 7), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cache_begin_step(nullptr, 0, 1), KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(kvarn_last_error(), "cache is NULL");
  kvarn_cache_free(c);
  EXPECT_EQ(kvarn_cache_init(2, 1, 96, "kvarn_k4v2_g64", 512, 0, &c), KVARN_ERR_UNSUPPORTED);
  EXPECT_EQ(c, nullptr);
}

TEST(CApiCache, TruncateCopyBudgetAndStats) {
  // Budget for exactly two fp16 pages of 1 layer x 1 head x 64 tokens x 64 dims (K and V).
  const size_t page = size_t(2) * 64 * 64 * 2;
  kvarn_cache* c = nullptr;
  ASSERT_EQ(kvarn_cache_init(1, 1, 64, "kvarn_k4v2_g64", 4096, 2 * page, &c), KVARN_OK);
  int seq = -1;
  ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
  std::vector<float> kv(size_t(64) * 64);
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = float(i % 13) * 0.1f;
  auto step = [&](int n) {
    int len = 0;
    kvarn_cache_length(c, seq, &len);
    kvarn_status st = kvarn_cache_begin_step(c, seq, n);
    if (st != KVARN_OK) return st;
    EXPECT_EQ(kvarn_cache_write(c, seq, 0, len, n, kv.data(), kv.data()), KVARN_OK);
    return kvarn_cache_end_step(c, seq);
  };
  ASSERT_EQ(step(64), KVARN_OK);
  ASSERT_EQ(step(64), KVARN_OK);
  kvarn_cache_stats st{};
  ASSERT_EQ(kvarn_cache_get_stats(c, &st), KVARN_OK);
  EXPECT_EQ(st.sink_bytes, page);
  EXPECT_EQ(st.tail_bytes, page);
  EXPECT_EQ(st.tokens, 128);
  EXPECT_EQ(st.budget_bytes, 2 * page);
  EXPECT_EQ(st.total_bytes,
            st.record_bytes + st.sink_bytes + st.tail_bytes + st.row_bytes + st.scratch_bytes);
  EXPECT_EQ(step(1), KVARN_ERR_OUT_OF_MEMORY);  // block 1 would be encoded, block 2 has no room
  EXPECT_NE(std::string(kvarn_last_error()).find("budget"), std::string::npos);
  int copy = -1;
  EXPECT_EQ(kvarn_cache_copy_sequence(c, seq, &copy), KVARN_ERR_OUT_OF_MEMORY);
  int len = 0;
  ASSERT_EQ(kvarn_cache_length(c, seq, &len), KVARN_OK);
  EXPECT_EQ(len, 128);
  ASSERT_EQ(kvarn_cache_truncate(c, seq, 100), KVARN_OK);
  int enc = -1;
  ASSERT_EQ(kvarn_cache_encoded_tokens(c, seq, &enc), KVARN_OK);
  EXPECT_EQ(enc, 0);
  kvarn_cache_free(c);

  ASSERT_EQ(kvarn_cache_init(1, 1, 64, "kvarn_k4v2_g64", 4096, 0, &c), KVARN_OK);
  ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
  ASSERT_EQ(step(64), KVARN_OK);
  ASSERT_EQ(step(64), KVARN_OK);
  ASSERT_EQ(step(1), KVARN_OK);  // encodes block 1
  ASSERT_EQ(kvarn_cache_encoded_tokens(c, seq, &enc), KVARN_OK);
  EXPECT_EQ(enc, 64);
  EXPECT_EQ(kvarn_cache_truncate(c, seq, 100), KVARN_ERR_OUT_OF_RANGE);
  ASSERT_EQ(kvarn_cache_copy_sequence(c, seq, &copy), KVARN_OK);
  ASSERT_EQ(kvarn_cache_length(c, copy, &len), KVARN_OK);
  EXPECT_EQ(len, 129);
  ASSERT_EQ(kvarn_cache_remove_sequence(c, seq), KVARN_OK);
  ASSERT_EQ(kvarn_cache_get_stats(c, &st), KVARN_OK);
  EXPECT_EQ(st.tokens, 129);
  EXPECT_EQ(st.budget_bytes, SIZE_MAX);
  kvarn_cache_free(c);
}

TEST(CApiCache, CppWrapper) {
  std::string err;
  kvarn::api::Cache bad = kvarn::api::Cache::Create(1, 1, 64, "nope", 64, 0, &err);
  EXPECT_FALSE(bad);
  EXPECT_NE(err.find("nope"), std::string::npos);
  kvarn::api::Cache c = kvarn::api::Cache::Create(2, 1, 64, "f16", 64, 0, &err);
  ASSERT_TRUE(c) << err;
  int seq = -1;
  ASSERT_EQ(c.AddSequence(&seq), KVARN_OK);
  std::vector<float> kv(64, 0.25f), q(64, 1.0f), out(64);
  ASSERT_EQ(c.BeginStep(seq, 1), KVARN_OK);
  for (int l = 0; l < 2; ++l) ASSERT_EQ(c.Write(seq, l, 0, 1, kv.data(), kv.data()), KVARN_OK);
  ASSERT_EQ(c.EndStep(seq), KVARN_OK);
  ASSERT_EQ(c.Attend(seq, 1, q.data(), 1, 1, 0, 0.0f, 1, out.data()), KVARN_OK);
  EXPECT_FLOAT_EQ(out[5], 0.25f);  // one token: its value, exactly (0.25 is an fp16)
  EXPECT_EQ(c.Length(seq), 1);
  EXPECT_EQ(c.Stats().tokens, 1);
}

}  // namespace
