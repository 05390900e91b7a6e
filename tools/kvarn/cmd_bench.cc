// `kvarn bench attention`: decode-attention time per token at long contexts, per cache type,
// with the bytes read per step, their rate against the machine's measured memory read
// bandwidth, and the ratio to f16 measured in the same run.
//
// By default the cache holds every layer of the model shape (SmolLM2: 30 layers of 3 KV heads
// x 3 query heads each, D=64; Qwen2.5-1.5B: 28 layers of 2 x 6, D=128), and one "token" is
// one query attending in every layer, as in a decode step: the working set (380-470 MB of f16
// at 16K) is many times the last-level cache, so every cache type streams from memory.
// --layers 1 keeps one layer (cache-resident at these sizes; labelled so). The cache is filled
// with synthetic key-like data through its write and commit path (the speed does not depend
// on the values). Also prints the commit cost of one tile (encode + kernel layout).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "commands.h"
#include "common/dispatch.h"
#include "common/membw.h"
#include "common/parallel.h"
#include "common/rng.h"
#include "common_flags.h"
#include "model/model.h"
#include "quant/kernel_layout.h"
#include "quant/tile_codec.h"

namespace kvarn::cli {
namespace {

struct BenchOptions {
  std::vector<std::string> codecs = {"f16", "kvarn_k4v2_g128", "kvarn_k2v2_g128", "q8_0", "q4_0"};
  std::vector<int> contexts = {4096, 16384};
  std::vector<std::string> shapes = {"smollm2", "qwen"};
  int layers = 0;  // 0: the model shape's layer count
  int threads = 0;
  int reps = 5;
};

struct Shape {
  const char* name;
  int layers, kv_heads, group, head_dim;
};

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// Writes n tokens of synthetic key-like K/V into every layer in one step, then opens and
// closes a one-token step so every full block is encoded (the commit rule), as in decoding.
Status Fill(KvCache& c, int seq, int n) {
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  std::vector<float> k(size_t(n) * H * D), v(k.size());  // [n][Hk][D]
  KVARN_RETURN_IF_ERROR(c.BeginStep(seq, n));
  for (int l = 0; l < L; ++l) {
    Rng rng(uint64_t(l) * 1315423911u + 7);
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = float(rng.Normal()) * ((i % size_t(D)) % 16 == 3 ? 8.0f : 1.0f);
      v[i] = float(rng.Normal());
    }
    Status st = c.Write(seq, l, 0, n, k.data(), v.data());
    if (!st.ok()) {
      (void)c.AbortStep(seq);
      return st;
    }
  }
  KVARN_RETURN_IF_ERROR(c.EndStep(seq));
  KVARN_RETURN_IF_ERROR(c.BeginStep(seq, 1));
  std::vector<float> kv(size_t(H) * D, 0.5f);
  for (int l = 0; l < L; ++l) KVARN_RETURN_IF_ERROR(c.Write(seq, l, n, 1, kv.data(), kv.data()));
  return c.EndStep(seq);
}

// Median microseconds of one commit of a D=128 k4v2 tile pair (8 VarN iterations) on this
// thread: EncodeTile from the fp16 pool, then the kernel-layout conversion, as KvCache does.
void PrintEncodeCost() {
  TileShape shape;
  shape.head_dim = 128;
  shape.group = 128;
  Rng rng(3);
  std::vector<float> k(128 * 128), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = float(rng.Normal()) * ((i % 128) % 16 == 3 ? 8.0f : 1.0f);
    v[i] = float(rng.Normal());
  }
  std::vector<f16_t> k16(k.size()), v16(v.size());
  if (!PrepareTokens(shape, k.data(), 128, k16.data()).ok() ||
      !PrepareTokens(shape, v.data(), 128, v16.data()).ok())
    return;
  std::vector<uint8_t> rec(shape.layout().bytes()), ker(rec.size());
  std::vector<double> enc, conv;
  for (int r = 0; r < 41; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) EncodeTile(shape, k16.data(), v16.data(), rec.data(), nullptr);
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) ToKernelLayout(shape.layout(), rec.data(), ker.data());
    const auto t2 = std::chrono::steady_clock::now();
    enc.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / 20);
    conv.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count() / 20);
  }
  std::sort(enc.begin(), enc.end());
  std::sort(conv.begin(), conv.end());
  std::printf(
      "commit of one tile pair (D=128, k4v2, G=128, 8 VarN iterations, 1 core, median of "
      "41): encode %.1f us + kernel layout %.1f us = %.1f us\n",
      enc[20], conv[20], enc[20] + conv[20]);
}

