// The C API's model runs and session files on SmolLM2-135M (skipped when not fetched), compared
// bit for bit with the C++ layers they wrap: tokenization, per-position and last logits,
// generation as `kvarn run` loops, hooks, and a session saved and restored through the API.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "../model/model_test_util.h"
#include "kvarn/kvarn.h"
#include "kvarn/kvarn.hpp"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace {

#ifdef KVARN_SANITIZER_BUILD
constexpr int kPromptRepeat = 1;
constexpr int kGenerate = 4;
#else
constexpr int kPromptRepeat = 6;
constexpr int kGenerate = 24;
#endif

class CApiModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = kvarn::testing::ModelPath(kvarn::testing::kSmolLM2);
    if (!kvarn::testing::FileExists(path_)) return;
    ASSERT_EQ(kvarn_model_load(path_.c_str(), &model_), KVARN_OK) << kvarn_last_error();
    ASSERT_TRUE(kvarn::Model::Load(path_, &ref_).ok());
    ASSERT_TRUE(kvarn::Tokenizer::FromGguf(ref_->gguf(), &tok_).ok());
    for (int i = 0; i < kPromptRepeat; ++i)
      text_ +=
          "The dictionary is Python's mapping type: it maps hashable keys to arbitrary values, "
          "keeps insertion order, and resizes its table as it grows. ";
  }
  static void TearDownTestSuite() {
    kvarn_model_free(model_);
    model_ = nullptr;
    ref_.reset();
    tok_.reset();
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "SmolLM2 not fetched (scripts/fetch_models.sh)";
  }
  static std::vector<int32_t> Tokenize(const std::string& text) {
    size_t n = 0;
    EXPECT_EQ(kvarn_model_tokenize(model_, text.data(), text.size(), -1, 0, nullptr, 0, &n),
              KVARN_ERR_BUFFER_TOO_SMALL);
    std::vector<int32_t> ids(n);
    EXPECT_EQ(
        kvarn_model_tokenize(model_, text.data(), text.size(), -1, 0, ids.data(), ids.size(), &n),
        KVARN_OK);
    return ids;
  }

  static std::string path_, text_;
  static kvarn_model* model_;
  static std::unique_ptr<kvarn::Model> ref_;
  static std::unique_ptr<kvarn::Tokenizer> tok_;
};

std::string CApiModelTest::path_, CApiModelTest::text_;
kvarn_model* CApiModelTest::model_ = nullptr;
std::unique_ptr<kvarn::Model> CApiModelTest::ref_;
std::unique_ptr<kvarn::Tokenizer> CApiModelTest::tok_;

TEST_F(CApiModelTest, InfoAndTokenizerMatchTheModelLayer) {
  kvarn_model_info info{};
  ASSERT_EQ(kvarn_model_get_info(model_, &info), KVARN_OK);
  EXPECT_STREQ(info.arch, "llama");
  EXPECT_EQ(info.n_layers, ref_->config().n_layers);
  EXPECT_EQ(info.n_kv_heads, 3);
  EXPECT_EQ(info.head_dim, 64);
  EXPECT_EQ(info.n_vocab, ref_->config().n_vocab);
  EXPECT_EQ(info.bos, tok_->bos());
  std::vector<int32_t> ref_ids;
  ASSERT_TRUE(tok_->Encode(text_, false, &ref_ids).ok());
  if (tok_->add_bos()) ref_ids.insert(ref_ids.begin(), tok_->bos());
  EXPECT_EQ(Tokenize(text_), ref_ids);
  // Chat prompts as `kvarn run --chat` builds them; control text in content stays text.
  const char* roles[] = {"system", "user"};
  const char* contents[] = {"Be brief.", "What is <|im_start|>?"};
  size_t n = 0;
  std::vector<int32_t> chat(256);
  ASSERT_EQ(kvarn_model_tokenize_chat(model_, roles, contents, 2, 1, chat.data(), chat.size(), &n),
            KVARN_OK);
  chat.resize(n);
  std::string text(1024, '\0');
  size_t len = 0;
  ASSERT_EQ(
      kvarn_model_detokenize(model_, chat.data(), chat.size(), 1, text.data(), text.size(), &len),
      KVARN_OK);
  text.resize(len);
  EXPECT_EQ(text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is "
            "<|im_start|>?<|im_end|>\n<|im_start|>assistant\n");
  int32_t im_end = -1;
  for (int32_t id : chat)
    if (tok_->TokenBytes(id) == "<|im_end|>") im_end = id;
  EXPECT_EQ(kvarn_model_is_eog(model_, im_end), 1);
  EXPECT_EQ(kvarn_model_detokenize(model_, chat.data(), chat.size(), 1, text.data(), 3, &len),
            KVARN_ERR_BUFFER_TOO_SMALL);
  const char* bad_roles[] = {"robot"};
  EXPECT_EQ(
      kvarn_model_tokenize_chat(model_, bad_roles, contents, 1, 1, chat.data(), chat.size(), &n),
      KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvarn_last_error()).find("robot"), std::string::npos);
}

