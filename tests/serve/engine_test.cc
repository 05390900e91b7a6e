// The scheduler on the real SmolLM2: concurrent greedy requests give exactly the tokens each
// gives alone and what `kvarn run --temp 0` computes (chunked prefill at the same positions,
// then single-token steps); prefix reuse gives what a cold prefill gives; a budget that holds
// two sequences runs two, queues one, refuses the next, and the others are unaffected;
// cancellation frees the pages. Every wait is bounded.
#include "serve/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../model/model_test_util.h"

namespace kvarn::serve {
namespace {

using std::chrono::milliseconds;

struct Env {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};

const Env* LoadEnv() {
  static Env* env = [] {
    auto* e = new Env;
    const std::string path = testing::ModelPath(testing::kSmolLM2);
    if (!testing::FileExists(path) || !Model::Load(path, &e->model).ok() ||
        !Tokenizer::FromGguf(e->model->gguf(), &e->tok).ok())
      e->model.reset();
    return e;
  }();
  return env->model ? env : nullptr;
}

#define REQUIRE_MODEL(env)    \
  const Env* env = LoadEnv(); \
  if (env == nullptr) GTEST_SKIP() << testing::kSmolLM2 << " not fetched"

std::vector<int32_t> Prompt(const Env& env, const std::string& text) {
  std::vector<int32_t> ids;
  EXPECT_TRUE(env.tok->Encode(text, false, &ids).ok());
  if (env.tok->add_bos() && env.tok->bos() >= 0) ids.insert(ids.begin(), env.tok->bos());
  return ids;
}

CompletionRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  CompletionRequest r;
  r.endpoint = Endpoint::kCompletion;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampler.temperature = 0.0f;
  r.logprobs = true;  // the events then carry the token ids
  return r;
}

struct Result {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;  // of each token: equal only if the logits are bit-identical
  std::string text, finish;
  Usage usage;
  bool failed = false;
  ApiError error;
};

Result Collect(Job& job, int timeout_s = 300) {
  Result r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::vector<JobEvent> events;
  while (std::chrono::steady_clock::now() < deadline) {
    events.clear();
    if (!job.Wait(&events, milliseconds(50))) continue;
    for (JobEvent& e : events) {
      if (e.failed) {
        r.failed = true;
        r.error = e.error;
        return r;
      }
      r.text += e.text;
      for (const TokenLogprob& t : e.logprobs) {
        r.ids.push_back(t.id);
        r.logprobs.push_back(t.logprob);
      }
      if (!e.finish_reason.empty()) {
        r.finish = e.finish_reason;
        r.usage = e.usage;
        return r;
      }
    }
  }
  ADD_FAILURE() << "no finish within " << timeout_s << " s";
  job.Cancel();
  return r;
}

// What `kvarn run --temp 0 -b chunk` does: chunks of the prompt from position 0, then greedy
// single-token steps (the end-of-generation token ends it).
std::vector<int32_t> RunAlone(const Env& env, const char* codec, const std::vector<int32_t>& prompt,
                              int chunk, int n) {
  CodecSpec spec;
  EXPECT_TRUE(ParseCodecSpec(codec, &spec).ok());
  std::unique_ptr<KvCache> cache;
  EXPECT_TRUE(env.model->CreateCache(spec, 1024, size_t(1) << 30, &cache).ok());
  int seq;
  EXPECT_TRUE(cache->AddSequence(&seq).ok());
  ForwardOptions fo;
  fo.n_threads = 2;
  ForwardOutput out;
  for (size_t i = 0; i < prompt.size(); i += size_t(chunk)) {
    const int m = int(std::min(prompt.size() - i, size_t(chunk)));
    EXPECT_TRUE(env.model->Forward(*cache, seq, prompt.data() + i, m, fo, &out).ok());
  }
  std::vector<int32_t> ids;
  while (int(ids.size()) < n) {
    int32_t best = 0;
    for (int32_t v = 1; v < int32_t(out.logits.size()); ++v)
      if (out.logits[size_t(v)] > out.logits[size_t(best)]) best = v;
    if (env.tok->IsEog(best)) break;
    ids.push_back(best);
    if (int(ids.size()) == n) break;
    EXPECT_TRUE(env.model->Forward(*cache, seq, &best, 1, fo, &out).ok());
  }
  return ids;
}

struct Server {
  Server(const Env& env, const char* codec, size_t budget, EngineOptions o, bool start = true) {
    CodecSpec spec;
    EXPECT_TRUE(ParseCodecSpec(codec, &spec).ok());
    EXPECT_TRUE(env.model->CreateCache(spec, 1024, budget, &cache).ok());
    engine = std::make_unique<Engine>(*env.model, *env.tok, *cache, o);
    if (start) engine->Start();
  }
  ~Server() { engine->Stop(); }
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Engine> engine;
};

std::vector<std::string> Texts() {
  return {"The capital of France is",
          "def fibonacci(n):",
          "Water boils at",
          "Once upon a time, in a small village,",
          "The three primary colors are",
          "import numpy as np\n",
          "My favourite season is",
          "In 1969, the first humans",
          "A haiku about the sea:",
          "The quick brown fox",
          "SELECT name FROM users WHERE",
          "Photosynthesis is the process",
          "To make a cup of tea, first",
          "The largest planet in the solar system",
          "Dear diary, today",
          "The speed of light is"};
}

#ifdef KVARN_SANITIZER_BUILD
// Still past kMatMulGemmMinTokens sequences at once; prompts take 1 to 3 chunks, so 5 tokens
// keep every request decoding in the third step.
constexpr int kRequests = 9, kTokens = 5;
#else
constexpr int kRequests = 16, kTokens = 6;
#endif

TEST(Engine, ConcurrentGreedyRequestsEqualEachAloneAndKvarnRun) {
  REQUIRE_MODEL(env);
  EngineOptions o;
  o.n_threads = 2;
  o.chunk = 4;  // prompts of 5-10 tokens: two or three chunks each, the last one short
  o.prefill_rows_per_step = 64;  // every prompt prefilled within a few steps: they decode together
  o.max_running = 16;
  o.prefix_reuse = false;
  // All submitted before the scheduler starts: its first step admits every one.
  Server s(*env, "kvarn_k4v2_g128", size_t(1) << 30, o, /*start=*/false);
  const auto texts = Texts();
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < kRequests; ++i) {
    jobs.push_back(std::make_shared<Job>(Greedy(Prompt(*env, texts[size_t(i)]), kTokens)));
    ASSERT_FALSE(s.engine->Submit(jobs.back()).has_value());
  }
  s.engine->Start();
  std::vector<Result> together;
  for (auto& j : jobs) together.push_back(Collect(*j));
  // The decode steps did run batched: some with more than 8 sequences (past the size where the
  // matrix products would take the GEMM path without the per-token route).
  const EngineSnapshot snap = s.engine->Snapshot();
  const auto& bounds = snap.decode_batch_size.bounds();
  uint64_t over8 = 0;
  for (size_t b = 0; b <= bounds.size(); ++b)
    if (b == bounds.size() || bounds[b] > 8) over8 += snap.decode_batch_size.counts()[b];
  EXPECT_GT(over8, 0u) << "no decode step had more than 8 sequences";
  for (int i = 0; i < kRequests; ++i) {
    const auto prompt = Prompt(*env, texts[size_t(i)]);
    const Result& r = together[size_t(i)];
    ASSERT_FALSE(r.failed) << r.error.message;
    EXPECT_EQ(r.ids, RunAlone(*env, "kvarn_k4v2_g128", prompt, o.chunk, kTokens))
        << "request " << i << " under load against kvarn run's loop alone";
    if (i < 2) {  // logprobs too (bit-identical logits), against the same request alone
      auto alone = std::make_shared<Job>(Greedy(prompt, kTokens));
      ASSERT_FALSE(s.engine->Submit(alone).has_value());
      const Result a = Collect(*alone);
      EXPECT_EQ(r.ids, a.ids);
      EXPECT_EQ(r.logprobs, a.logprobs) << "request " << i << ": logits differ under load";
    }
    EXPECT_EQ(r.text, env->tok->Decode(r.ids)) << "request " << i;
    EXPECT_EQ(r.usage.prompt_tokens, int(prompt.size()));
    EXPECT_EQ(r.usage.completion_tokens, int(r.ids.size()));
    EXPECT_EQ(r.finish, int(r.ids.size()) == kTokens ? "length" : "stop");
  }
}

