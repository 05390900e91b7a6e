// `kvarn bench attention`: decode-attention time per token for one layer at long contexts,
// per cache type, with the bytes read per step and the ratio to f16 measured in the same run.
// Shapes are the models' (SmolLM2: 3 KV heads x 3 query heads each, D=64; Qwen2.5-1.5B: 2 x 6,
// D=128); the cache is filled with synthetic key-like data (the speed does not depend on it).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "commands.h"
#include "common_flags.h"
#include "model/model.h"
#include "common/parallel.h"
#include "common/rng.h"

namespace kvarn::cli {
namespace {

struct BenchOptions {
  std::vector<std::string> codecs = {"f16", "kvarn_k4v2_g128", "kvarn_k2v2_g128", "q8_0", "q4_0"};
  std::vector<int> contexts = {1024, 4096, 16384, 65536};
  std::vector<std::string> shapes = {"smollm2", "qwen"};
  int threads = 0;
  int reps = 7;
};

struct Shape {
  const char* name;
  int kv_heads, group, head_dim;
};

// Fills one layer with n tokens in steps of 512 (so blocks are encoded as in decoding).
Status Fill(KvCache& c, int seq, int n, Rng& rng) {
  const int H = c.config().n_kv_heads, D = c.config().head_dim;
  for (int pos = 0; pos < n;) {
    const int step = std::min(512, n - pos);
    KVARN_RETURN_IF_ERROR(c.BeginStep(seq, step));
    std::vector<float> k(size_t(step) * H * D), v(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = float(rng.Normal() + 0.3 * double(i % 7));
      v[i] = float(rng.Normal());
    }
    KVARN_RETURN_IF_ERROR(c.Write(seq, 0, pos, step, k.data(), v.data()));
    KVARN_RETURN_IF_ERROR(c.EndStep(seq));
    pos += step;
  }
  return Status::Ok();
}

int Run(const BenchOptions& o) {
  const int threads = o.threads > 0 ? o.threads : DefaultThreadCount();
  const Shape all[] = {{"smollm2", 3, 3, 64}, {"qwen", 2, 6, 128}};
  std::printf("decode attention, one layer, one query token, %d threads, median of %d\n", threads,
              o.reps);
  std::printf("%-8s %7s %-18s %10s %10s %9s %10s\n", "shape", "context", "cache", "us/token",
              "MB read", "GB/s", "vs f16");
  for (const Shape& sh : all) {
    if (std::find(o.shapes.begin(), o.shapes.end(), sh.name) == o.shapes.end()) continue;
    for (int ctx : o.contexts) {
      double f16_us = 0;
      for (const std::string& name : o.codecs) {
        KvCacheConfig cfg;
        cfg.n_layers = 1;
        cfg.n_kv_heads = sh.kv_heads;
        cfg.head_dim = sh.head_dim;
        cfg.max_tokens = ctx + 1;
        Status st = ParseCodecSpec(name, &cfg.codec);
        std::unique_ptr<KvCache> cache;
        if (st.ok()) st = KvCache::Create(cfg, &cache);
        int seq = 0;
        Rng rng(7);
        if (st.ok()) st = cache->AddSequence(&seq);
        if (st.ok()) st = Fill(*cache, seq, ctx, rng);
        // One more (empty) step so every full block is encoded, as during decoding.
        if (st.ok()) st = cache->BeginStep(seq, 1);
        std::vector<float> kv(size_t(sh.kv_heads) * sh.head_dim, 0.5f);
        if (st.ok()) st = cache->Write(seq, 0, ctx, 1, kv.data(), kv.data());
        if (st.ok()) st = cache->EndStep(seq);
        SeqView view;
        if (st.ok()) st = cache->View(seq, &view);
        if (!st.ok()) {
          std::fprintf(stderr, "kvarn bench: %s: %s\n", name.c_str(), st.message().c_str());
          return 1;
        }
        AttentionParams p;
        p.n_heads = sh.kv_heads * sh.group;
        p.scale = float(1.0 / std::sqrt(double(sh.head_dim)));
        p.n_threads = threads;
        std::vector<float> q(size_t(p.n_heads) * sh.head_dim), out(q.size());
        for (float& x : q) x = float(rng.Normal());
        std::vector<double> us;
        for (int r = 0; r < o.reps + 1; ++r) {
          const int iters = std::max(1, 200000 / ctx);
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < iters; ++i) (void)Attend(*cache, view, 0, p, q.data(), 1, ctx, out.data());
          const auto t1 = std::chrono::steady_clock::now();
          if (r > 0) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / iters);
        }
        std::sort(us.begin(), us.end());
        const double med = us[us.size() / 2];
        if (name == "f16") f16_us = med;
        const CacheStats cs = cache->Stats();
        const double mb = double(cs.total() - cs.scratch_bytes) / 1e6;
        std::printf("%-8s %7d %-18s %10.1f %10.2f %9.2f %9.2fx\n", sh.name, ctx, name.c_str(), med,
                    mb, mb / 1e3 / (med * 1e-6), f16_us > 0 ? f16_us / med : 0.0);
        std::fflush(stdout);
      }
    }
  }
  std::printf("MB read: every byte of the layer's cache (records, fp16 sink and tail, rows), "
              "which one decode step reads once.\n");
  return 0;
}