// Chunks of 256 and the rest, as kvarn run prefills; logits of every position as kvarn eval
// computes them, and of the last position as decoding does.
TEST_F(CApiModelTest, ForwardIsTheModelLayersBitForBit) {
  const std::vector<int32_t> ids = Tokenize(text_);
  const int V = ref_->config().n_vocab;
  for (const char* codec : {"kvarn_k4v2_g128"}) {
    kvarn::CodecSpec spec;
    ASSERT_TRUE(kvarn::ParseCodecSpec(codec, &spec).ok());
    kvarn_cache* c = nullptr;
    ASSERT_EQ(kvarn_model_cache_init(model_, codec, 2048, 0, &c), KVARN_OK);
    std::unique_ptr<kvarn::KvCache> rc;
    ASSERT_TRUE(ref_->CreateCache(spec, 2048, SIZE_MAX, &rc).ok());
    int seq = -1, rseq = -1;
    ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
    ASSERT_TRUE(rc->AddSequence(&rseq).ok());
    for (size_t i = 0; i < ids.size(); i += 64) {
      const int n = int(std::min<size_t>(64, ids.size() - i));
      const bool all = (i / 64) % 2 == 0;
      std::vector<float> got(size_t(all ? n : 1) * V);
      ASSERT_EQ(
          kvarn_model_forward(model_, c, seq, ids.data() + i, n, 1,
                              all ? KVARN_LOGITS_ALL : KVARN_LOGITS_LAST, got.data(), nullptr),
          KVARN_OK)
          << kvarn_last_error();
      kvarn::ForwardOptions fo;
      fo.n_threads = 1;
      fo.all_hidden = all;
      kvarn::ForwardOutput out;
      ASSERT_TRUE(ref_->Forward(*rc, rseq, ids.data() + i, n, fo, &out).ok());
      std::vector<float> want = out.logits;
      if (all) {
        want.resize(size_t(n) * V);
        ASSERT_TRUE(ref_->Logits(out.hidden.data(), n, want.data(), 1).ok());
      }
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0)
          << codec << ", chunk at " << i << (all ? " (all logits)" : " (last logits)");
    }
    kvarn_cache_free(c);
  }
}

struct HookLog {
  int kv_calls = 0, att_calls = 0, tokens = 0;
  float scale_k = 1.0f;
};

TEST_F(CApiModelTest, HooksSeeAndMayChangeKeysAndValues) {
  const std::vector<int32_t> ids = Tokenize("Hello, world. The answer is");
  const int V = ref_->config().n_vocab, L = ref_->config().n_layers;
  auto run = [&](float scale_k, HookLog* log) {
    kvarn_cache* c = nullptr;
    EXPECT_EQ(kvarn_model_cache_init(model_, "f32", 64, 0, &c), KVARN_OK);
    int seq = -1;
    EXPECT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
    log->scale_k = scale_k;
    kvarn_forward_hooks hooks{};
    hooks.user = log;
    hooks.on_kv = [](void* user, int, float* k, float*, int n) {
      auto* h = static_cast<HookLog*>(user);
      ++h->kv_calls;
      h->tokens = n;
      for (int i = 0; i < n * 3 * 64; ++i) k[i] *= h->scale_k;
    };
    hooks.on_attention = [](void* user, int, const float*, int) {
      ++static_cast<HookLog*>(user)->att_calls;
    };
    std::vector<float> logits(static_cast<size_t>(V));  // V captured by reference
    EXPECT_EQ(kvarn_model_forward(model_, c, seq, ids.data(), int(ids.size()), 1, KVARN_LOGITS_LAST,
                                  logits.data(), &hooks),
              KVARN_OK);
    kvarn_cache_free(c);
    return logits;
  };
  HookLog a, b;
  const std::vector<float> plain = run(1.0f, &a), scaled = run(0.0f, &b);
  EXPECT_EQ(a.kv_calls, L);
  EXPECT_EQ(a.att_calls, L);
  EXPECT_EQ(a.tokens, int(ids.size()));
  EXPECT_NE(plain, scaled);  // zeroed keys: uniform attention, other logits
}

