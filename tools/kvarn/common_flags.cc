#include "common_flags.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/parallel.h"

namespace kvarn::cli {

void AddModelFlags(CLI::App* app, ModelFlags* f, const char* default_cache_type) {
  f->cache_type = default_cache_type;
  app->add_option("-m,--model", f->model, "GGUF model (default: SmolLM2-135M-Instruct from the cache)");
  app->add_option("-t,--threads", f->threads, "threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app->add_option("-c,--ctx-size", f->ctx, "context size in tokens")->check(CLI::Range(1, 1 << 22));
  app->add_option("--cache-type,--kv-cache", f->cache_type,
                  "KV cache type: kvarn_k4v2_g128 (default), kvarn_k4v4_g128, kvarn_k2v2_g128, "
                  "kvarn_k4v2_g64, kvarn_k4v4_g64, kivi|hadamard|varn[_kXvY_gG], q8_0, q4_0, "
                  "q4_1, f16, f32");
  app->add_option("--cache-type-k", f->ctk, "llama.cpp spelling: K cache type (f32, f16, q8_0, q4_0, q4_1)");
  app->add_option("--cache-type-v", f->ctv, "llama.cpp spelling: V cache type (must match -ctk)");
  app->add_option("-b,--batch-size", f->batch, "prompt tokens per forward chunk")
      ->check(CLI::Range(1, 65536));
  app->add_option("--cache-budget-mib", f->cache_mib, "KV cache byte budget in MiB (default: fits the context)");
}

std::string CacheDir() {
  if (const char* c = std::getenv("KVARN_CACHE")) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/kvarn";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/kvarn";
}

Status ResolveModel(const ModelFlags& f, std::string* path) {
  struct stat st;
  if (!f.model.empty()) {
    if (::stat(f.model.c_str(), &st) != 0) return IoError(f.model + ": no such file");
    *path = f.model;
    return Status::Ok();
  }
  *path = CacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (::stat(path->c_str(), &st) == 0) return Status::Ok();
#ifdef KVARN_SOURCE_DIR
  const std::string script = std::string(KVARN_SOURCE_DIR) + "/scripts/fetch_models.sh";
  if (::stat(script.c_str(), &st) == 0) {
    std::fprintf(stderr, "kvarn: default model not in %s; fetching it\n", CacheDir().c_str());
    const std::string cmd = "bash '" + script + "' smollm2 >&2";
    if (std::system(cmd.c_str()) == 0 && ::stat(path->c_str(), &st) == 0) return Status::Ok();
  }
#endif
  return IoError("default model " + *path + " not found; run scripts/fetch_models.sh or pass -m");
}

Status ResolveCacheType(const ModelFlags& f, CodecSpec* spec) {
  std::string name = f.cache_type;
  if (!f.ctk.empty() || !f.ctv.empty()) {
    const std::string k = f.ctk.empty() ? f.ctv : f.ctk;
    const std::string v = f.ctv.empty() ? f.ctk : f.ctv;
    if (k != v)
      return InvalidArgument("-ctk " + k + " and -ctv " + v +
                             " differ: kvarn cache types store K and V together; use "
                             "--cache-type (e.g. kvarn_k4v2_g128 for 4-bit K, 2-bit V)");
    if (k == "bf16") return Unsupported("cache type bf16: use f16 or f32");
    name = k;
  }
  return ParseCodecSpec(name, spec);
}

int ResolveThreads(const ModelFlags& f) {
  const int hw = DefaultThreadCount();
  if (f.threads <= 0) return hw;
  if (f.threads > hw)
    std::fprintf(stderr, "kvarn: %d threads requested, %d cores: using %d\n", f.threads, hw, hw);
  return std::min(f.threads, hw);
}

std::string HumanBytes(double b) {
  char buf[64];
  if (b >= 1 << 30) std::snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1 << 30));
  else if (b >= 1 << 20) std::snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1 << 20));
  else std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  return buf;
}

}  // namespace kvarn::cli
