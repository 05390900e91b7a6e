// Limits with clear errors, and that hitting one damages nothing else: a prompt longer than the
// context, an exhausted cache byte budget while another sequence is live, head_dim or G a codec
// does not support, NaN/Inf reaching the cache, and thread counts of 0, negative or far above
// the core count. The model is a tiny synthetic llama (head_dim 64, two layers, f32 weights)
// written with the test GGUF writer, so these run everywhere in milliseconds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/rng.h"
#include "gguf_writer.h"
#include "model/model.h"

namespace kvarn {
namespace {

using gguftest::Bytes;
using gguftest::GgufWriter;

constexpr uint32_t kF32 = 0;
constexpr int kVocab = 32;
constexpr int32_t kPoison = kVocab - 1;  // its K overflows to Inf in layer 0 (see BuildTiny)

#define EXPECT_MSG(status, text) \
  EXPECT_NE((status).message().find(text), std::string::npos) << (status).message()

struct TinySpec {
  int embd = 64;
  int heads = 1;
  int layers = 2;
  int ff = 96;
};

// A llama with random f32 weights (fixed seed). Channel 0 of the token embeddings is zero except
// for kPoison, which is one-hot there, and layer 0's K projection weighs channel 0 by 1e38: the
// poison token's K is Inf in layer 0 while its query and every other token stay finite. Later
// layers' K weights are ordinary, since the residual stream then uses channel 0.
Bytes BuildTiny(const TinySpec& s) {
  const uint64_t E = uint64_t(s.embd), F = uint64_t(s.ff), V = kVocab;
  GgufWriter w;
  w.KvString("general.architecture", "llama");
  w.KvU32("llama.block_count", uint32_t(s.layers));
  w.KvU32("llama.embedding_length", uint32_t(E));
  w.KvU32("llama.feed_forward_length", uint32_t(F));
  w.KvU32("llama.attention.head_count", uint32_t(s.heads));
  w.KvU32("llama.context_length", 4096);
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
  };
  std::vector<T> ts = {{"token_embd.weight", {E, V}}, {"output_norm.weight", {E}}};
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", {E}});
    ts.push_back({p + "ffn_norm.weight", {E}});
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"})
      ts.push_back({p + m + ".weight", {E, E}});
    ts.push_back({p + "ffn_gate.weight", {E, F}});
    ts.push_back({p + "ffn_up.weight", {E, F}});
    ts.push_back({p + "ffn_down.weight", {F, E}});
  }
  for (const T& t : ts) {
    uint64_t n = 1;
    for (uint64_t d : t.ne) n *= d;
    w.Tensor(t.name, t.ne, kF32, 4 * n);
  }
  Bytes b = w.Build();
  // The writer lays out a byte pattern; overwrite each tensor with its weights in place.
  std::unique_ptr<GgufFile> f;
  const Status st = GgufFile::OpenBuffer(b.data(), b.size(), "tiny", &f);
  EXPECT_TRUE(st.ok()) << st.message();
  if (!st.ok()) return b;
  Rng rng(7);
  for (const GgufTensorInfo& t : f->tensors()) {
    const std::string name(t.name);
    std::vector<float> x(t.n_elements);
    const bool norm = name.find("norm") != std::string::npos;
    const double scale = 1.0 / std::sqrt(double(t.ne[0]));
    for (size_t i = 0; i < x.size(); ++i) x[i] = norm ? 1.0f : float(rng.Normal() * scale);
    if (name == "token_embd.weight") {
      for (uint64_t row = 0; row < V; ++row) x[row * E] = 0.0f;
      for (uint64_t i = 0; i < E; ++i) x[(V - 1) * E + i] = i == 0 ? 1.0f : 0.0f;
    }
    if (name == "blk.0.attn_k.weight") {
      for (uint64_t row = 0; row < E; ++row) x[row * E] = 1e38f;
    }
    std::memcpy(b.data() + f->data_offset() + t.offset, x.data(), x.size() * 4);
  }
  return b;
}

