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
