// KvCache persistence (kv_cache_pages.cc): block images out and in, byte for byte; a restored
// sequence continues exactly as the original; imports are validated before anything is
// allocated and are all-or-nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "common/rng.h"

namespace kvarn {
namespace {

KvCacheConfig Config(const char* codec, int L, int H, int D) {
  KvCacheConfig c;
  c.n_layers = L;
  c.n_kv_heads = H;
  c.head_dim = D;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok());
  c.max_tokens = 1024;
  c.per_token_block = 48;  // per-token codecs: a block size that is not a power of two
  return c;
}

// One step of n tokens with deterministic K/V per (position, layer).
void Step(KvCache& c, int seq, int n) {
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  const int pos = c.Length(seq);
  ASSERT_TRUE(c.BeginStep(seq, n).ok());
  for (int l = 0; l < L; ++l) {
    std::vector<float> k(size_t(n) * H * D), v(k.size());
    for (int t = 0; t < n; ++t) {
      Rng rng(uint64_t(pos + t) * 7919 + uint64_t(l));
      for (size_t i = 0; i < size_t(H) * D; ++i) {
        k[size_t(t) * H * D + i] = float(rng.Normal());
        v[size_t(t) * H * D + i] = float(rng.Normal());
      }
    }
    ASSERT_TRUE(c.Write(seq, l, pos, n, k.data(), v.data()).ok());
  }
  ASSERT_TRUE(c.EndStep(seq).ok());
}

struct Exported {
  std::vector<KvCache::BlockImage> blocks;
  std::vector<std::vector<uint8_t>> images;
};

Exported Export(const KvCache& c, int seq) {
  Exported e;
  EXPECT_TRUE(c.ExportBlocks(seq, &e.blocks).ok());
  for (size_t b = 0; b < e.blocks.size(); ++b) {
    e.images.emplace_back(c.BlockImageBytes(e.blocks[b]), uint8_t(0xA5));
    EXPECT_TRUE(c.ExportBlock(seq, int(b), e.images.back().data(), e.images.back().size()).ok());
  }
  return e;
}

Status Import(KvCache& c, int length, const Exported& e, int* seq) {
  return c.ImportSequence(
      length, e.blocks,
      [&](int b, uint8_t* dst, size_t size) {
        EXPECT_EQ(size, e.images[size_t(b)].size());
        std::memcpy(dst, e.images[size_t(b)].data(), size);
        return Status::Ok();
      },
      seq);
}

void ExpectSameState(const KvCache& a, int sa, const KvCache& b, int sb, const char* what) {
  const Exported ea = Export(a, sa), eb = Export(b, sb);
  ASSERT_EQ(a.Length(sa), b.Length(sb)) << what;
  EXPECT_EQ(a.EncodedTokens(sa), b.EncodedTokens(sb)) << what;
  ASSERT_EQ(ea.blocks.size(), eb.blocks.size()) << what;
  for (size_t i = 0; i < ea.blocks.size(); ++i) {
    EXPECT_EQ(ea.blocks[i].kind, eb.blocks[i].kind) << what << " block " << i;
    EXPECT_EQ(ea.blocks[i].tokens, eb.blocks[i].tokens) << what << " block " << i;
    EXPECT_EQ(ea.images[i], eb.images[i]) << what << " block " << i << " bytes differ";
  }
}

// Tile (G = 64 and G = 128, so a restored tail is partial, full-but-unencoded or encoded) and
// per-token codecs: a sequence exported and imported into another cache holds the same bytes,
// and both continue identically across later commits.
TEST(KvCachePages, RoundTripContinuesIdentically) {
  for (const char* codec : {"kvarn_k4v2_g64", "kvarn_k2v2_g128", "f16", "q4_0"}) {
    for (int prefill : {1, 64, 150, 200}) {
      std::unique_ptr<KvCache> a, b;
      ASSERT_TRUE(KvCache::Create(Config(codec, 2, 3, 64), &a).ok());
      ASSERT_TRUE(KvCache::Create(Config(codec, 2, 3, 64), &b).ok());
      int sa = 0, sb = 0, pad = 0;
      ASSERT_TRUE(b->AddSequence(&pad).ok());  // the import gets another id than the original
      ASSERT_TRUE(a->AddSequence(&sa).ok());
      Step(*a, sa, prefill);
      for (int i = 0; i < 7; ++i) Step(*a, sa, 1);
      const Exported e = Export(*a, sa);
      ASSERT_TRUE(Import(*b, a->Length(sa), e, &sb).ok());
      EXPECT_NE(sb, pad);
      ExpectSameState(*a, sa, *b, sb, codec);
      EXPECT_EQ(a->Stats().total() - a->Stats().scratch_bytes,
                b->Stats().total() - b->Stats().scratch_bytes)
          << codec;
      for (int i = 0; i < 150; ++i) {  // crosses one or more commits on both
        Step(*a, sa, 1);
        Step(*b, sb, 1);
      }
      ExpectSameState(*a, sa, *b, sb, codec);
    }
  }
}

// Encoding committed blocks early (what a session save does) changes nothing the sequence
// will hold: the next step would have encoded the same blocks from the same fp16 pages.
TEST(KvCachePages, EncodeCommittedIsTheNextStepsCommitDoneEarly) {
  for (int prefill : {100, 200, 256}) {
    std::unique_ptr<KvCache> a, b;
    ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 2, 2, 64), &a).ok());
    ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 2, 2, 64), &b).ok());
    int sa = 0, sb = 0;
    ASSERT_TRUE(a->AddSequence(&sa).ok());
    ASSERT_TRUE(b->AddSequence(&sb).ok());
    Step(*a, sa, prefill);
    Step(*b, sb, prefill);
    ASSERT_EQ(a->EncodedTokens(sa), 0);
    ASSERT_TRUE(a->EncodeCommitted(sa).ok());
    EXPECT_EQ(a->EncodedTokens(sa), (prefill / 64 - 1) * 64) << prefill;
    Step(*a, sa, 1);
    Step(*b, sb, 1);
    ExpectSameState(*a, sa, *b, sb, "after the next step");
  }
}