TEST_F(CApiModelTest, GenerateIsKvarnRunsLoop) {
  const std::vector<int32_t> ids = Tokenize(text_);
  const int V = ref_->config().n_vocab;
  kvarn_cache* c = nullptr;
  ASSERT_EQ(kvarn_model_cache_init(model_, "kvarn_k4v2_g128", 2048, 0, &c), KVARN_OK);
  int seq = -1;
  ASSERT_EQ(kvarn_cache_add_sequence(c, &seq), KVARN_OK);
  std::vector<float> logits(static_cast<size_t>(V));
  ASSERT_EQ(kvarn_model_forward(model_, c, seq, ids.data(), int(ids.size()), 1, KVARN_LOGITS_LAST,
                                logits.data(), nullptr),
            KVARN_OK);
  kvarn_sampler* s = nullptr;
  ASSERT_EQ(kvarn_sampler_init(0.8f, 40, 0.95f, 0.05f, 7, &s), KVARN_OK);
  std::vector<int32_t> gen(static_cast<size_t>(kGenerate));
  std::vector<float> last(static_cast<size_t>(V));
  int n = 0;
  ASSERT_EQ(kvarn_model_generate(model_, c, seq, s, logits.data(), kGenerate, 1, gen.data(), &n,
                                 last.data()),
            KVARN_OK)
      << kvarn_last_error();
  gen.resize(size_t(n));

  // The same loop on the C++ layers (tools/kvarn/cmd_run.cc).
  kvarn::CodecSpec spec;
  ASSERT_TRUE(kvarn::ParseCodecSpec("kvarn_k4v2_g128", &spec).ok());
  std::unique_ptr<kvarn::KvCache> rc;
  ASSERT_TRUE(ref_->CreateCache(spec, 2048, SIZE_MAX, &rc).ok());
  int rseq = -1;
  ASSERT_TRUE(rc->AddSequence(&rseq).ok());
  kvarn::ForwardOptions fo;
  fo.n_threads = 1;
  kvarn::ForwardOutput out;
  ASSERT_TRUE(ref_->Forward(*rc, rseq, ids.data(), int(ids.size()), fo, &out).ok());
  kvarn::SamplerParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.top_p = 0.95f;
  sp.min_p = 0.05f;
  sp.seed = 7;
  std::unique_ptr<kvarn::Sampler> rs;
  ASSERT_TRUE(kvarn::Sampler::Create(sp, &rs).ok());
  std::vector<int32_t> want;
  for (int i = 0; i < kGenerate; ++i) {
    const int32_t next = rs->Sample(out.logits.data(), V);
    if (tok_->IsEog(next)) break;
    want.push_back(next);
    ASSERT_TRUE(ref_->Forward(*rc, rseq, &next, 1, fo, &out).ok());
  }
  EXPECT_EQ(gen, want);
  EXPECT_EQ(std::memcmp(last.data(), out.logits.data(), size_t(V) * 4), 0);
  kvarn_sampler_free(s);
  kvarn_cache_free(c);
}

