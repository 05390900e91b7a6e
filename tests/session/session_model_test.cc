// Sessions on a real model (SmolLM2-135M; skipped when the model is not fetched): restoring a
// saved prompt and continuing gives bit-identical logits and greedy tokens to a run that never
// stopped (nor saved), with the f16 cache and with kvarn_k4v2_g128. The prompt is fed in chunks
// of 128, 122 and 50 tokens and saved after the second and the third, so the tile commits
// (G = 128) fall on both sides of a save:
//   at 250, block 1 is a partial fp16 tail; after the restore the chunk of 50 fills it and the
//     first decode step encodes it (from the restored page);
//   at 300, block 1 is complete: the save encodes it (KvCache::EncodeCommitted), which the
//     uninterrupted run does at its first decode step.
// The continuation uses the same chunks in both runs: a token's K/V depend on the row count of
// its chunk (docs/deviations.md), so that is what "uninterrupted" means.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "session/model_identity.h"
#include "session/session_file.h"

namespace kvarn {
namespace {

int32_t Argmax(const std::vector<float>& x) {
  size_t best = 0;
  for (size_t i = 1; i < x.size(); ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

class SessionModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing::ModelPath(testing::kSmolLM2);
    if (!testing::FileExists(path)) return;
    ASSERT_TRUE(Model::Load(path, &model_).ok());
    std::unique_ptr<Tokenizer> tok;
    ASSERT_TRUE(Tokenizer::FromGguf(model_->gguf(), &tok).ok());
    std::string text;
    for (int i = 0; i < 12; ++i)
      text +=
          "A hash table stores key and value pairs in an array of buckets. The hash of a key "
          "picks its bucket; two keys with the same bucket collide, and the table resolves the "
          "collision by chaining or by probing the next free slot. ";
    ASSERT_TRUE(tok->Encode(text, false, &tokens_).ok());
    ASSERT_GE(tokens_.size(), 420u);
  }
  static void TearDownTestSuite() { model_.reset(); }

  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "SmolLM2 not fetched (scripts/fetch_models.sh)";
  }

  // Feeds chunks of tokens_ from position `pos`; returns the logits after the last one.
  static std::vector<float> Feed(KvCache& c, int seq, const std::vector<int>& chunks, int* pos) {
    ForwardOptions fo;
    fo.n_threads = 1;  // results do not depend on it; a shared CI machine does
    ForwardOutput out;
    for (int n : chunks) {
      EXPECT_TRUE(model_->Forward(c, seq, tokens_.data() + *pos, n, fo, &out).ok());
      *pos += n;
    }
    return out.logits;
  }

  // Greedy decode from logits; every step's logits appended to *trace.
  static std::vector<int32_t> Decode(KvCache& c, int seq, std::vector<float> logits, int steps,
                                     std::vector<std::vector<float>>* trace) {
    std::vector<int32_t> ids;
    ForwardOptions fo;
    fo.n_threads = 1;  // results do not depend on it; a shared CI machine does
    for (int s = 0; s < steps; ++s) {
      const int32_t next = Argmax(logits);
      ids.push_back(next);
      ForwardOutput out;
      EXPECT_TRUE(model_->Forward(c, seq, &next, 1, fo, &out).ok());
      logits = out.logits;
      trace->push_back(logits);
    }
    return ids;
  }

