// kvarn: KV-cache quantization for LLM inference (KVarN). See README.md.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "common/dispatch.h"

int main(int argc, char** argv) {
  CLI::App app{"kvarn: KV-cache quantization for LLM inference (KVarN, arXiv 2606.03458)"};
  app.require_subcommand(1);
  bool force_ref = false;
  app.add_flag("--force-reference", force_ref,
               "use the scalar reference kernels instead of SIMD (also KVARN_FORCE_REFERENCE=1)");
  std::string simd;
  app.add_option("--simd", simd,
                 "force a SIMD level: best, avx3_dl, avx3, avx2, sse4, ssse3, emu128, scalar, "
                 "reference (also KVARN_SIMD=...; default: the CPU's best)");
  const std::pair<const char*, kvarn::cli::Runner> commands[] = {
      {"codec", kvarn::cli::AddCodecCommand(app)},
      {"run", kvarn::cli::AddRunCommand(app)},
      {"ppl", kvarn::cli::AddPplCommand(app)},
      {"tokenize", kvarn::cli::AddTokenizeCommand(app)},
      {"bench", kvarn::cli::AddBenchCommand(app)},
      {"eval", kvarn::cli::AddEvalCommand(app)},
      {"attn-error", kvarn::cli::AddAttnErrorCommand(app)},
#ifdef KVARN_HAVE_SERVE
      {"serve", kvarn::cli::AddServeCommand(app)},
#endif
  };
  // llama.cpp spells some long options with one dash (-ctk, -ctv, -cnv, -sys, -np), which CLI11
  // does not accept; map them to their long forms before parsing.
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    if (a == "-ctk") a = "--cache-type-k";
    else if (a == "-ctv") a = "--cache-type-v";
    else if (a == "-cnv") a = "--conversation";
    else if (a == "-sys") a = "--system";
    else if (a == "-np") a = "--parallel";
  }
  std::vector<char*> av;
  for (std::string& a : args) av.push_back(a.data());
  CLI11_PARSE(app, int(av.size()), av.data());
  if (!simd.empty()) {
    const kvarn::Status st = kvarn::SetSimdLevel(simd);
    if (!st.ok()) {
      std::fprintf(stderr, "kvarn: --simd %s: %s\n", simd.c_str(), st.message().c_str());
      return 2;
    }
  }
  if (force_ref) kvarn::SetForceReference(true);
  for (const auto& [name, runner] : commands)
    if (app.got_subcommand(name)) return runner();
  return 1;
}
