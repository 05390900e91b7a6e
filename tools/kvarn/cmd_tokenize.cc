// `kvarn tokenize`: print the token ids of a text (as llama.cpp's llama-tokenize).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_flags.h"
#include "model/chat_template.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

namespace kvarn::cli {
namespace {

struct TokenizeOptions {
  ModelFlags model;
  std::string prompt;
  bool chat = false;
  bool bos = false;
};

int Run(const TokenizeOptions& o) {
  std::string path;
  Status st = ResolveModel(o.model, &path);
  std::unique_ptr<GgufFile> f;
  std::unique_ptr<Tokenizer> tok;
  if (st.ok()) st = GgufFile::Open(path, &f);
  if (st.ok()) st = Tokenizer::FromGguf(*f, &tok);
  std::vector<int32_t> ids;
  if (st.ok()) {
    if (o.chat) {
      st = EncodeChat(*tok, {{"user", o.prompt}}, true, &ids);
    } else {
      st = tok->Encode(o.prompt, false, &ids);
      if (o.bos && tok->bos() >= 0) ids.insert(ids.begin(), tok->bos());
    }
  }
  if (!st.ok()) {
    std::fprintf(stderr, "kvarn tokenize: %s\n", st.message().c_str());
    return 1;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
  std::printf("\n");
  return 0;
}

}  // namespace

Runner AddTokenizeCommand(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* c = app.add_subcommand("tokenize", "print the comma-separated token ids of a text");
  AddModelFlags(c, &o->model, "f32");
  c->add_option("-p,--prompt", o->prompt, "text")->required();
  c->add_flag("--chat", o->chat, "wrap in the chat template as a user message");
  c->add_flag("--bos", o->bos, "prepend the BOS token");
  return [o] { return Run(*o); };
}

}  // namespace kvarn::cli