struct DecodeOptions {
  ModelFlags model;
  std::vector<int> depths = {512, 2048, 4096, 8192};
  std::vector<std::string> codecs = {"f16", "kvarn_k4v2_g128"};
  int n_decode = 32;
  int reps = 3;
  std::string fill = "prefill";  // or "synthetic"
};

// Writes `depth` tokens of synthetic K/V into seq in one step through the cache's own write
// path (so tile codecs encode them at the next step, as after a prompt prefill): Gaussian
// values with a few large key channels, like real keys. Decode speed does not depend on the
// values; this skips the model's prefill, which dominates a depth sweep's time on this machine.
Status FillSynthetic(KvCache& cache, int seq, int depth) {
  const KvCacheConfig& c = cache.config();
  const size_t row = size_t(c.n_kv_heads) * size_t(c.head_dim);
  KVARN_RETURN_IF_ERROR(cache.BeginStep(seq, depth));
  std::vector<float> k(size_t(depth) * row), v(k.size());  // [depth][Hk][D] each
  for (int l = 0; l < c.n_layers; ++l) {
    Rng rng(uint64_t(l) * 1315423911u + 7);
    for (size_t i = 0; i < k.size(); ++i) {
      const size_t ch = i % size_t(c.head_dim);
      k[i] = float(rng.Normal()) * (ch % 16 == 3 ? 8.0f : 1.0f);
      v[i] = float(rng.Normal());
    }
    Status st = cache.Write(seq, l, 0, depth, k.data(), v.data());
    if (!st.ok()) {
      (void)cache.AbortStep(seq);
      return st;
    }
  }
  return cache.EndStep(seq);
}

