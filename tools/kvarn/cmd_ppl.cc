// `kvarn ppl`: perplexity of a model over a text file, with a chosen KV cache type.
// As llama.cpp's perplexity tool: the text is cut into chunks of -c tokens, each evaluated
// from an empty cache, and only the second half of each chunk is scored (every scored token
// sees at least c/2 tokens of context).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_flags.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace kvarn::cli {
namespace {

struct PplOptions {
  ModelFlags model;
  std::string file;
  int chunks = 0;  // 0: all
};

int Fail(const Status& st) {
  std::fprintf(stderr, "kvarn ppl: %s\n", st.message().c_str());
  return 1;
}

int Run(PplOptions o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  if (!st.ok()) return Fail(st);
  CodecSpec codec;
  if (!(st = ResolveCacheType(o.model, &codec)).ok()) return Fail(st);
  const int threads = ResolveThreads(o.model);
  std::ifstream in(o.file, std::ios::binary);
  if (!in) return Fail(IoError(o.file + ": cannot open"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  std::unique_ptr<Model> model;
  if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
  std::unique_ptr<Tokenizer> tok;
  if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);
  std::vector<int32_t> ids;
  if (!(st = tok->Encode(text, false, &ids)).ok()) return Fail(st);
  const int ctx = o.model.ctx;
  if (ctx < 8) return Fail(InvalidArgument("context " + std::to_string(ctx) + " too small"));
  int n_chunks = int(ids.size() / size_t(ctx));
  if (o.chunks > 0) n_chunks = std::min(n_chunks, o.chunks);
  if (n_chunks == 0)
    return Fail(InvalidArgument(o.file + ": " + std::to_string(ids.size()) +
                                " tokens, fewer than one context of " + std::to_string(ctx)));
  std::fprintf(stderr, "kvarn ppl: %s, %zu tokens, %d chunks of %d, cache %s, %d threads\n",
               o.file.c_str(), ids.size(), n_chunks, ctx, codec.Name().c_str(), threads);

  const int V = model->config().n_vocab, E = model->config().n_embd;
  double nll = 0;
  long long scored = 0;
  std::vector<float> hidden, logits;
  const auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < n_chunks; ++c) {
    std::unique_ptr<KvCache> cache;
    if (!(st = model->CreateCache(codec, ctx, SIZE_MAX, &cache)).ok()) return Fail(st);
    int seq;
    (void)cache->AddSequence(&seq);
    const int32_t* chunk = ids.data() + size_t(c) * ctx;
    hidden.clear();
    ForwardOptions fo;
    fo.n_threads = threads;
    fo.all_hidden = true;
    ForwardOutput out;
    for (int i = 0; i < ctx; i += o.model.batch) {
      const int n = std::min(ctx - i, o.model.batch);
      if (!(st = model->Forward(*cache, seq, chunk + i, n, fo, &out)).ok()) return Fail(st);
      hidden.insert(hidden.end(), out.hidden.begin(), out.hidden.end());
    }
    // Score positions [ctx/2, ctx-1): the logits at i predict token i+1.
    const int first = ctx / 2;
    constexpr int kRows = 32;
    for (int i = first; i < ctx - 1; i += kRows) {
      const int m = std::min(kRows, ctx - 1 - i);
      logits.resize(size_t(m) * V);
      if (!(st = model->Logits(hidden.data() + size_t(i) * E, m, logits.data(), threads)).ok())
        return Fail(st);
      for (int r = 0; r < m; ++r) {
        const float* l = logits.data() + size_t(r) * V;
        float mx = l[0];
        for (int v = 1; v < V; ++v) mx = std::max(mx, l[v]);
        double sum = 0;
        for (int v = 0; v < V; ++v) sum += std::exp(double(l[v] - mx));
        nll += std::log(sum) + mx - l[chunk[i + r + 1]];
        ++scored;
      }
    }
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double eta = el / (c + 1) * (n_chunks - c - 1);
    std::fprintf(stderr, "\r[%d/%d] ppl %.4f  %.1f tokens/s  ETA %.0f s   ", c + 1, n_chunks,
                 std::exp(nll / double(scored)), double(c + 1) * ctx / el, eta);
  }
  std::fprintf(stderr, "\n");
  std::printf("perplexity: %.4f over %lld scored tokens (%d chunks of %d, cache %s)\n",
              std::exp(nll / double(scored)), scored, n_chunks, ctx, codec.Name().c_str());
  return 0;
}

}  // namespace

Runner AddPplCommand(CLI::App& app) {
  auto o = std::make_shared<PplOptions>();
  CLI::App* c = app.add_subcommand("ppl", "perplexity over a text file");
  AddModelFlags(c, &o->model, "kvarn_k4v2_g128");
  o->model.ctx = 512;
  c->add_option("-f,--file", o->file, "text file")->required();
  c->add_option("--chunks", o->chunks, "evaluate at most this many chunks (0: all)");
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