  static std::unique_ptr<Model> model_;
  static std::vector<int32_t> tokens_;
};

std::unique_ptr<Model> SessionModelTest::model_;
std::vector<int32_t> SessionModelTest::tokens_;

TEST_F(SessionModelTest, RestoreAndContinueIsBitIdentical) {
  // A saving run stores a file at every save point; each file is restored into a fresh cache,
  // continued with the rest of the schedule and compared with a run that never saved.
#ifdef KVARN_SANITIZER_BUILD
  // The same paths at half the size (G = 64): save at 122, the decode steps cross the commit
  // at query 128.
  const std::vector<int> chunks = {64, 58};
  const int decode_steps = 8;
  const std::vector<const char*> codecs = {"kvarn_k4v2_g64"};
#else
  const std::vector<int> chunks = {128, 122, 50};  // save points: 250, 300
  const int decode_steps = 8;
  const std::vector<const char*> codecs = {"f16", "kvarn_k4v2_g128"};
#endif
  const ModelIdentity id = IdentifyModel(*model_);
  for (const char* codec_name : codecs) {
    SCOPED_TRACE(codec_name);
    CodecSpec codec;
    ASSERT_TRUE(ParseCodecSpec(codec_name, &codec).ok());
    // The uninterrupted run, which never saves.
    std::unique_ptr<KvCache> a;
    ASSERT_TRUE(model_->CreateCache(codec, 1024, size_t(1) << 30, &a).ok());
    int sa = 0, pos = 0;
    ASSERT_TRUE(a->AddSequence(&sa).ok());
    std::vector<std::vector<float>> after_chunk;  // logits after each chunk
    for (size_t c = 0; c < chunks.size(); ++c)
      after_chunk.push_back(Feed(*a, sa, {chunks[c]}, &pos));
    // The same prompt in another cache, saved after each chunk past the first (the first only
    // fills the sink).
    std::unique_ptr<KvCache> w;  // (on a copy: saving encodes committed blocks early)
    ASSERT_TRUE(model_->CreateCache(codec, 1024, size_t(1) << 30, &w).ok());
    int sw = 0, pos_w = 0;
    ASSERT_TRUE(w->AddSequence(&sw).ok());
    std::vector<std::string> files;
    std::vector<int> saved_at;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const std::vector<float> lw = Feed(*w, sw, {chunks[c]}, &pos_w);
      ASSERT_EQ(std::memcmp(lw.data(), after_chunk[c].data(), lw.size() * 4), 0)
          << "the saving run differs from the uninterrupted one after chunk " << c;
      if (c == 0) continue;
      files.push_back("/tmp/kvarn_session_model_test_" + std::to_string(::getpid()) + "_" +
                      codec_name + "_" + std::to_string(pos_w) + ".kvs");
      saved_at.push_back(pos_w);
      const std::vector<int32_t> prompt(tokens_.begin(), tokens_.begin() + pos_w);
      ASSERT_TRUE(WriteSession(files.back(), id, *w, sw, prompt, lw.data()).ok());
    }
    std::vector<std::vector<float>> trace_a;
    const std::vector<int32_t> ids_a = Decode(*a, sa, after_chunk.back(), decode_steps, &trace_a);
    if (codec.is_tile()) {
      ASSERT_GE(a->EncodedTokens(sa), codec.group) << "no commit was crossed";
    }

    for (size_t f = 0; f < files.size(); ++f) {
      SCOPED_TRACE("restored at " + std::to_string(saved_at[f]));
      std::unique_ptr<KvCache> b;
      ASSERT_TRUE(model_->CreateCache(codec, 1024, size_t(1) << 30, &b).ok());
      const std::vector<int32_t> prompt(tokens_.begin(), tokens_.begin() + saved_at[f]);
      RestoredSession r;
      const Status st = LoadSessionFile(files[f], id, *b, prompt.data(), saved_at[f], &r);
      ASSERT_TRUE(st.ok()) << st.message();
      ASSERT_EQ(r.reused, saved_at[f]);
      const std::vector<float>& saved_logits = after_chunk[f + 1];
      ASSERT_EQ(r.logits.size(), saved_logits.size());
      EXPECT_EQ(std::memcmp(r.logits.data(), saved_logits.data(), r.logits.size() * 4), 0);
      // The rest of the schedule: the remaining prompt chunks, then greedy decoding.
      int pos_b = saved_at[f];
      std::vector<float> lb = r.logits;
      for (size_t c = f + 2; c < chunks.size(); ++c) {
        lb = Feed(*b, r.seq, {chunks[c]}, &pos_b);
        EXPECT_EQ(std::memcmp(lb.data(), after_chunk[c].data(), lb.size() * 4), 0)
            << "logits after chunk " << c;
      }
      std::vector<std::vector<float>> trace_b;
      const std::vector<int32_t> ids_b = Decode(*b, r.seq, lb, decode_steps, &trace_b);
      EXPECT_EQ(ids_a, ids_b);
      ASSERT_EQ(trace_a.size(), trace_b.size());
      for (size_t i = 0; i < trace_a.size(); ++i)
        EXPECT_EQ(std::memcmp(trace_a[i].data(), trace_b[i].data(), trace_a[i].size() * 4), 0)
            << "logits of decode step " << i;
      EXPECT_EQ(a->EncodedTokens(sa), b->EncodedTokens(r.seq));
      std::remove(files[f].c_str());
    }
  }
}

TEST_F(SessionModelTest, IdentityTellsModelsApart) {
  const ModelIdentity a = IdentifyModel(*model_), b = IdentifyModel(*model_);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.arch, "llama");
  EXPECT_EQ(a.n_layers, 30);
  EXPECT_EQ(a.n_kv_heads, 3);
  EXPECT_EQ(a.head_dim, 64);
  const std::string qwen = testing::ModelPath(testing::kQwen);
  if (!testing::FileExists(qwen)) return;
  std::unique_ptr<Model> q;
  ASSERT_TRUE(Model::Load(qwen, &q).ok());
  const ModelIdentity c = IdentifyModel(*q);
  EXPECT_NE(a.fingerprint, c.fingerprint);
  EXPECT_EQ(c.arch, "qwen2");
}

}  // namespace
}  // namespace kvarn