std::unique_ptr<Model> LoadTiny(const TinySpec& spec = {}) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string path = ::testing::TempDir() + "kvarn_limits_" + info->name() + ".gguf";
  EXPECT_TRUE(gguftest::WriteFile(path, BuildTiny(spec)));
  std::unique_ptr<Model> m;
  const Status s = Model::Load(path, &m);
  std::remove(path.c_str());
  EXPECT_TRUE(s.ok()) << s.message();
  return m;
}

CodecSpec SpecOf(const char* name) {
  CodecSpec c;
  EXPECT_TRUE(ParseCodecSpec(name, &c).ok()) << name;
  return c;
}

std::vector<int32_t> Tokens(int n, int salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = (i * 7 + salt * 3 + 1) % (kVocab - 1);  // no poison
  return t;
}

std::unique_ptr<KvCache> MakeCache(const Model& m, const char* codec, int max_tokens,
                                   size_t budget = size_t(1) << 30) {
  std::unique_ptr<KvCache> c;
  const Status s = m.CreateCache(SpecOf(codec), max_tokens, budget, &c);
  EXPECT_TRUE(s.ok()) << s.message();
  return c;
}

int AddSeq(KvCache& c) {
  int seq = -1;
  EXPECT_TRUE(c.AddSequence(&seq).ok());
  return seq;
}

Status Step(const Model& m, KvCache& c, int seq, const std::vector<int32_t>& t,
           std::vector<float>* logits = nullptr, int n_threads = 1) {
  ForwardOptions opt;
  opt.n_threads = n_threads;
  ForwardOutput out;
  KVARN_RETURN_IF_ERROR(m.Forward(c, seq, t.data(), int(t.size()), opt, &out));
  if (logits != nullptr) *logits = out.logits;
  return Status::Ok();
}

// The logits of decoding `decode` one token at a time after prefilling `prompt`, on a fresh
// cache of its own: the reference a sequence sharing a cache must match bit for bit.
std::vector<std::vector<float>> Reference(const Model& m, const char* codec,
                                          const std::vector<int32_t>& prompt,
                                          const std::vector<int32_t>& decode) {
  auto c = MakeCache(m, codec, 4096);
  const int seq = AddSeq(*c);
  std::vector<std::vector<float>> out;
  std::vector<float> l;
  EXPECT_TRUE(Step(m, *c, seq, prompt, &l).ok());
  out.push_back(l);
  for (int32_t t : decode) {
    EXPECT_TRUE(Step(m, *c, seq, {t}, &l).ok());
    out.push_back(l);
  }
  return out;
}

TEST(LimitsTest, PromptLongerThanContext) {
  auto m = LoadTiny();
  ASSERT_NE(m, nullptr);
  auto c = MakeCache(*m, "kvarn_k4v2_g64", 48);
  const int seq = AddSeq(*c);
  Status s = Step(*m, *c, seq, Tokens(49, 0));
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_MSG(s, "sequence " + std::to_string(seq) + " holds 0 tokens, a step of 49 would exceed the context of 48");
  EXPECT_EQ(c->Length(seq), 0);

  // The sequence is unharmed: it fills the context exactly, then refuses one more token.
  std::vector<float> got;
  ASSERT_TRUE(Step(*m, *c, seq, Tokens(40, 0), &got).ok());
  const auto ref = Reference(*m, "kvarn_k4v2_g64", Tokens(40, 0), Tokens(8, 1));
  EXPECT_EQ(got, ref[0]);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(Step(*m, *c, seq, {Tokens(8, 1)[size_t(i)]}, &got).ok());
    EXPECT_EQ(got, ref[size_t(i) + 1]) << "decode step " << i;
  }
  s = Step(*m, *c, seq, {1});
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_MSG(s, "holds 48 tokens, a step of 1 would exceed the context of 48");
  EXPECT_EQ(c->Length(seq), 48);
}