int Run(const BenchOptions& o) {
  const int threads = o.threads > 0 ? o.threads : DefaultThreadCount();
  const Shape all[] = {{"smollm2", 30, 3, 3, 64}, {"qwen", 28, 2, 6, 128}};
  const size_t llc = LastLevelCacheBytes();
  const MemBandwidth bw =
      MeasureReadBandwidth(std::max<size_t>(size_t(512) << 20, 4 * llc), threads, 5);
  std::printf("kvarn bench attention: %s, SIMD %s, %d threads, median of %d\n", CpuModel().c_str(),
              SimdTargetName().c_str(), threads, o.reps);
  std::printf("memory read bandwidth (%.0f MiB buffer, %d threads, median of 5): %.2f GB/s\n",
              double(bw.bytes) / double(1 << 20), threads, bw.median_gbs);
  PrintEncodeCost();
  std::printf("%-8s %7s %6s %-18s %10s %10s %8s %7s %8s\n", "shape", "context", "layers", "cache",
              "us/token", "MB read", "GB/s", "of BW", "vs f16");
  for (const Shape& sh : all) {
    if (std::find(o.shapes.begin(), o.shapes.end(), sh.name) == o.shapes.end()) continue;
    const int layers = o.layers > 0 ? o.layers : sh.layers;
    for (int ctx : o.contexts) {
      double f16_us = 0;
      for (const std::string& name : o.codecs) {
        KvCacheConfig cfg;
        cfg.n_layers = layers;
        cfg.n_kv_heads = sh.kv_heads;
        cfg.head_dim = sh.head_dim;
        cfg.max_tokens = ctx + 1;
        cfg.byte_budget = size_t(16) << 30;
        Status st = ParseCodecSpec(name, &cfg.codec);
        std::unique_ptr<KvCache> cache;
        if (st.ok()) st = KvCache::Create(cfg, &cache);
        int seq = 0;
        if (st.ok()) st = cache->AddSequence(&seq);
        if (st.ok()) st = Fill(*cache, seq, ctx);
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
        Rng rng(9);
        std::vector<float> q(size_t(layers) * p.n_heads * sh.head_dim), out(q.size());
        for (float& x : q) x = float(rng.Normal());
        const size_t qs = size_t(p.n_heads) * sh.head_dim;
        const auto step = [&] {
          for (int l = 0; l < layers; ++l)
            (void)Attend(*cache, view, l, p, q.data() + l * qs, 1, ctx, out.data() + l * qs);
        };
        // Tokens per repetition: enough for ~50 ms at the first, untimed, run's speed.
        auto t0 = std::chrono::steady_clock::now();
        step();
        const double once =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int iters = std::max(1, int(0.05 / std::max(once, 1e-6)));
        std::vector<double> us;
        for (int r = 0; r < o.reps; ++r) {
          t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < iters; ++i) step();
          us.push_back(
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                  .count() /
              iters);
        }
        std::sort(us.begin(), us.end());
        const double med = us[us.size() / 2];
        if (name == "f16") f16_us = med;
        const CacheStats cs = cache->Stats();
        const double mb = double(cs.total() - cs.scratch_bytes) / 1e6;
        const double gbs = mb / 1e3 / (med * 1e-6);
        std::printf("%-8s %7d %6d %-18s %10.1f %10.2f %8.2f %6.0f%% %7.2fx%s\n", sh.name, ctx,
                    layers, name.c_str(), med, mb, gbs, 100.0 * gbs / bw.median_gbs,
                    f16_us > 0 ? f16_us / med : 0.0,
                    double(cs.total()) < 2.0 * double(llc) ? "  (cache-resident)" : "");
        std::fflush(stdout);
      }
    }
  }
  std::printf(
      "MB read: every byte of the cache (records, fp16 sink and tail, rows), which one "
      "decode token reads once across the layers. (cache-resident): working set under "
      "twice the last-level cache (%.0f MiB).\n",
      double(llc) / double(1 << 20));
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
  std::printf(
      "kvarn bench decode: %s, %d threads, depth by %s, %d decode steps, median of %d runs\n",
      path.c_str(), threads, o.fill.c_str(), o.n_decode, o.reps);
  std::printf("%7s %-18s %12s %12s %12s\n", "depth", "cache", "prompt t/s", "decode t/s", "KV MiB");
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
          steps.push_back(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
          next = int32_t((next * 31 + 7) % 20000 + 100);
        }
        if (!st.ok()) {
          std::fprintf(stderr, "kvarn bench decode: %s\n", st.message().c_str());
          return 1;
        }
        std::sort(steps.begin(), steps.end());
        pp.push_back(
            o.fill == "synthetic" ? 0.0 : depth / std::chrono::duration<double>(t1 - t0).count());
        tg.push_back(1.0 / steps[steps.size() / 2]);
        kv_mib = double(cache->Stats().total()) / double(1 << 20);
      }
      std::sort(pp.begin(), pp.end());
      std::sort(tg.begin(), tg.end());
      std::printf("%7d %-18s %12.1f %12.2f %12.2f\n", depth, spec.Name().c_str(), pp[pp.size() / 2],
                  tg[tg.size() / 2], kv_mib);
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
  a->add_option("--layers", o->layers,
                "layers in the cache (default: the model shape's, so the working set streams "
                "from memory; 1: one cache-resident layer)")
      ->check(CLI::Range(0, 1024));
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