// A long shared prefix, then different questions: the second request reuses the prefix's
// whole aligned chunks (lcm(chunk, 128-token block): 384 with chunk 96, so a copy at a block
// boundary that is not a chunk boundary would be wrong) and answers exactly - logprobs bit for
// bit - as a cold prefill does (a server without prefix reuse). Encoded records are copied.
TEST(Engine, PrefixReuseEqualsColdPrefill) {
  REQUIRE_MODEL(env);
#ifdef KVARN_SANITIZER_BUILD
  const int facts = 42, chunk = 32, align = 128;  // ~300 tokens: 256 reused (a record)
#else
  const int facts = 85, chunk = 96, align = 384;
#endif
  std::string shared = "You are a careful assistant. Facts:";
  for (int i = 0; i < facts; ++i) shared += " fact " + std::to_string(i) + " is true.";
  const auto a = Prompt(*env, shared + " Question: what is fact 3?");
  const auto b = Prompt(*env, shared + " Question: name two facts.");
  EngineOptions o;
  o.n_threads = 2;
  o.chunk = chunk;
  Server warm(*env, "kvarn_k4v2_g128", size_t(1) << 30, o);
  ASSERT_EQ(warm.engine->prefix_align(), align);
  size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common]) ++common;
  const int expect_cached = int(std::min(common, b.size() - 1)) / align * align;
  ASSERT_GE(expect_cached, 256);
  if (align != 128) {  // release: a block-aligned cut that is not chunk-aligned would differ
    ASSERT_NE(expect_cached, int(common) / 128 * 128);
  }
  auto ja = std::make_shared<Job>(Greedy(a, 2));
  ASSERT_FALSE(warm.engine->Submit(ja).has_value());
  const Result ra = Collect(*ja);
  ASSERT_FALSE(ra.failed);
  EXPECT_EQ(ra.usage.cached_tokens, 0);
  auto jb = std::make_shared<Job>(Greedy(b, kTokens));
  ASSERT_FALSE(warm.engine->Submit(jb).has_value());
  const Result rb = Collect(*jb);
  ASSERT_FALSE(rb.failed);
  EXPECT_EQ(rb.usage.cached_tokens, expect_cached);
  EXPECT_EQ(warm.engine->Snapshot().prompt_tokens_cached, expect_cached);

  o.prefix_reuse = false;
  Server cold(*env, "kvarn_k4v2_g128", size_t(1) << 30, o);
  auto jc = std::make_shared<Job>(Greedy(b, kTokens));
  ASSERT_FALSE(cold.engine->Submit(jc).has_value());
  const Result rc = Collect(*jc);
  EXPECT_EQ(rc.usage.cached_tokens, 0);
  EXPECT_EQ(rb.ids, rc.ids);
  EXPECT_EQ(rb.logprobs, rc.logprobs) << "logits differ from a cold prefill";
  EXPECT_EQ(rb.text, rc.text);
}

