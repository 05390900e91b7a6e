// `kvarn attn-error`: the integer read path's attention error against each tile codec's own
// error, on a model's real queries, keys and values (eval/int_path_error.h).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common/dispatch.h"
#include "common_flags.h"
#include "eval/int_path_error.h"
#include "model/tokenizer.h"

namespace kvarn::cli {
namespace {

struct AttnErrorOptions {
  ModelFlags model;
  std::string file;
  int n_tokens = 1024;
  std::vector<std::string> codecs = {"kvarn_k4v2_g128", "kvarn_k4v4_g128", "kvarn_k2v2_g128",
                                     "kvarn_k4v2_g64",  "kivi_k2v2_g128",  "hadamard_k2v2_g128"};
  int stride = 61;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "kvarn attn-error: %s\n", st.message().c_str());
  return 1;
}

int Run(AttnErrorOptions o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  if (!st.ok()) return Fail(st);
  if (o.file.empty()) o.file = CacheDir() + "/pydocs.txt";
  std::ifstream in(o.file, std::ios::binary);
  if (!in) return Fail(IoError(o.file + ": cannot open"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = text.substr(0, size_t(o.n_tokens) * 16);
  std::unique_ptr<Model> model;
  if (!(st = Model::Load(path, &model)).ok()) return Fail(st);
  std::unique_ptr<Tokenizer> tok;
  if (!(st = Tokenizer::FromGguf(model->gguf(), &tok)).ok()) return Fail(st);
  std::vector<int32_t> ids;
  if (!(st = tok->Encode(text, false, &ids)).ok()) return Fail(st);
  if (int(ids.size()) < o.n_tokens)
    return Fail(InvalidArgument(o.file + ": only " + std::to_string(ids.size()) + " tokens"));
  ids.resize(size_t(o.n_tokens));
  std::vector<CodecSpec> specs;
  for (const std::string& name : o.codecs) {
    CodecSpec s;
    if (!(st = ParseCodecSpec(name, &s)).ok()) return Fail(st);
    if (!s.is_tile()) return Fail(InvalidArgument("--cache-types " + name + ": not a tile codec"));
    specs.push_back(s);
  }
  eval::IntPathErrorOptions eo;
  eo.n_threads = ResolveThreads(o.model);
  eo.stride = o.stride;
  std::vector<eval::IntPathErrorResult> res;
  if (!(st = eval::MeasureIntPathError(*model, ids, specs, eo, &res)).ok()) return Fail(st);
  const ModelConfig& c = model->config();
  std::printf(
      "kvarn attn-error: %s (%d layers, %d/%d heads, head_dim %d), %d tokens of %s, "
      "queries at %d + k*%d, SIMD %s\n",
      path.c_str(), c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, o.n_tokens, o.file.c_str(),
      eo.first_position, eo.stride, SimdTargetName().c_str());
  std::printf("%-20s %12s %12s %8s %12s\n", "cache", "codec RMS", "int RMS", "ratio",
              "worst layer");
  for (const auto& r : res)
    std::printf("%-20s %12.4g %12.4g %8.4f %6.4f (%d)\n", r.codec.c_str(), r.codec_rms, r.int_rms,
                r.codec_rms > 0 ? r.int_rms / r.codec_rms : 0.0, r.worst_layer_ratio,
                r.worst_layer);
  std::printf(
      "codec RMS: attention over the dequantized cache against the original K/V; int "
      "RMS: the fused integer path against exact attention over the dequantized cache.\n");
  return 0;
}

}  // namespace

Runner AddAttnErrorCommand(CLI::App& app) {
  auto o = std::make_shared<AttnErrorOptions>();
  CLI::App* c =
      app.add_subcommand("attn-error",
                         "error of the integer attention path against each codec's own error, on a "
                         "model's real K/V");
  AddModelFlags(c, &o->model, "f32");
  c->add_option("-f,--file", o->file, "text (default: pydocs.txt in the cache)");
  c->add_option("-n,--n-tokens", o->n_tokens, "tokens of the text")->check(CLI::Range(300, 65536));
  c->add_option("--cache-types", o->codecs, "tile cache types to measure");
  c->add_option("--stride", o->stride, "tokens between sampled query positions")
      ->check(CLI::Range(1, 65536));
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
