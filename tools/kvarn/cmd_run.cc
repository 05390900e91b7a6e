// `kvarn run`: generate text from a prompt with a GGUF model over a (quantized) KV cache.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_flags.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "session/model_identity.h"
#include "session/session_file.h"

namespace kvarn::cli {
namespace {

struct RunOptions {
  ModelFlags model;
  std::string prompt = "What is the capital of France?";
  std::string prompt_file;  // -f: the prompt from a file, byte for byte
  int n_predict = 128;
  bool chat = false;
  std::string system;
  SamplerParams sampler;
  bool show_prompt = false;
  std::string prompt_cache;  // --prompt-cache FILE (llama.cpp's flag)
  bool prompt_cache_all = false;
  bool prompt_cache_ro = false;
};

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int Fail(const Status& st) {
  std::fprintf(stderr, "kvarn run: %s\n", st.message().c_str());
  return 1;
}

int Run(RunOptions o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  if (!st.ok()) return Fail(st);
  CodecSpec codec;
  st = ResolveCacheType(o.model, &codec);
  if (!st.ok()) return Fail(st);
  const int threads = ResolveThreads(o.model);

  std::unique_ptr<Model> model;
  if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
  std::unique_ptr<Tokenizer> tok;
  if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);
  std::unique_ptr<Sampler> sampler;
  if (!(st = Sampler::Create(o.sampler, &sampler)).ok()) return Fail(st);

  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) return Fail(IoError(o.prompt_file + ": cannot open"));
    o.prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<int32_t> ids;
  if (o.chat) {
    std::vector<ChatMessage> msgs;
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", o.prompt});
    st = EncodeChat(*tok, msgs, /*add_generation_prompt=*/true, &ids);
  } else {
    st = tok->Encode(o.prompt, /*parse_special=*/false, &ids);
    if (st.ok() && tok->add_bos() && tok->bos() >= 0) ids.insert(ids.begin(), tok->bos());
  }
  if (!st.ok()) return Fail(st);
  if (ids.empty()) return Fail(InvalidArgument("empty prompt"));
  const int ctx = o.model.ctx;
  if (int(ids.size()) >= ctx)
    return Fail(OutOfRange("prompt of " + std::to_string(ids.size()) +
                           " tokens does not fit the context of " + std::to_string(ctx) +
                           " tokens (-c) with room to generate"));

  std::unique_ptr<KvCache> probe, cache;
  if (!(st = model->CreateCache(codec, ctx, SIZE_MAX, &probe)).ok()) return Fail(st);
  const size_t G = size_t(probe->block_tokens());
  const size_t pages = (size_t(ctx) + G - 1) / G + 1;
  const size_t page =
      std::max(probe->PageBytes(BlockKind::kF16), probe->PageBytes(BlockKind::kRows));
  const size_t budget = o.model.cache_mib > 0 ? o.model.cache_mib << 20 : pages * page;
  if (!(st = model->CreateCache(codec, ctx, budget, &cache)).ok()) return Fail(st);
  // --prompt-cache: reuse the longest restorable prefix of the prompt from the file (every
  // field checked against this model and cache type first), and save after the prompt.
  int seq = -1, reused = 0;
  std::vector<float> restored_logits;
  ModelIdentity identity;
  if (!o.prompt_cache.empty()) {
    identity = IdentifyModel(*model);
    struct stat fst;
    if (::stat(o.prompt_cache.c_str(), &fst) == 0) {
      RestoredSession r;
      st = LoadSessionFile(o.prompt_cache, identity, *cache, ids.data(), int(ids.size()), &r);
      if (!st.ok()) return Fail(st);
      seq = r.seq;
      reused = r.reused;
      restored_logits = std::move(r.logits);
      std::fprintf(stderr,
                   "kvarn run: prompt cache %s: %zu tokens saved, reusing %d of %zu prompt "
                   "tokens\n",
                   o.prompt_cache.c_str(), r.tokens.size(), reused, ids.size());
    } else {
      std::fprintf(stderr, "kvarn run: prompt cache %s does not exist, will create it\n",
                   o.prompt_cache.c_str());
    }
  }
  if (seq < 0 && !(st = cache->AddSequence(&seq)).ok()) return Fail(st);

  std::fprintf(
      stderr, "kvarn run: %s (%s, %d layers, %d/%d heads, head_dim %d), cache %s, %d threads\n",
      path.c_str(), model->config().arch.c_str(), model->config().n_layers, model->config().n_heads,
      model->config().n_kv_heads, model->config().head_dim, codec.Name().c_str(), threads);
  if (o.show_prompt) std::printf("%s", tok->Decode(ids, true).c_str());