// A request that exhausts the byte budget fails alone: the live sequences keep their tokens
// and decode exactly as they would in a cache of their own, also across the block boundary
// that makes them allocate and encode.
TEST(LimitsTest, BudgetExhaustedWhileOthersLive) {
  auto m = LoadTiny();
  ASSERT_NE(m, nullptr);
  const char* codec = "kvarn_k4v2_g64";
  // A crosses token 128: it allocates block 2, then encodes block 1 (block 0 is the sink).
  const auto prompt_a = Tokens(120, 2), decode_a = Tokens(12, 3);
  const auto prompt_b = Tokens(10, 4), decode_b = Tokens(3, 5);
  const auto ref_a = Reference(*m, codec, prompt_a, decode_a);
  const auto ref_b = Reference(*m, codec, prompt_b, decode_b);

  // Measure what A and B hold, then give the cache that plus the pages A's decode needs
  // (one fp16 block, then one record when block 1 encodes), and not a page more.
  size_t used = 0, f16_page = 0, record_page = 0;
  {
    auto probe = MakeCache(*m, codec, 4096);
    const int a = AddSeq(*probe), b = AddSeq(*probe);
    ASSERT_TRUE(Step(*m, *probe, a, prompt_a).ok());
    ASSERT_TRUE(Step(*m, *probe, b, prompt_b).ok());
    used = probe->Stats().total();
    f16_page = probe->PageBytes(BlockKind::kF16);
    record_page = probe->PageBytes(BlockKind::kRecord);
  }
  const size_t budget = used + f16_page + record_page;
  auto c = MakeCache(*m, codec, 4096, budget);
  const int a = AddSeq(*c), b = AddSeq(*c);
  std::vector<float> got;
  ASSERT_TRUE(Step(*m, *c, a, prompt_a, &got).ok());
  EXPECT_EQ(got, ref_a[0]);
  ASSERT_TRUE(Step(*m, *c, b, prompt_b, &got).ok());
  EXPECT_EQ(got, ref_b[0]);

  // A third sequence's long prompt needs more than the budget has left.
  const int x = AddSeq(*c);
  Status s = Step(*m, *c, x, Tokens(300, 6));
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_MSG(s, "byte budget exhausted: sequence " + std::to_string(x));
  EXPECT_MSG(s, "of " + std::to_string(budget) + " bytes in use");
  EXPECT_EQ(c->Length(x), 0);
  // B asks for too much too; it keeps its 10 tokens.
  s = Step(*m, *c, b, Tokens(300, 7));
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(c->Length(b), 10);
  ASSERT_TRUE(c->RemoveSequence(x).ok());

  for (size_t i = 0; i < decode_a.size(); ++i) {
    ASSERT_TRUE(Step(*m, *c, a, {decode_a[i]}, &got).ok()) << "A decode step " << i;
    EXPECT_EQ(got, ref_a[i + 1]) << "A decode step " << i;
    if (i < decode_b.size()) {
      ASSERT_TRUE(Step(*m, *c, b, {decode_b[i]}, &got).ok()) << "B decode step " << i;
      EXPECT_EQ(got, ref_b[i + 1]) << "B decode step " << i;
    }
  }
  EXPECT_GT(c->EncodedTokens(a), 0);  // A's block 1 was encoded within the budget
  EXPECT_LE(c->Stats().total(), budget);
}

TEST(LimitsTest, HeadDimOrGroupUnsupportedByCodec) {
  TinySpec spec;
  spec.embd = 80;  // head_dim 80: no Hadamard size, not a multiple of 32
  auto m80 = LoadTiny(spec);
  ASSERT_NE(m80, nullptr);
  std::unique_ptr<KvCache> c;
  for (const char* name : {"kvarn_k4v2_g128", "q8_0", "q4_0"}) {
    c.reset();
    Status s = m80->CreateCache(SpecOf(name), 64, size_t(1) << 30, &c);
    EXPECT_EQ(s.code(), StatusCode::kUnsupported) << name;
    EXPECT_MSG(s, "head_dim 80");
    EXPECT_EQ(c, nullptr);
  }
  // f32 and f16 store any head_dim: the same model still runs with them.
  c = MakeCache(*m80, "f16", 64);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Step(*m80, *c, AddSeq(*c), Tokens(5, 0)).ok());

  auto m = LoadTiny();
  ASSERT_NE(m, nullptr);
  CodecSpec bad = SpecOf("kvarn_k4v2_g128");
  for (int g : {0, -8, 12, 2048}) {
    bad.group = g;
    c.reset();
    Status s = m->CreateCache(bad, 64, size_t(1) << 30, &c);
    EXPECT_EQ(s.code(), StatusCode::kUnsupported) << "G " << g;
    EXPECT_MSG(s, "G " + std::to_string(g) + " is not a multiple of 8 in [8, 1024]");
    EXPECT_EQ(c, nullptr);
  }
  CodecSpec bits = SpecOf("kvarn_k4v2_g128");
  bits.k_bits = 3;
  Status s = m->CreateCache(bits, 64, size_t(1) << 30, &c);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_MSG(s, "K bits 3, V bits 2 not in {2,4,8}");
  // Nothing about the model changed: it still runs with a supported codec.
  c = MakeCache(*m, "kvarn_k4v2_g64", 64);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(Step(*m, *c, AddSeq(*c), Tokens(5, 0)).ok());
}

