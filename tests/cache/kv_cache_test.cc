// The paged KV cache: commit rule timing, rollback, byte budget, accounting, bad values.
#include "cache/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common/rng.h"

namespace kvarn {
namespace {

KvCacheConfig Config(const char* codec, int L, int H, int D, int max_tokens = 4096) {
  KvCacheConfig c;
  c.n_layers = L;
  c.n_kv_heads = H;
  c.head_dim = D;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok());
  c.max_tokens = max_tokens;
  return c;
}

// Deterministic K/V of token `pos` (so two runs with the same tokens write the same values).
std::vector<float> TokenKV(int pos, int H, int D, int salt) {
  Rng rng(uint64_t(pos) * 7919 + uint64_t(salt));
  std::vector<float> x(size_t(H) * D);
  for (float& v : x) v = float(rng.Normal());
  return x;
}

// One decode step: BeginStep, Write every layer, EndStep.
void Step(KvCache& c, int seq, int n, int salt = 0) {
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  const int pos = c.Length(seq);
  ASSERT_TRUE(c.BeginStep(seq, n).ok());
  for (int l = 0; l < L; ++l) {
    std::vector<float> k, v;
    for (int t = 0; t < n; ++t) {
      auto kt = TokenKV(pos + t, H, D, salt + 2 * l), vt = TokenKV(pos + t, H, D, salt + 2 * l + 1);
      k.insert(k.end(), kt.begin(), kt.end());
      v.insert(v.end(), vt.begin(), vt.end());
    }
    ASSERT_TRUE(c.Write(seq, l, pos, n, k.data(), v.data()).ok());
  }
  ASSERT_TRUE(c.EndStep(seq).ok());
}

TEST(KvCache, CommitTimingFollowsSpec) {
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g128", 2, 1, 64), &c).ok());
  int seq;
  ASSERT_TRUE(c->AddSequence(&seq).ok());
  for (int i = 0; i < 400; ++i) {  // query index i is written by the step of token i
    Step(*c, seq, 1);
    SeqView v;
    ASSERT_TRUE(c->View(seq, &v).ok());
    EXPECT_EQ(v.block(0).kind, BlockKind::kF16) << "sink encoded at query " << i;
    if (v.n_blocks() > 1) {
      // Tokens 128..255 are read encoded exactly from the step whose query index is 256 on.
      EXPECT_EQ(v.block(1).kind, i >= 256 ? BlockKind::kRecord : BlockKind::kF16) << i;
    }
    if (v.n_blocks() > 2) {
      // Block k is encoded at the step whose query index is (k+1)*G (tokens 256..383: 384).
      EXPECT_EQ(v.block(2).kind, i >= 384 ? BlockKind::kRecord : BlockKind::kF16) << i;
    }
  }
  EXPECT_EQ(c->EncodedTokens(seq), 256);
}

TEST(KvCache, PrefillBlocksAreEncodedByTheNextStep) {
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g128", 1, 2, 128), &c).ok());
  int seq;
  ASSERT_TRUE(c->AddSequence(&seq).ok());
  Step(*c, seq, 600);  // prefill: everything stays fp16 during this step
  SeqView v;
  ASSERT_TRUE(c->View(seq, &v).ok());
  for (int b = 0; b < v.n_blocks(); ++b) EXPECT_EQ(v.block(b).kind, BlockKind::kF16);
  Step(*c, seq, 1);  // first decode step: blocks 1..3 (full, committed) are encoded
  ASSERT_TRUE(c->View(seq, &v).ok());
  EXPECT_EQ(v.block(0).kind, BlockKind::kF16);
  for (int b = 1; b <= 3; ++b) EXPECT_EQ(v.block(b).kind, BlockKind::kRecord) << b;
  EXPECT_EQ(v.block(4).kind, BlockKind::kF16);  // tokens 512..600, unfinished
}

// Speculative rollback: tokens of a step that are truncated before the next step never reach
// encoded history; the records equal those of a run that never saw them.
TEST(KvCache, RollbackNeverTouchesEncodedHistory) {
  for (const char* codec : {"kvarn_k4v2_g128", "q4_0"}) {
    std::unique_ptr<KvCache> a, b;
    ASSERT_TRUE(KvCache::Create(Config(codec, 2, 2, 64), &a).ok());
    ASSERT_TRUE(KvCache::Create(Config(codec, 2, 2, 64), &b).ok());
    int sa, sb;
    ASSERT_TRUE(a->AddSequence(&sa).ok());
    ASSERT_TRUE(b->AddSequence(&sb).ok());
    for (int i = 0; i < 250; ++i) {
      Step(*a, sa, 1);
      Step(*b, sb, 1);
    }
    // a: a draft of 10 tokens crossing the block boundary at 256, with other values, rejected
    // after verification down to 252 tokens.
    Step(*a, sa, 10, /*salt=*/1000);
    ASSERT_TRUE(a->Truncate(sa, 252).ok());
    Step(*b, sb, 2, 1000);  // b reaches 252 with the accepted draft values directly
    // Both continue identically.
    for (int i = 0; i < 200; ++i) {
      Step(*a, sa, 1);
      Step(*b, sb, 1);
    }
    SeqView va, vb;
    ASSERT_TRUE(a->View(sa, &va).ok());
    ASSERT_TRUE(b->View(sb, &vb).ok());
    ASSERT_EQ(va.length(), vb.length());
    ASSERT_EQ(va.n_blocks(), vb.n_blocks());
    const size_t page = a->PageBytes(va.block(1).kind);
    for (int blk = 0; blk < va.n_blocks() - 1; ++blk) {
      ASSERT_EQ(va.block(blk).kind, vb.block(blk).kind);
      if (va.block(blk).kind == BlockKind::kF16) continue;  // fp16 tails compared below
      EXPECT_EQ(std::memcmp(va.block(blk).data, vb.block(blk).data, page), 0)
          << codec << ": block " << blk << " differs";
    }
  }
  // Rolling back into encoded history is refused, and the sequence is unchanged.
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g128", 1, 1, 64), &c).ok());
  int s;
  ASSERT_TRUE(c->AddSequence(&s).ok());
  Step(*c, s, 300);
  Step(*c, s, 1);
  const Status st = c->Truncate(s, 200);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("encoded"), std::string::npos) << st.message();
  EXPECT_EQ(c->Length(s), 301);
  EXPECT_TRUE(c->Truncate(s, 256).ok());
}

