// kvarn: KV-cache quantization for LLM inference (KVarN). See README.md.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "commands.h"
#include "common/dispatch.h"

int main(int argc, char** argv) {
  CLI::App app{"kvarn: KV-cache quantization for LLM inference (KVarN, arXiv 2606.03458)"};
  app.require_subcommand(1);
  bool force_ref = false;
  app.add_flag("--force-reference", force_ref,
               "use the scalar reference kernels instead of SIMD (also KVARN_FORCE_REFERENCE=1)");
  kvarn::cli::Runner codec = kvarn::cli::AddCodecCommand(app);
  CLI11_PARSE(app, argc, argv);
  if (force_ref) kvarn::SetForceReference(true);
  if (app.got_subcommand("codec")) return codec();
  return 1;
}
