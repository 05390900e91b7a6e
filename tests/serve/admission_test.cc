// PeakSequenceBytes is exact: a cache whose budget is the computed peak runs the plan to its
// end, and one byte less fails somewhere on the way (the peak is reached, transients included).
#include "serve/admission.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "common/rng.h"

namespace kvarn::serve {
namespace {

KvCacheConfig SmallConfig(const char* codec, size_t budget) {
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_kv_heads = 1;
  c.head_dim = 64;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok());
  c.max_tokens = 2048;
  c.per_token_block = 32;
  c.byte_budget = budget;
  return c;
}

Status Feed(KvCache& c, int seq, int n) {
  const int L = c.config().n_layers, D = c.config().head_dim;
  const int pos = c.Length(seq);
  KVARN_RETURN_IF_ERROR(c.BeginStep(seq, n));
  Rng rng(uint64_t(pos) + 1);
  std::vector<float> k(size_t(n) * D), v(size_t(n) * D);
  for (int l = 0; l < L; ++l) {
    for (float& x : k) x = float(rng.Normal());
    for (float& x : v) x = float(rng.Normal());
    KVARN_RETURN_IF_ERROR(c.Write(seq, l, pos, n, k.data(), v.data()));
  }
  return c.EndStep(seq);
}

// Runs the plan's steps on seq (prefill chunks ending at multiples of chunk, then single steps).
Status RunPlan(KvCache& c, int seq, const SequencePlan& p) {
  while (c.Length(seq) < p.prompt_tokens) {
    const int len = c.Length(seq);
    KVARN_RETURN_IF_ERROR(
        Feed(c, seq, std::min(p.prompt_tokens, (len / p.chunk + 1) * p.chunk) - len));
  }
  while (c.Length(seq) < p.final_tokens) KVARN_RETURN_IF_ERROR(Feed(c, seq, 1));
  return Status::Ok();
}

struct Case {
  int prompt, chunk, final_tokens;
};

// Cold plans: exactly the peak is enough, one byte less is not.
TEST(Admission, ColdPeakIsExact) {
  const Case cases[] = {{300, 64, 420}, {5, 256, 200},   {129, 128, 300}, {64, 64, 64},
                        {1, 256, 1},    {250, 100, 251}, {40, 7, 190}};
  for (const char* codec : {"kvarn_k4v2_g64", "kivi_k2v2_g64", "q8_0", "f16"}) {
    for (const Case& k : cases) {
      std::unique_ptr<KvCache> probe;
      ASSERT_TRUE(KvCache::Create(SmallConfig(codec, SIZE_MAX), &probe).ok());
      SequencePlan p;
      p.prompt_tokens = k.prompt;
      p.chunk = k.chunk;
      p.final_tokens = k.final_tokens;
      const size_t peak = PeakSequenceBytes(*probe, p);
      for (const size_t budget : {peak, peak - 1}) {
        std::unique_ptr<KvCache> c;
        ASSERT_TRUE(KvCache::Create(SmallConfig(codec, budget), &c).ok());
        int seq;
        ASSERT_TRUE(c->AddSequence(&seq).ok());
        const Status st = RunPlan(*c, seq, p);
        if (budget == peak) {
          EXPECT_TRUE(st.ok()) << codec << " prompt " << k.prompt << ": " << st.message();
        } else {
          EXPECT_EQ(st.code(), StatusCode::kOutOfMemory)
              << codec << " prompt " << k.prompt << " chunk " << k.chunk
              << ": one byte under the computed peak still ran";
        }
      }
    }
  }
}

// Warm plans: a donor is built first; a copy of its first blocks then follows the plan. The
// budget is the donor's pages plus the computed peak (which counts the copied pages).
TEST(Admission, WarmPeakFromACopiedPrefixIsExact) {
  for (const char* codec : {"kvarn_k4v2_g64", "q8_0"}) {
    // The donor stops right after its prompt (the prefix's last block still fp16) or decodes on
    // (every block of the prefix but the sink encoded).
    for (const int donor_len : {192, 330}) {
      const Case k{300, 64, 380};
      for (int side = 0; side < 2; ++side) {
        std::unique_ptr<KvCache> c;
        ASSERT_TRUE(KvCache::Create(SmallConfig(codec, SIZE_MAX), &c).ok());
        int donor;
        ASSERT_TRUE(c->AddSequence(&donor).ok());
        SequencePlan dp;
        dp.prompt_tokens = 192;
        dp.chunk = 64;
        dp.final_tokens = donor_len;
        ASSERT_TRUE(RunPlan(*c, donor, dp).ok());
        const size_t donor_bytes = c->Stats().total() - c->Stats().scratch_bytes;
        SequencePlan p;
        p.prompt_tokens = k.prompt;
        p.chunk = k.chunk;
        p.final_tokens = k.final_tokens;
        p.start_tokens = 192;
        SeqView v;
        ASSERT_TRUE(c->View(donor, &v).ok());
        for (int b = 0; b < 192 / c->block_tokens(); ++b) p.start_blocks.push_back(v.block(b).kind);
        const size_t peak = PeakSequenceBytes(*c, p);
        const size_t budget = donor_bytes + peak - size_t(side);
        // A second cache with that budget, rebuilt the same way.
        std::unique_ptr<KvCache> d;
        ASSERT_TRUE(KvCache::Create(SmallConfig(codec, budget), &d).ok());
        int donor2, seq;
        ASSERT_TRUE(d->AddSequence(&donor2).ok());
        ASSERT_TRUE(RunPlan(*d, donor2, dp).ok());
        Status st = d->CopyPrefix(donor2, 192, &seq);
        if (st.ok()) st = RunPlan(*d, seq, p);
        if (side == 0) {
          EXPECT_TRUE(st.ok()) << codec << " donor " << donor_len << ": " << st.message();
        } else {
          EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << codec << " donor " << donor_len;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvarn::serve