// A budget that holds exactly two of these requests' worst cases: two run, the third waits in
// a queue of one, the fourth is refused with 429; the waiting one runs when room frees, and all
// three answer exactly as alone. A request larger than the whole budget is refused with 400.
TEST(Engine, BudgetAdmitsWhatFitsQueuesOneAndRefusesTheNext) {
  REQUIRE_MODEL(env);
  EngineOptions o;
  o.n_threads = 2;
  o.chunk = 16;
  o.max_running = 8;
  o.max_waiting = 1;
  o.prefix_reuse = false;
  const auto texts = Texts();
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(Prompt(*env, texts[size_t(i)]));
  // Prompts < 16 tokens and at most 24 more: one fp16 page each at the peak, all equal.
  const int first_tokens = 3 * kTokens, max_tokens = kTokens;
  Server probe(*env, "kvarn_k4v2_g128", size_t(1) << 30, o);
  size_t need = 0;
  for (const auto& p : prompts)
    need = std::max(need, probe.engine->ColdPeakBytes(int(p.size()), first_tokens));
  EXPECT_EQ(need, probe.cache->PageBytes(BlockKind::kF16));
  Server s(*env, "kvarn_k4v2_g128", 2 * need, o);
  std::vector<std::shared_ptr<Job>> jobs;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < 2; ++i) {  // admitted one after the other
    jobs.push_back(std::make_shared<Job>(Greedy(prompts[size_t(i)], first_tokens)));
    ASSERT_FALSE(s.engine->Submit(jobs.back()).has_value());
    while (s.engine->Snapshot().waiting > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(5));
  }
  jobs.push_back(std::make_shared<Job>(Greedy(prompts[2], max_tokens)));
  ASSERT_FALSE(s.engine->Submit(jobs.back()).has_value());  // waits: no room
  auto refused = std::make_shared<Job>(Greedy(prompts[3], max_tokens));
  const auto e = s.engine->Submit(refused);
  ASSERT_TRUE(e.has_value()) << "the queue of one should have been full";
  EXPECT_EQ(e->status, 429);
  EXPECT_EQ(e->code, "rate_limit_exceeded");
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Result r = Collect(*jobs[i]);
    ASSERT_FALSE(r.failed) << r.error.message;
    EXPECT_EQ(r.ids, RunAlone(*env, "kvarn_k4v2_g128", prompts[i], o.chunk,
                              i < 2 ? first_tokens : max_tokens))
        << i;
  }
  const EngineSnapshot snap = s.engine->Snapshot();
  EXPECT_EQ(snap.refused_queue_full, 1);
  // Larger than the whole budget: 400 naming max_tokens, at once.
  auto big = std::make_shared<Job>(Greedy(prompts[0], 1000));
  const auto e2 = s.engine->Submit(big);
  ASSERT_TRUE(e2.has_value());
  EXPECT_EQ(e2->status, 400);
  EXPECT_EQ(e2->param, "max_tokens");
}

