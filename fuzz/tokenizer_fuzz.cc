// libFuzzer target: the byte-level BPE tokenizer and the streaming detokenizer.
//
// Input: byte 0 selects the tokenizer and the flags, the rest is the payload.
//   tokenizer: the SmolLM2 GGUF's (when $KVARN_FUZZ_TOKENIZER_GGUF or the model cache holds it)
//              or one of the synthetic byte-level vocabularies below, one per pre-tokenizer
//              family (gpt-2, smollm, qwen2, llama3), with merges, control and user-defined
//              tokens, and a token whose text is not valid UTF-8.
//   payload:   encoded as text (parse_special on or off), then the ids decoded back; and read as
//              little-endian int32 ids (any value, so out-of-range and negative ids too) fed to
//              Decode and to a StreamDecoder.
// Checked invariants (a violation aborts, which libFuzzer reports):
//   every id Encode returns is in range;
//   Decode(Encode(text)) == text when no special tokens are parsed, except for bytes the
//     vocabulary has no byte token for (the synthetic vocabularies have all 256);
//   StreamDecoder emits valid UTF-8 only.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gguf_writer.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/utf8.h"

namespace {

using kvarn::GgufFile;
using kvarn::Tokenizer;

// GPT-2's bytes_to_unicode: the spelling of byte b in a byte-level vocabulary.
std::string ByteSpelling(int b) {
  int cp = b;
  const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
  if (!printable) {
    int n = 0;
    for (int k = 0; k < b; ++k)
      if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174))) ++n;
    cp = 256 + n;
  }
  std::string s;
  kvarn::utf8::Append(static_cast<char32_t>(cp), &s);
  return s;
}
std::string Spell(std::string_view bytes) {
  std::string s;
  for (char c : bytes) s += ByteSpelling(static_cast<unsigned char>(c));
  return s;
}

kvarn::gguftest::Bytes SyntheticVocab(const char* pre) {
  kvarn::gguftest::GgufWriter w;
  w.KvString("general.architecture", "llama");
  w.KvString("tokenizer.ggml.model", "gpt2");
  w.KvString("tokenizer.ggml.pre", pre);
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(ByteSpelling(b));
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"},
      {" w", "or"}, {"1", "2"}, {"12", "3"}, {"\xc3", "\xa9"}, {" ", " "}, {"\n", "\n"}};
  std::vector<std::string> merge_lines;
  for (const auto& [a, b] : merges) {
    tokens.push_back(Spell(a + b));
    merge_lines.push_back(Spell(a) + " " + Spell(b));
  }
  std::vector<int32_t> types(tokens.size(), 1);
  tokens.push_back("<|im_start|>");
  types.push_back(3);
  tokens.push_back("<|im_end|>");
  types.push_back(3);
  tokens.push_back("<tool_call>");
  types.push_back(4);
  tokens.push_back("\xff\xfe raw");  // not valid UTF-8: stands for its raw bytes
  types.push_back(1);
  w.KvStringArray("tokenizer.ggml.tokens", tokens);
  w.KvArray<int32_t>("tokenizer.ggml.token_type", kvarn::GgufType::kInt32, types);
  w.KvStringArray("tokenizer.ggml.merges", merge_lines);
  w.KvU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 3));
  return w.Build();
}

struct Fixture {
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  std::vector<bool> full_bytes;  // every byte has a token: the round trip is exact
};

std::unique_ptr<Tokenizer> FromBytes(const kvarn::gguftest::Bytes& b) {
  std::unique_ptr<GgufFile> f;
  std::unique_ptr<Tokenizer> t;
  kvarn::Status s = GgufFile::OpenBuffer(b.data(), b.size(), "synthetic", &f);
  if (s.ok()) s = Tokenizer::FromGguf(*f, &t);
  if (!s.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: synthetic vocabulary: %s\n", s.message().c_str());
    std::abort();
  }
  return t;
}

const Fixture& GetFixture() {
  static const Fixture* fixture = [] {
    auto* fx = new Fixture;
    for (const char* pre : {"gpt-2", "smollm", "qwen2", "llama3"}) {
      fx->tokenizers.push_back(FromBytes(SyntheticVocab(pre)));
      fx->full_bytes.push_back(true);
    }
    std::string path;
    if (const char* p = std::getenv("KVARN_FUZZ_TOKENIZER_GGUF")) {
      path = p;
    } else if (const char* home = std::getenv("HOME")) {
      path = std::string(home) + "/.cache/kvarn/SmolLM2-135M-Instruct.Q4_1.gguf";
    }
    std::unique_ptr<GgufFile> f;
    std::unique_ptr<Tokenizer> t;
    if (!path.empty() && GgufFile::Open(path, &f).ok() && Tokenizer::FromGguf(*f, &t).ok()) {
      std::fprintf(stderr, "tokenizer_fuzz: also fuzzing %s\n", path.c_str());
      fx->tokenizers.push_back(std::move(t));
      fx->full_bytes.push_back(false);  // SmolLM2 lacks 21 byte tokens
    }
    return fx;
  }();
  return *fixture;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Fixture& fx = GetFixture();
  const size_t which = (data[0] & 0x7) % fx.tokenizers.size();
  const Tokenizer& tok = *fx.tokenizers[which];
  const bool parse_special = (data[0] & 0x8) != 0;
  const bool render_control = (data[0] & 0x10) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<int32_t> ids;
  if (tok.Encode(text, parse_special, &ids).ok()) {
    for (int32_t id : ids) Check(id >= 0 && id < tok.vocab_size(), "Encode id in range");
    const std::string back = tok.Decode(ids, /*render_control=*/true);
    if (!parse_special && fx.full_bytes[which]) Check(back == text, "Decode(Encode(x)) == x");
  }
  (void)tok.PreTokenize(text);

  // The payload as raw ids: anything, including negative and out-of-range values.
  std::vector<int32_t> raw((size - 1) / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data + 1, raw.size() * 4);
  // Small ids are more interesting than uniformly random ones: fold half of them in range.
  for (size_t i = 0; i < raw.size(); i += 2) {
    const uint32_t u = static_cast<uint32_t>(raw[i]);
    raw[i] = static_cast<int32_t>(u % static_cast<uint32_t>(tok.vocab_size() + 8)) - 4;
  }
  const std::string decoded = tok.Decode(raw, render_control);
  kvarn::StreamDecoder stream(tok, render_control);
  std::string streamed;
  for (int32_t id : raw) streamed += stream.Push(id);
  streamed += stream.Finish();
  size_t pos = 0;
  while (pos < streamed.size()) {
    char32_t cp;
    size_t len;
    Check(kvarn::utf8::Decode(streamed, pos, &cp, &len) == kvarn::utf8::Decoded::kChar,
          "StreamDecoder output is valid UTF-8");
    pos += len;
  }
  for (int32_t id : raw) {
    (void)tok.TokenBytes(id);
    (void)tok.token_type(id);
    (void)tok.IsText(id);
    (void)tok.IsEog(id);
  }
  return 0;
}
