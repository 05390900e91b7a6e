// A fixed prompt gives the same greedy tokens and bit-identical logits across runs and thread
// counts: matrix products give each output element to one thread in a fixed summation order,
// and attention splits the context into thread-count-independent block ranges merged in order.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "model/model.h"
#include "model_test_util.h"

namespace kvarn {
namespace {

struct Trace {
  std::vector<int32_t> ids;
  std::vector<float> last_logits;
};

Trace Generate(const Model& m, const char* codec, int threads, int n) {
  CodecSpec spec;
  EXPECT_TRUE(ParseCodecSpec(codec, &spec).ok());
  std::unique_ptr<KvCache> cache;
  EXPECT_TRUE(m.CreateCache(spec, 1024, size_t(1) << 30, &cache).ok());
  int seq;
  EXPECT_TRUE(cache->AddSequence(&seq).ok());
  // 300 prompt tokens: past the sink, so encoded blocks take part.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 300; ++i) prompt.push_back(int32_t((i * 7919 + 13) % 20000 + 100));
  ForwardOptions fo;
  fo.n_threads = threads;
  ForwardOutput out;
  EXPECT_TRUE(m.Forward(*cache, seq, prompt.data(), 200, fo, &out).ok());
  EXPECT_TRUE(m.Forward(*cache, seq, prompt.data() + 200, 100, fo, &out).ok());
  Trace t;
  for (int s = 0; s < n; ++s) {
    int32_t best = 0;
    for (int32_t v = 1; v < int32_t(out.logits.size()); ++v)
      if (out.logits[size_t(v)] > out.logits[size_t(best)]) best = v;
    t.ids.push_back(best);
    EXPECT_TRUE(m.Forward(*cache, seq, &best, 1, fo, &out).ok());
  }
  t.last_logits = out.logits;
  return t;
}

TEST(Determinism, RunsAndThreadCountsAgreeBitForBit) {
  const std::string path = testing::ModelPath(testing::kSmolLM2);
  if (!testing::FileExists(path)) GTEST_SKIP() << path << " not fetched";
  std::unique_ptr<Model> m;
  ASSERT_TRUE(Model::Load(path, &m).ok());
#ifdef KVARN_SANITIZER_BUILD
  const int steps = 3;
#else
  const int steps = 12;
#endif
  for (const char* codec : {"kvarn_k4v2_g128", "q8_0"}) {
    const Trace a = Generate(*m, codec, 1, steps);
    const Trace b = Generate(*m, codec, 2, steps);
    const Trace c = Generate(*m, codec, 2, steps);
    EXPECT_EQ(a.ids, b.ids) << codec;
    EXPECT_EQ(b.ids, c.ids) << codec;
    ASSERT_EQ(a.last_logits.size(), b.last_logits.size());
    EXPECT_EQ(std::memcmp(a.last_logits.data(), b.last_logits.data(),
                          a.last_logits.size() * sizeof(float)), 0)
        << codec << ": logits differ between 1 and 2 threads";
    EXPECT_EQ(std::memcmp(b.last_logits.data(), c.last_logits.data(),
                          b.last_logits.size() * sizeof(float)), 0)
        << codec << ": logits differ between two runs";
  }
}

}  // namespace
}  // namespace kvarn