// Prefills `depth` tokens, then times n_decode single-token steps; reports prompt tokens/s and
// the median decode step as tokens/s. Token ids are a fixed pseudo-random sequence: speed does
// not depend on the text.
int RunDecode(const DecodeOptions& o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  std::unique_ptr<Model> model;
  if (st.ok()) st = Model::Load(path, &model);
  if (!st.ok()) {
    std::fprintf(stderr, "kvarn bench decode: %s\n", st.message().c_str());
    return 1;
  }
  const int threads = ResolveThreads(o.model);
  std::printf("kvarn bench decode: %s, %d threads, depth by %s, %d decode steps, median of %d runs\n",
              path.c_str(), threads, o.fill.c_str(), o.n_decode, o.reps);
  std::printf("%7s %-18s %12s %12s %12s\n", "depth", "cache", "prompt t/s", "decode t/s",
              "KV MiB");
  for (int depth : o.depths) {
    for (const std::string& name : o.codecs) {
      CodecSpec spec;
      if (!(st = ParseCodecSpec(name, &spec)).ok()) {
        std::fprintf(stderr, "kvarn bench decode: %s\n", st.message().c_str());
        return 1;
      }
      std::vector<double> pp, tg;
      double kv_mib = 0;
      for (int r = 0; r < o.reps; ++r) {
        std::unique_ptr<KvCache> cache;
        st = model->CreateCache(spec, depth + o.n_decode + 2, size_t(16) << 30, &cache);
        int seq = 0;
        if (st.ok()) st = cache->AddSequence(&seq);
        std::vector<int32_t> ids(static_cast<size_t>(depth));
        for (int i = 0; i < depth; ++i) ids[size_t(i)] = int32_t((i * 7919 + 13) % 20000 + 100);
        ForwardOptions fo;
        fo.n_threads = threads;
        ForwardOutput out;
        const auto t0 = std::chrono::steady_clock::now();
        if (o.fill == "synthetic") {
          if (st.ok()) st = FillSynthetic(*cache, seq, depth);
        } else {
          for (int i = 0; st.ok() && i < depth; i += o.model.batch) {
            const int n = std::min(o.model.batch, depth - i);
            st = model->Forward(*cache, seq, ids.data() + i, n, fo, &out);
          }
        }
        const auto t1 = std::chrono::steady_clock::now();
        std::vector<double> steps;
        int32_t next = 100;
        // One untimed step: it encodes the blocks the fill completed (the commit rule), a
        // one-off cost of the first step after any prompt.
        if (st.ok()) st = model->Forward(*cache, seq, &next, 1, fo, &out);
        for (int i = 0; st.ok() && i < o.n_decode; ++i) {
          const auto a = std::chrono::steady_clock::now();
          st = model->Forward(*cache, seq, &next, 1, fo, &out);
          steps.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
          next = int32_t((next * 31 + 7) % 20000 + 100);
        }
        if (!st.ok()) {
          std::fprintf(stderr, "kvarn bench decode: %s\n", st.message().c_str());
          return 1;
        }
        std::sort(steps.begin(), steps.end());
        pp.push_back(o.fill == "synthetic" ? 0.0
                                           : depth / std::chrono::duration<double>(t1 - t0).count());
        tg.push_back(1.0 / steps[steps.size() / 2]);
        kv_mib = double(cache->Stats().total()) / double(1 << 20);
      }
      std::sort(pp.begin(), pp.end());
      std::sort(tg.begin(), tg.end());
      std::printf("%7d %-18s %12.1f %12.2f %12.2f\n", depth, spec.Name().c_str(),
                  pp[pp.size() / 2], tg[tg.size() / 2], kv_mib);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

Runner AddBenchCommand(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* b = app.add_subcommand("bench", "benchmarks");
  b->require_subcommand(1);
  CLI::App* a = b->add_subcommand("attention", "decode attention per token at long contexts");
  a->add_option("--cache-type", o->codecs, "cache types to compare (f16 first for ratios)");
  a->add_option("--ctx", o->contexts, "context lengths");
  a->add_option("--shape", o->shapes, "smollm2 and/or qwen");
  a->add_option("-t,--threads", o->threads, "threads (default: all cores)");
  a->add_option("--reps", o->reps, "repetitions (median reported)")->check(CLI::Range(1, 1000));
  auto d = std::make_shared<DecodeOptions>();
  CLI::App* dc = b->add_subcommand("decode", "decode tokens/s of a model at given context depths");
  AddModelFlags(dc, &d->model, "kvarn_k4v2_g128");
  dc->add_option("--depth", d->depths, "context depths (prefilled tokens)");
  dc->add_option("--cache-types", d->codecs, "cache types");
  dc->add_option("--n-decode", d->n_decode, "timed decode steps")->check(CLI::Range(1, 100000));
  dc->add_option("--reps", d->reps, "runs (median reported)")->check(CLI::Range(1, 100));
  dc->add_option("--fill", d->fill,
                 "how the depth is filled: prefill (the model's prompt path, timed as prompt t/s) "
                 "or synthetic (random K/V written to the cache; decode speed only)")
      ->check(CLI::IsMember({"prefill", "synthetic"}));
  return [o, d, a, dc] { return a->parsed() ? Run(*o) : RunDecode(*d); };
}

}  // namespace kvarn::cli