// A cancelled request (client gone) frees its sequence at the next step.
TEST(Engine, CancelFreesPagesAtTheNextStep) {
  REQUIRE_MODEL(env);
  EngineOptions o;
  o.n_threads = 2;
  o.prefix_reuse = false;
  Server s(*env, "kvarn_k4v2_g128", size_t(1) << 30, o);
  auto job = std::make_shared<Job>(Greedy(Prompt(*env, "Count to one hundred: 1, 2, 3,"), 500));
  ASSERT_FALSE(s.engine->Submit(job).has_value());
  std::vector<JobEvent> events;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (events.empty() && std::chrono::steady_clock::now() < deadline)
    job->Wait(&events, milliseconds(50));
  ASSERT_FALSE(events.empty());
  while (s.engine->Snapshot().cache.sink_bytes == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(5));  // the snapshot is published every 20 ms
  EXPECT_GT(s.engine->Snapshot().cache.sink_bytes, 0u);
  job->Cancel();
  EngineSnapshot snap;
  while (std::chrono::steady_clock::now() < deadline) {
    snap = s.engine->Snapshot();
    if (snap.running == 0 && snap.cancelled == 1) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(snap.running, 0);
  EXPECT_EQ(snap.cancelled, 1);
  EXPECT_EQ(snap.cache.total() - snap.cache.scratch_bytes, 0u);
  EXPECT_EQ(snap.reserved_bytes, 0u);
}

}  // namespace
}  // namespace kvarn::serve