TEST_F(CApiModelTest, SessionSavedAndRestoredThroughTheApi) {
  const std::vector<int32_t> ids = Tokenize(text_);
  const int V = ref_->config().n_vocab;
  const std::string file = "/tmp/kvarn_capi_session_" + std::to_string(::getpid()) + ".kvs";
  kvarn_cache* a = nullptr;
  ASSERT_EQ(kvarn_model_cache_init(model_, "kvarn_k4v2_g128", 2048, 0, &a), KVARN_OK);
  int sa = -1;
  ASSERT_EQ(kvarn_cache_add_sequence(a, &sa), KVARN_OK);
  std::vector<float> logits(static_cast<size_t>(V));
  ASSERT_EQ(kvarn_model_forward(model_, a, sa, ids.data(), int(ids.size()), 1, KVARN_LOGITS_LAST,
                                logits.data(), nullptr),
            KVARN_OK);
  ASSERT_EQ(kvarn_session_save(model_, a, sa, ids.data(), ids.size(), logits.data(), file.c_str()),
            KVARN_OK)
      << kvarn_last_error();
  size_t n = 0;
  std::vector<int32_t> saved(ids.size());
  ASSERT_EQ(kvarn_session_tokens(file.c_str(), saved.data(), saved.size(), &n), KVARN_OK);
  EXPECT_EQ(saved, ids);

  kvarn_cache* b = nullptr;
  ASSERT_EQ(kvarn_model_cache_init(model_, "kvarn_k4v2_g128", 2048, 0, &b), KVARN_OK);
  int sb = -1, has = 0;
  size_t reused = 0;
  std::vector<float> restored(static_cast<size_t>(V));
  ASSERT_EQ(kvarn_session_load(model_, b, file.c_str(), ids.data(), ids.size(), &sb, &reused,
                               restored.data(), &has),
            KVARN_OK)
      << kvarn_last_error();
  EXPECT_EQ(reused, ids.size());
  EXPECT_EQ(has, 1);
  EXPECT_EQ(restored, logits);
  kvarn_sampler* s = nullptr;
  ASSERT_EQ(kvarn_sampler_init(0.0f, 0, 1.0f, 0.0f, 0, &s), KVARN_OK);
  std::vector<int32_t> ga(static_cast<size_t>(kGenerate)), gb(static_cast<size_t>(kGenerate));
  std::vector<float> la(static_cast<size_t>(V)), lb(static_cast<size_t>(V));
  int na = 0, nb = 0;
  ASSERT_EQ(kvarn_model_generate(model_, a, sa, s, logits.data(), kGenerate, 1, ga.data(), &na,
                                 la.data()),
            KVARN_OK);
  ASSERT_EQ(kvarn_model_generate(model_, b, sb, s, restored.data(), kGenerate, 1, gb.data(), &nb,
                                 lb.data()),
            KVARN_OK);
  EXPECT_EQ(ga, gb);
  EXPECT_EQ(na, nb);
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), size_t(V) * 4), 0);

  // Refusals: another codec, a truncated file; the cache keeps what it had.
  kvarn_cache* f16 = nullptr;
  ASSERT_EQ(kvarn_model_cache_init(model_, "f16", 2048, 0, &f16), KVARN_OK);
  int sf = -1;
  EXPECT_EQ(
      kvarn_session_load(model_, f16, file.c_str(), nullptr, 0, &sf, &reused, nullptr, nullptr),
      KVARN_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvarn_last_error()).find("holds a kvarn_k4v2_g128 cache"),
            std::string::npos)
      << kvarn_last_error();
  std::ifstream in(file, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), 1000);
  kvarn_cache_stats before{}, after{};
  ASSERT_EQ(kvarn_cache_get_stats(b, &before), KVARN_OK);
  EXPECT_EQ(kvarn_session_load(model_, b, file.c_str(), nullptr, 0, &sb, &reused, nullptr, nullptr),
            KVARN_ERR_CORRUPT_DATA);
  EXPECT_NE(std::string(kvarn_last_error()).find("truncated"), std::string::npos);
  ASSERT_EQ(kvarn_cache_get_stats(b, &after), KVARN_OK);
  EXPECT_EQ(before.total_bytes, after.total_bytes);
  EXPECT_EQ(
      kvarn_session_load(model_, b, "/nonexistent.kvs", nullptr, 0, &sb, &reused, nullptr, nullptr),
      KVARN_ERR_IO);
  std::remove(file.c_str());
  kvarn_sampler_free(s);
  kvarn_cache_free(a);
  kvarn_cache_free(b);
  kvarn_cache_free(f16);
}

TEST_F(CApiModelTest, CppWrapperRunsTheModel) {
  std::string err;
  kvarn::api::Model bad = kvarn::api::Model::Load("/nonexistent.gguf", &err);
  EXPECT_FALSE(bad);
  EXPECT_NE(err.find("/nonexistent.gguf"), std::string::npos);
  kvarn::api::Model m = kvarn::api::Model::Load(path_, &err);
  ASSERT_TRUE(m) << err;
  kvarn::api::Cache c = m.CreateCache("kvarn_k4v2_g128", 512, 0, &err);
  ASSERT_TRUE(c) << err;
  std::vector<int32_t> ids;
  ASSERT_EQ(m.Tokenize("Once upon a time", &ids), KVARN_OK);
  EXPECT_EQ(ids, Tokenize("Once upon a time"));
  int seq = -1;
  ASSERT_EQ(c.AddSequence(&seq), KVARN_OK);
  std::vector<float> logits;
  ASSERT_EQ(m.Forward(c, seq, ids.data(), int(ids.size()), 1, &logits), KVARN_OK);
  EXPECT_EQ(logits.size(), size_t(m.Info().n_vocab));
  std::string text;
  ASSERT_EQ(m.Detokenize(ids, &text), KVARN_OK);
  EXPECT_EQ(text, "Once upon a time");
}

}  // namespace
