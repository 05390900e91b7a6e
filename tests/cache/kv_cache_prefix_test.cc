// KvCache::CopyPrefix: a sequence started from another's first blocks continues exactly as a
// sequence that was fed only those tokens (the state prefix reuse in `kvarn serve` relies on).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "common/rng.h"

namespace kvarn {
namespace {

KvCacheConfig PrefixConfig(const char* codec) {
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok());
  c.max_tokens = 1024;
  c.per_token_block = 64;
  return c;
}

// Writes n tokens from the current length in one step; K/V depend on (position, salt) only.
void Feed(KvCache& c, int seq, int n, int salt) {
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  const int pos = c.Length(seq);
  ASSERT_TRUE(c.BeginStep(seq, n).ok());
  for (int l = 0; l < L; ++l) {
    std::vector<float> k, v;
    for (int t = 0; t < n; ++t) {
      for (int kv = 0; kv < 2; ++kv) {
        Rng rng(uint64_t(pos + t) * 7919 + uint64_t(salt * 64 + 2 * l + kv));
        for (int i = 0; i < H * D; ++i) (kv == 0 ? k : v).push_back(float(rng.Normal()));
      }
    }
    ASSERT_TRUE(c.Write(seq, l, pos, n, k.data(), v.data()).ok());
  }
  ASSERT_TRUE(c.EndStep(seq).ok());
}

// The bytes attention can read: kinds, and per block the valid tokens' fp16 values or rows,
// or the whole records.
void ExpectSameVisibleState(const KvCache& c, int a, int b, const char* what) {
  SeqView va, vb;
  ASSERT_TRUE(c.View(a, &va).ok());
  ASSERT_TRUE(c.View(b, &vb).ok());
  ASSERT_EQ(va.length(), vb.length()) << what;
  ASSERT_EQ(va.n_blocks(), vb.n_blocks()) << what;
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  for (int blk = 0; blk < va.n_blocks(); ++blk) {
    ASSERT_EQ(int(va.block(blk).kind), int(vb.block(blk).kind)) << what << ", block " << blk;
    const int n = va.block_len(blk);
    for (int l = 0; l < L; ++l) {
      for (int h = 0; h < H; ++h) {
        switch (va.block(blk).kind) {
          case BlockKind::kF16:
            ASSERT_EQ(std::memcmp(va.F16K(blk, l, h), vb.F16K(blk, l, h), size_t(n) * D * 2), 0)
                << what << ", block " << blk;
            ASSERT_EQ(std::memcmp(va.F16V(blk, l, h), vb.F16V(blk, l, h), size_t(n) * D * 2), 0)
                << what << ", block " << blk;
            break;
          case BlockKind::kRecord:
            ASSERT_EQ(std::memcmp(va.Record(blk, l, h), vb.Record(blk, l, h), c.RecordBytes()), 0)
                << what << ", block " << blk;
            break;
          case BlockKind::kRows:
            ASSERT_EQ(std::memcmp(va.RowsK(blk, l, h), vb.RowsK(blk, l, h), n * c.RowBytes()), 0)
                << what << ", block " << blk;
            ASSERT_EQ(std::memcmp(va.RowsV(blk, l, h), vb.RowsV(blk, l, h), n * c.RowBytes()), 0)
                << what << ", block " << blk;
            break;
        }
      }
    }
  }
}

// The donor prefills 128 + 128 + 44 tokens in chunks (as the server does, at fixed absolute
// positions) and decodes on to 420, so the blocks below 256 are encoded in it; a cold sequence
// is fed the same first 256 tokens only. A copy of the donor's first 256 tokens and the cold
// sequence then take the same new tokens (a chunk, then single steps across block boundaries)
// and must hold the same readable bytes after every step.
TEST(KvCachePrefix, CopyContinuesExactlyLikeAColdPrefill) {
  for (const char* codec : {"kvarn_k4v2_g64", "kivi_k2v2_g64", "q8_0", "f16"}) {
    std::unique_ptr<KvCache> c;
    ASSERT_TRUE(KvCache::Create(PrefixConfig(codec), &c).ok());
    ASSERT_EQ(256 % c->block_tokens(), 0);
    int donor, cold, warm;
    ASSERT_TRUE(c->AddSequence(&donor).ok());
    Feed(*c, donor, 128, 1);
    Feed(*c, donor, 128, 1);
    Feed(*c, donor, 44, 1);
    for (int i = 300; i < 420; ++i) Feed(*c, donor, 1, 1);
    ASSERT_TRUE(c->AddSequence(&cold).ok());
    Feed(*c, cold, 128, 1);
    Feed(*c, cold, 128, 1);
    const size_t before = c->Stats().total();
    ASSERT_TRUE(c->CopyPrefix(donor, 256, &warm).ok()) << codec;
    EXPECT_EQ(c->Length(warm), 256);
    EXPECT_EQ(c->Length(donor), 420);
    EXPECT_GT(c->Stats().total(), before);
    Feed(*c, cold, 100, 2);
    Feed(*c, warm, 100, 2);
    ExpectSameVisibleState(*c, cold, warm, codec);
    for (int i = 356; i < 460; ++i) {
      Feed(*c, cold, 1, 2);
      Feed(*c, warm, 1, 2);
      ExpectSameVisibleState(*c, cold, warm, codec);
      if (::testing::Test::HasFatalFailure()) return;
    }
    EXPECT_EQ(c->EncodedTokens(cold), c->EncodedTokens(warm)) << codec;
    // Removing the copy returns exactly its pages.
    const CacheStats with = c->Stats();
    ASSERT_TRUE(c->RemoveSequence(warm).ok());
    ASSERT_TRUE(c->RemoveSequence(cold).ok());
    int again;
    ASSERT_TRUE(c->CopyPrefix(donor, 128, &again).ok());
    ASSERT_TRUE(c->RemoveSequence(again).ok());
    EXPECT_LT(c->Stats().total() - c->Stats().scratch_bytes, with.total() - with.scratch_bytes);
  }
}

TEST(KvCachePrefix, BadLengthsOpenStepsAndBudgetAreErrorsThatChangeNothing) {
  KvCacheConfig cfg = PrefixConfig("kvarn_k4v2_g64");
  std::unique_ptr<KvCache> probe;
  ASSERT_TRUE(KvCache::Create(cfg, &probe).ok());
  // Room for the donor's 3 sink/tail pages and a transient record, not for a copy of its first
  // 128 tokens once block 1 is encoded.
  cfg.byte_budget = 3 * probe->PageBytes(BlockKind::kF16) + probe->PageBytes(BlockKind::kRecord);
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(cfg, &c).ok());
  int donor, out = -1;
  ASSERT_TRUE(c->AddSequence(&donor).ok());
  Feed(*c, donor, 64, 1);
  Feed(*c, donor, 100, 1);                   // 164 tokens: blocks 0, 1 full, block 2 partial
  ASSERT_TRUE(c->BeginStep(donor, 1).ok());  // (encodes block 1: the commit rule)
  EXPECT_EQ(c->CopyPrefix(donor, 64, &out).code(), StatusCode::kInvalidArgument);  // open step
  ASSERT_TRUE(c->AbortStep(donor).ok());
  const CacheStats st = c->Stats();
  EXPECT_EQ(c->CopyPrefix(donor, 100, &out).code(), StatusCode::kInvalidArgument);  // not aligned
  EXPECT_EQ(c->CopyPrefix(donor, 0, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->CopyPrefix(donor, 192, &out).code(), StatusCode::kInvalidArgument);     // > 164
  EXPECT_EQ(c->CopyPrefix(donor + 1, 64, &out).code(), StatusCode::kInvalidArgument);  // no seq
  // Blocks 0 (fp16) and 1 (a record now) need F + R bytes; F are left.
  EXPECT_EQ(c->CopyPrefix(donor, 128, &out).code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(out, -1);
  EXPECT_EQ(c->Stats().total() - c->Stats().scratch_bytes, st.total() - st.scratch_bytes);
  EXPECT_EQ(c->Stats().tokens, st.tokens);
}

}  // namespace
}  // namespace kvarn