// Memory accounting against the spec §5.6 formula: records cost exactly the record bytes per
// (block, layer, head); fp16 pages exactly 2*G*D*2 bytes per (layer, head).
TEST(KvCache, AccountingMatchesFormula) {
  struct Case { const char* codec; int D; double bytes_per_token; } cases[] = {
      {"kvarn_k4v2_g128", 128, 108}, {"kvarn_k4v2_g128", 64, 57}, {"kvarn_k2v2_g128", 128, 76},
      {"kvarn_k4v4_g64", 128, 146}};
  for (const Case& cs : cases) {
    const int L = 3, H = 2;
    std::unique_ptr<KvCache> c;
    ASSERT_TRUE(KvCache::Create(Config(cs.codec, L, H, cs.D), &c).ok());
    int s;
    ASSERT_TRUE(c->AddSequence(&s).ok());
    Step(*c, s, 1000);
    Step(*c, s, 1);
    const int G = c->block_tokens();
    const int encoded = c->EncodedTokens(s);
    EXPECT_EQ(encoded, (1000 / G - 1) * G);
    const CacheStats st = c->Stats();
    EXPECT_DOUBLE_EQ(double(st.record_bytes), cs.bytes_per_token * encoded * L * H) << cs.codec;
    const size_t f16_page = size_t(2) * L * H * G * cs.D * 2;
    EXPECT_EQ(st.sink_bytes, f16_page);
    // Token 1000 opened no new block for G in {64, 128}: one fp16 tail block remains.
    EXPECT_EQ(st.tail_bytes, f16_page);
    EXPECT_EQ(st.tokens, 1001);
  }
}

// A cache whose byte budget holds exactly `pages` fp16 pages of this configuration.
std::unique_ptr<KvCache> CacheWithF16Pages(KvCacheConfig cfg, size_t pages) {
  std::unique_ptr<KvCache> probe;
  EXPECT_TRUE(KvCache::Create(cfg, &probe).ok());
  cfg.byte_budget = pages * probe->PageBytes(BlockKind::kF16);
  std::unique_ptr<KvCache> c;
  EXPECT_TRUE(KvCache::Create(cfg, &c).ok());
  return c;
}

TEST(KvCache, BudgetExhaustionIsAnErrorAndCorruptsNothing) {
  // Room for three fp16 pages: sequence A takes two (sink + tail), B's second page fails.
  std::unique_ptr<KvCache> c = CacheWithF16Pages(Config("kvarn_k4v2_g128", 2, 1, 64), 3);
  ASSERT_NE(c, nullptr);
  int a, b;
  ASSERT_TRUE(c->AddSequence(&a).ok());
  ASSERT_TRUE(c->AddSequence(&b).ok());
  Step(*c, a, 200);
  SeqView before;
  ASSERT_TRUE(c->View(a, &before).ok());
  std::vector<uint8_t> snapshot(before.block(1).data,
                                before.block(1).data + c->PageBytes(BlockKind::kF16));
  Step(*c, b, 100);
  const Status st = c->BeginStep(b, 100);  // needs a second page for b
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(st.message().find("budget"), std::string::npos) << st.message();
  EXPECT_EQ(c->Length(b), 100);
  SeqView after;
  ASSERT_TRUE(c->View(a, &after).ok());
  EXPECT_EQ(std::memcmp(snapshot.data(), after.block(1).data, snapshot.size()), 0);
  Step(*c, a, 1);  // A keeps decoding
  EXPECT_EQ(c->Length(a), 201);
}