  ForwardOptions fo;
  fo.n_threads = threads;
  ForwardOutput out;
  const auto t0 = std::chrono::steady_clock::now();
  if (size_t(reused) == ids.size()) out.logits = restored_logits;  // the file held them
  for (size_t i = size_t(reused); i < ids.size(); i += size_t(o.model.batch)) {
    const int n = int(std::min(ids.size() - i, size_t(o.model.batch)));
    if (!(st = model->Forward(*cache, seq, ids.data() + i, n, fo, &out)).ok()) return Fail(st);
  }
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<int32_t> fed = ids;  // the tokens the sequence holds
  if (!o.prompt_cache.empty() && !o.prompt_cache_ro && size_t(reused) < ids.size()) {
    if (!(st = WriteSession(o.prompt_cache, identity, *cache, seq, fed, out.logits.data())).ok())
      return Fail(st);
    std::fprintf(stderr, "kvarn run: saved %zu prompt tokens to %s\n", fed.size(),
                 o.prompt_cache.c_str());
  }
  StreamDecoder stream(*tok);
  int generated = 0;
  for (; generated < o.n_predict; ++generated) {
    const int32_t next = sampler->Sample(out.logits.data(), int(out.logits.size()));
    if (tok->IsEog(next)) break;
    std::fputs(stream.Push(next).c_str(), stdout);
    std::fflush(stdout);
    if (cache->Length(seq) + 1 > ctx) {
      std::fprintf(stderr, "\nkvarn run: context of %d tokens is full\n", ctx);
      break;
    }
    if (!(st = model->Forward(*cache, seq, &next, 1, fo, &out)).ok()) return Fail(st);
    fed.push_back(next);
  }
  std::fputs(stream.Finish().c_str(), stdout);
  std::fputs("\n", stdout);
  const auto t2 = std::chrono::steady_clock::now();
  if (o.prompt_cache_all && !o.prompt_cache_ro && fed.size() > ids.size()) {
    if (!(st = WriteSession(o.prompt_cache, identity, *cache, seq, fed, out.logits.data())).ok())
      return Fail(st);
    std::fprintf(stderr, "kvarn run: saved %zu tokens (prompt and output) to %s\n", fed.size(),
                 o.prompt_cache.c_str());
  }

  const CacheStats cs = cache->Stats();
  const ModelConfig& mc = model->config();
  const double f16_bytes = double(cs.tokens) * mc.n_layers * mc.n_kv_heads * mc.head_dim * 2 * 2;
  std::fprintf(stderr,
               "\nprompt: %zu tokens (%d reused) in %.2f s (%.1f tokens/s)\n"
               "decode: %d tokens in %.2f s (%.1f tokens/s)\n"
               "KV cache (%s): %s in use for %lld tokens = records %s + fp16 sink %s + fp16 "
               "tail %s + rows %s + scratch %s; an f16 cache would hold %s (%.2fx)\n",
               ids.size(), reused, Seconds(t0, t1),
               double(ids.size() - size_t(reused)) / std::max(Seconds(t0, t1), 1e-9), generated,
               Seconds(t1, t2), generated / std::max(Seconds(t1, t2), 1e-9), codec.Name().c_str(),
               HumanBytes(double(cs.total())).c_str(), (long long)cs.tokens,
               HumanBytes(double(cs.record_bytes)).c_str(),
               HumanBytes(double(cs.sink_bytes)).c_str(), HumanBytes(double(cs.tail_bytes)).c_str(),
               HumanBytes(double(cs.row_bytes)).c_str(),
               HumanBytes(double(cs.scratch_bytes)).c_str(), HumanBytes(f16_bytes).c_str(),
               f16_bytes / double(std::max<size_t>(cs.total(), 1)));
  return 0;
}

}  // namespace

Runner AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
  AddModelFlags(c, &o->model, "kvarn_k4v2_g128");
  c->add_option("-p,--prompt", o->prompt, "prompt text");
  c->add_option("-f,--file", o->prompt_file, "a file containing the prompt (instead of -p)");
  c->add_option("-n,--n-predict", o->n_predict, "tokens to generate")
      ->check(CLI::Range(0, 1 << 22));
  c->add_flag("--chat,--conversation", o->chat, "wrap the prompt in the model's chat template");
  c->add_option("--system", o->system, "system message (with --chat)");
  c->add_option("--temp", o->sampler.temperature, "temperature (0: greedy)");
  c->add_option("--top-k", o->sampler.top_k, "top-k (0: off)");
  c->add_option("--top-p", o->sampler.top_p, "top-p (1: off)");
  c->add_option("--min-p", o->sampler.min_p, "min-p (0: off)");
  c->add_option("-s,--seed", o->sampler.seed, "sampling seed");
  c->add_flag("--verbose-prompt", o->show_prompt, "print the prompt as the model sees it");
  c->add_option("--prompt-cache", o->prompt_cache,
                "session file: reuse the saved KV cache of the longest common prompt prefix, "
                "save it after the prompt (docs/session-format.md)");
  c->add_flag("--prompt-cache-all", o->prompt_cache_all,
              "also save the generated tokens' cache at the end (with --prompt-cache)");
  c->add_flag("--prompt-cache-ro", o->prompt_cache_ro,
              "use the prompt cache but never write it (with --prompt-cache)");
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