namespace kvarn {
namespace {

// DecodeBatch reads the weights once for several sequences; each item's logits must equal a
// single-token Forward of the same token on the same state, bit for bit (the matrix products
// take the per-token route for any number of items). Items: three cache types, several
// sequences of each cache, at different lengths, one with an encoded block; 18 of them, past
// kMatMulGemmMinTokens and past one token block (16) of the integer kernels (9 under the
// sanitizers).
TEST(Determinism, DecodeBatchEqualsSingleForwards) {
  const std::string path = testing::ModelPath(testing::kSmolLM2);
  if (!testing::FileExists(path)) GTEST_SKIP() << path << " not fetched";
  std::unique_ptr<Model> m;
  ASSERT_TRUE(Model::Load(path, &m).ok());
  const int V = m->config().n_vocab;
  struct Item { const char* codec; int cache; int prompt; };
#ifdef KVARN_SANITIZER_BUILD
  // ~10x slower: short prompts (fp16 sink pages and rows only; records are read in release).
  std::vector<Item> items = {
      {"kvarn_k4v2_g128", 0, 12}, {"kvarn_k4v2_g128", 0, 5}, {"f16", 1, 7}, {"q8_0", 2, 3}};
#else
  // 260 tokens: block 1 (128..255) is complete, so it is encoded at the first batched step
  // and read as a record from then on.
  std::vector<Item> items = {
      {"kvarn_k4v2_g128", 0, 260}, {"kvarn_k4v2_g128", 0, 20}, {"f16", 1, 40}, {"q8_0", 2, 9}};
#endif
  const char* codec_names[] = {"kvarn_k4v2_g128", "f16", "q8_0"};
#ifdef KVARN_SANITIZER_BUILD
  const int extra = 5;  // 9 items: still past kMatMulGemmMinTokens
#else
  const int extra = 14;  // 18 items: past one token block of 16 too
#endif
  for (int i = 0; i < extra; ++i) items.push_back({codec_names[i % 3], i % 3, 2 + (i * 5) % 11});
  // Two identical setups: one decodes batched, the other one item at a time.
  std::vector<std::unique_ptr<KvCache>> caches[2];
  std::vector<int> seqs[2];
  for (int side = 0; side < 2; ++side) {
    for (const char* codec : {"kvarn_k4v2_g128", "f16", "q8_0"}) {
      CodecSpec spec;
      ASSERT_TRUE(ParseCodecSpec(codec, &spec).ok());
      std::unique_ptr<KvCache> c;
      ASSERT_TRUE(m->CreateCache(spec, 512, size_t(1) << 30, &c).ok());
      caches[side].push_back(std::move(c));
    }
    for (const Item& it : items) {
      KvCache& c = *caches[side][size_t(it.cache)];
      int s;
      ASSERT_TRUE(c.AddSequence(&s).ok());
      std::vector<int32_t> prompt;
      for (int i = 0; i < it.prompt; ++i) prompt.push_back(int32_t((i * 31 + it.prompt) % 5000 + 50));
      ForwardOptions fo;
      ForwardOutput out;
      ASSERT_TRUE(m->Forward(c, s, prompt.data(), it.prompt, fo, &out).ok());
      seqs[side].push_back(s);
    }
  }
#ifdef KVARN_SANITIZER_BUILD
  const int steps = 1;  // the sanitizer build runs ~10x slower; one step checks the same path
#else
  const int steps = 3;
#endif
  for (int step = 0; step < steps; ++step) {
    std::vector<KvCache*> cp;
    std::vector<int32_t> toks;
    for (size_t i = 0; i < items.size(); ++i) {
      cp.push_back(caches[0][size_t(items[i].cache)].get());
      toks.push_back(int32_t(100 + 37 * int(i) + step));
    }
    std::vector<float> batched;
    ASSERT_TRUE(m->DecodeBatch(cp, seqs[0], toks, 2, &batched).ok());
    ASSERT_EQ(batched.size(), items.size() * size_t(V));
    for (size_t i = 0; i < items.size(); ++i) {
      ForwardOptions fo;
      fo.n_threads = 2;
      ForwardOutput out;
      ASSERT_TRUE(m->Forward(*caches[1][size_t(items[i].cache)], seqs[1][i], &toks[i], 1, fo, &out).ok());
      EXPECT_EQ(std::memcmp(out.logits.data(), batched.data() + i * size_t(V), size_t(V) * sizeof(float)), 0)
          << "item " << i << " (" << items[i].codec << "), step " << step;
    }
  }
  // A repeated sequence and a bad token are refused, and nothing is appended.
  std::vector<KvCache*> cp = {caches[0][0].get(), caches[0][0].get()};
  std::vector<float> lg;
  const int len = caches[0][0]->Length(seqs[0][0]);
  EXPECT_EQ(m->DecodeBatch(cp, {seqs[0][0], seqs[0][0]}, {1, 2}, 1, &lg).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(m->DecodeBatch({cp[0]}, {seqs[0][0]}, {V}, 1, &lg).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(caches[0][0]->Length(seqs[0][0]), len);
}

}  // namespace
}  // namespace kvarn