// Prefix reuse: a copy continues exactly like the original would (same records, same fp16
// pages after the same steps), and changing the copy never touches the source.
TEST(KvCache, CopySequenceIsADeepCopyThatContinuesIdentically) {
  for (const char* codec : {"kvarn_k4v2_g128", "q4_0", "f16"}) {
    std::unique_ptr<KvCache> c;
    ASSERT_TRUE(KvCache::Create(Config(codec, 2, 2, 64), &c).ok());
    int src, ref;
    ASSERT_TRUE(c->AddSequence(&src).ok());
    ASSERT_TRUE(c->AddSequence(&ref).ok());
    Step(*c, src, 300);  // the prefix: one prefill step
    Step(*c, ref, 300);
    const size_t used_before = c->Stats().total();
    int dst;
    ASSERT_TRUE(c->CopySequence(src, &dst).ok());
    EXPECT_EQ(c->Length(dst), 300);
    EXPECT_GT(c->Stats().total(), used_before);
    // The copy and the reference take the same continuation; the source another one.
    for (int i = 0; i < 100; ++i) {
      Step(*c, dst, 1, 77);
      Step(*c, ref, 1, 77);
      Step(*c, src, 1, 5);
    }
    SeqView vd, vr, vs;
    ASSERT_TRUE(c->View(dst, &vd).ok());
    ASSERT_TRUE(c->View(ref, &vr).ok());
    ASSERT_TRUE(c->View(src, &vs).ok());
    ASSERT_EQ(vd.n_blocks(), vr.n_blocks());
    EXPECT_EQ(c->EncodedTokens(dst), c->EncodedTokens(ref));
    // Full blocks only: the unwritten slots of the last page are uninitialized memory.
    for (int b = 0; b < vd.n_blocks() - 1; ++b) {
      ASSERT_EQ(vd.block(b).kind, vr.block(b).kind) << codec << " block " << b;
      EXPECT_EQ(std::memcmp(vd.block(b).data, vr.block(b).data, c->PageBytes(vd.block(b).kind)), 0)
          << codec << ": copy differs from the reference in block " << b;
    }
    // Block 2 holds tokens 256..383 (G = 128), of which 300.. differ between source and copy.
    EXPECT_NE(std::memcmp(vd.block(2).data, vs.block(2).data, c->PageBytes(vd.block(2).kind)), 0)
        << codec;
    ASSERT_TRUE(c->RemoveSequence(dst).ok());
    Step(*c, src, 1, 5);  // the source keeps working after its copy is gone
  }
  // Over budget: an error, nothing allocated, the source intact; inside a step: refused.
  std::unique_ptr<KvCache> c = CacheWithF16Pages(Config("kvarn_k4v2_g128", 1, 1, 64), 3);
  ASSERT_NE(c, nullptr);
  int s, d = -1;
  ASSERT_TRUE(c->AddSequence(&s).ok());
  Step(*c, s, 200);
  const size_t used = c->Stats().total();
  Status st = c->CopySequence(s, &d);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << st.message();
  EXPECT_NE(st.message().find("budget"), std::string::npos) << st.message();
  EXPECT_EQ(c->Stats().total(), used);
  EXPECT_EQ(d, -1);
  ASSERT_TRUE(c->BeginStep(s, 1).ok());
  EXPECT_EQ(c->CopySequence(s, &d).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(c->AbortStep(s).ok());
  EXPECT_EQ(c->Length(s), 200);
}

TEST(KvCache, NonFiniteWriteNamesLayerAndPositionAndWritesNothing) {
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g128", 4, 2, 64), &c).ok());
  int s;
  ASSERT_TRUE(c->AddSequence(&s).ok());
  Step(*c, s, 10);
  ASSERT_TRUE(c->BeginStep(s, 2).ok());
  std::vector<float> k(2 * 2 * 64, 0.5f), v = k;
  v[1 * 128 + 64 + 3] = NAN;  // token 1, head 1
  const Status st = c->Write(s, 3, 10, 2, k.data(), v.data());
  EXPECT_EQ(st.code(), StatusCode::kNonFinite);
  EXPECT_NE(st.message().find("layer 3"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("position 11"), std::string::npos) << st.message();
  ASSERT_TRUE(c->AbortStep(s).ok());
  EXPECT_EQ(c->Length(s), 10);
  Step(*c, s, 1);
  EXPECT_EQ(c->Length(s), 11);
}

TEST(KvCache, ContextLimitIsAClearError) {
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("f16", 1, 1, 64, 100), &c).ok());
  int s;
  ASSERT_TRUE(c->AddSequence(&s).ok());
  Step(*c, s, 90);
  const Status st = c->BeginStep(s, 11);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("context"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace kvarn