// A prefix of a sequence: its kept blocks are restored (a partial last block from a longer
// image), and it continues like the original truncated to the same length.
TEST(KvCachePages, PrefixImportEqualsTruncation) {
  std::unique_ptr<KvCache> a, b;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 2, 2, 64), &a).ok());
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 2, 2, 64), &b).ok());
  int sa = 0, sb = 0;
  ASSERT_TRUE(a->AddSequence(&sa).ok());
  Step(*a, sa, 150);
  Step(*a, sa, 1);  // encodes block 1 (64..127); blocks 2 (128..191) stays fp16
  const Exported e = Export(*a, sa);
  ASSERT_EQ(e.blocks[1].kind, BlockKind::kRecord);
  ASSERT_EQ(e.blocks[2].kind, BlockKind::kF16);
  ASSERT_TRUE(Import(*b, 140, e, &sb).ok());
  ASSERT_TRUE(a->Truncate(sa, 140).ok());
  ExpectSameState(*a, sa, *b, sb, "prefix 140");
  for (int i = 0; i < 70; ++i) {
    Step(*a, sa, 1);
    Step(*b, sb, 1);
  }
  ExpectSameState(*a, sa, *b, sb, "prefix 140 continued");

  // Inside a record: refused before anything is allocated. At its start: fine.
  const size_t before = b->Stats().total();
  int s2 = 0;
  const Status st = Import(*b, 100, e, &s2);
  EXPECT_EQ(st.code(), StatusCode::kCorruptData);
  EXPECT_NE(st.message().find("only full blocks are encoded"), std::string::npos) << st.message();
  EXPECT_EQ(b->Stats().total(), before);
  EXPECT_TRUE(Import(*b, 64, e, &s2).ok());
  EXPECT_EQ(b->Length(s2), 64);
  int s3 = 0;
  EXPECT_TRUE(Import(*b, 0, e, &s3).ok());
  EXPECT_EQ(b->Length(s3), 0);
}

TEST(KvCachePages, ImportValidatesBeforeAllocating) {
  std::unique_ptr<KvCache> a, b;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 1, 1, 64), &a).ok());
  KvCacheConfig small = Config("kvarn_k4v2_g64", 1, 1, 64);
  small.byte_budget = a->PageBytes(BlockKind::kF16) * 2;
  ASSERT_TRUE(KvCache::Create(small, &b).ok());
  int sa = 0;
  ASSERT_TRUE(a->AddSequence(&sa).ok());
  Step(*a, sa, 200);
  Step(*a, sa, 1);
  const Exported good = Export(*a, sa);
  const size_t before = b->Stats().total();
  int s = 0;
  auto expect_refused = [&](const Exported& e, int length, StatusCode code, const char* text) {
    const Status st = Import(*b, length, e, &s);
    EXPECT_EQ(st.code(), code) << st.message();
    EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
    EXPECT_EQ(b->Stats().total(), before);
  };
  expect_refused(good, 201, StatusCode::kOutOfMemory, "budget");
  Exported e = good;
  e.blocks[0].kind = BlockKind::kRecord;
  expect_refused(e, 201, StatusCode::kCorruptData, "sink");
  e = good;
  e.blocks[1].kind = BlockKind::kF16;  // then block 2, a record, follows an fp16 block
  expect_refused(e, 201, StatusCode::kCorruptData, "directly follow");
  e = good;
  e.blocks[1].kind = BlockKind::kRows;
  expect_refused(e, 201, StatusCode::kCorruptData, "no rows");
  e = good;
  e.blocks.pop_back();
  expect_refused(e, 201, StatusCode::kInvalidArgument, "needs 4 blocks");
  expect_refused(good, 2000, StatusCode::kOutOfRange, "at most");
  e = good;
  e.blocks[3].tokens = 5;  // the tail holds 9 tokens
  expect_refused(e, 201, StatusCode::kCorruptData, "fewer tokens");

  // A read that fails half-way leaves nothing allocated (the budget is large enough here).
  std::unique_ptr<KvCache> c;
  ASSERT_TRUE(KvCache::Create(Config("kvarn_k4v2_g64", 1, 1, 64), &c).ok());
  const size_t c_before = c->Stats().total();
  const Status st = c->ImportSequence(
      201, good.blocks,
      [&](int blk, uint8_t* dst, size_t size) {
        if (blk == 2) return CorruptData("test: bad block");
        std::memcpy(dst, good.images[size_t(blk)].data(), size);
        return Status::Ok();
      },
      &s);
  EXPECT_EQ(st.code(), StatusCode::kCorruptData);
  EXPECT_EQ(c->Stats().total(), c_before);

  // Export inside an open step is refused.
  ASSERT_TRUE(a->BeginStep(sa, 1).ok());
  std::vector<KvCache::BlockImage> blocks;
  EXPECT_EQ(a->ExportBlocks(sa, &blocks).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(a->AbortStep(sa).ok());
}

}  // namespace
}  // namespace kvarn
