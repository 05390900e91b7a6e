// Flags and helpers shared by the model subcommands (run, ppl, bench, eval).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "common/status.h"
#include "quant/codec_spec.h"

namespace kvarn::cli {

struct ModelFlags {
  std::string model;        // -m; empty: the default model from the cache
  int threads = 0;          // -t; 0: all cores
  int ctx = 4096;           // -c
  std::string cache_type;   // --cache-type (kvarn names)
  std::string ctk, ctv;     // llama.cpp's -ctk / -ctv spellings
  int batch = 256;          // -b: prefill chunk
  size_t cache_mib = 0;     // --cache-budget-mib; 0: enough for the context
};

void AddModelFlags(CLI::App* app, ModelFlags* f, const char* default_cache_type);

// The model path: -m, or the default model (SmolLM2) in the cache, fetched with
// scripts/fetch_models.sh when absent and the source tree is at hand.
Status ResolveModel(const ModelFlags& f, std::string* path);
// The cache codec from --cache-type or -ctk/-ctv (which must agree: a codec stores K and V
// together).
Status ResolveCacheType(const ModelFlags& f, CodecSpec* spec);
int ResolveThreads(const ModelFlags& f);

std::string CacheDir();
std::string HumanBytes(double bytes);

}  // namespace kvarn::cli