// The poison token's K is Inf in layer 0. The step fails naming layer and position; the
// sequence keeps its earlier tokens, continues exactly as if the step never happened, and a
// second sequence in the same cache is not disturbed.
TEST(LimitsTest, NonFiniteReachingTheCache) {
  auto m = LoadTiny();
  ASSERT_NE(m, nullptr);
  for (const char* codec : {"kvarn_k4v2_g64", "q8_0", "f16"}) {
    SCOPED_TRACE(codec);
    const auto prompt = Tokens(20, 1), decode = Tokens(4, 2);
    const auto ref = Reference(*m, codec, prompt, decode);
    auto c = MakeCache(*m, codec, 256);
    const int seq = AddSeq(*c), other = AddSeq(*c);
    ASSERT_TRUE(Step(*m, *c, other, Tokens(9, 3)).ok());
    std::vector<float> got;
    ASSERT_TRUE(Step(*m, *c, seq, prompt, &got).ok());

    Status s = Step(*m, *c, seq, {kPoison});
    EXPECT_EQ(s.code(), StatusCode::kNonFinite);
    EXPECT_MSG(s, "layer 0, position 20");
    EXPECT_EQ(c->Length(seq), 20);
    // In a prefill chunk: the poison's own position is named.
    s = Step(*m, *c, seq, {3, 4, kPoison, 5});
    EXPECT_EQ(s.code(), StatusCode::kNonFinite);
    EXPECT_MSG(s, "layer 0, position 22");
    EXPECT_EQ(c->Length(seq), 20);

    for (size_t i = 0; i < decode.size(); ++i) {
      ASSERT_TRUE(Step(*m, *c, seq, {decode[i]}, &got).ok());
      EXPECT_EQ(got, ref[i + 1]) << "decode step " << i;
    }
    EXPECT_EQ(c->Length(other), 9);
    ASSERT_TRUE(Step(*m, *c, other, {1}).ok());
  }
}

TEST(LimitsTest, ThreadCountsOutOfRange) {
  auto m = LoadTiny();
  ASSERT_NE(m, nullptr);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const auto prompt = Tokens(70, 0);  // several rows per thread, and a block boundary
  std::vector<float> ref;
  {
    auto c = MakeCache(*m, "kvarn_k4v2_g64", 256);
    ASSERT_TRUE(Step(*m, *c, AddSeq(*c), prompt, &ref, 1).ok());
  }
  for (int t : {0, -1, -1000, cores, cores + 1, 4 * cores + 3, 100000}) {
    auto c = MakeCache(*m, "kvarn_k4v2_g64", 256);
    const int seq = AddSeq(*c);
    std::vector<float> got;
    const Status s = Step(*m, *c, seq, prompt, &got, t);
    ASSERT_TRUE(s.ok()) << "n_threads " << t << ": " << s.message();
    EXPECT_EQ(got, ref) << "n_threads " << t;
    ASSERT_TRUE(Step(*m, *c, seq, {5}, &got, t).ok()) << "n_threads " << t;
  }
}

}  // namespace
}  // namespace kvarn
