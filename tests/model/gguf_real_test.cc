// GGUF reader on the real models fetched by scripts/fetch_models.sh. Skipped when the cache
// lacks them, so builds without network still pass. When the cache venv exists, the reader's
// view is compared line by line with llama.cpp's own `gguf` package
// (tests/reference/gguf_dump_check.py).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "model/gguf.h"

namespace kvarn {
namespace {

// $KVARN_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/kvarn, as in scripts/fetch_models.sh.
std::string CacheDir() {
  if (const char* c = std::getenv("KVARN_CACHE"); c != nullptr && *c != '\0') return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    return std::string(x) + "/kvarn";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/kvarn";
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

const char kSmolLm2[] = "SmolLM2-135M-Instruct.Q4_1.gguf";
const char kQwen[] = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

struct Expected {
  const char* file;
  const char* arch;
  uint32_t layers, heads, kv_heads, embd, context, vocab;
};

void CheckModel(const Expected& e) {
  const std::string path = CacheDir() + "/" + e.file;
  if (!Exists(path)) GTEST_SKIP() << path << " absent; run scripts/fetch_models.sh";
  std::unique_ptr<GgufFile> f;
  Status s = GgufFile::Open(path, &f);
  ASSERT_TRUE(s.ok()) << s.message();
  std::string_view arch;
  ASSERT_TRUE(f->GetString("general.architecture", &arch).ok());
  EXPECT_EQ(arch, e.arch);
  const std::string p = std::string(e.arch) + ".";
  uint32_t v = 0;
  ASSERT_TRUE(f->GetU32(p + "block_count", &v).ok());
  EXPECT_EQ(v, e.layers);
  ASSERT_TRUE(f->GetU32(p + "attention.head_count", &v).ok());
  EXPECT_EQ(v, e.heads);
  ASSERT_TRUE(f->GetU32(p + "attention.head_count_kv", &v).ok());
  EXPECT_EQ(v, e.kv_heads);
  ASSERT_TRUE(f->GetU32(p + "embedding_length", &v).ok());
  EXPECT_EQ(v, e.embd);
  ASSERT_TRUE(f->GetU32(p + "context_length", &v).ok());
  EXPECT_EQ(v, e.context);
  std::vector<std::string_view> tokens;
  ASSERT_TRUE(f->GetStringArray("tokenizer.ggml.tokens", &tokens).ok());
  EXPECT_EQ(tokens.size(), e.vocab);
  std::vector<int32_t> token_types;
  ASSERT_TRUE(f->GetArrayI32("tokenizer.ggml.token_type", &token_types).ok());
  EXPECT_EQ(token_types.size(), e.vocab);

  ASSERT_FALSE(f->tensors().empty());
  uint64_t total = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    EXPECT_LE(f->data_offset() + t.offset + t.n_bytes, f->file_size()) << t.name;
    total += t.n_bytes;
  }
  // Tensors fill the data section except for alignment padding (< 32 bytes per tensor).
  EXPECT_LE(total, f->file_size() - f->data_offset());
  EXPECT_GE(total + 32 * f->tensors().size(), f->file_size() - f->data_offset());
  const GgufTensorInfo* k = f->FindTensor("blk.0.attn_k.weight");
  ASSERT_NE(k, nullptr);
  // [kv_heads * head_dim, embd] as a [rows, cols] matrix; ggml stores ne = [embd, rows].
  EXPECT_EQ(k->ne[0], static_cast<int64_t>(e.embd));
  EXPECT_EQ(k->ne[1] % e.kv_heads, 0);
  EXPECT_NE(f->FindTensor("token_embd.weight"), nullptr);
  EXPECT_NE(f->FindTensor("blk." + std::to_string(e.layers - 1) + ".ffn_down.weight"), nullptr);
}

TEST(GgufRealTest, SmolLm2Header) { CheckModel({kSmolLm2, "llama", 30, 9, 3, 576, 8192, 49152}); }

TEST(GgufRealTest, QwenHeader) { CheckModel({kQwen, "qwen2", 28, 12, 2, 1536, 32768, 151936}); }

// The same line format as tests/reference/gguf_dump_check.py.
std::string Escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 48)) {
    if (c >= 0x21 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string Dump(const GgufFile& f) {
  std::string out;
  auto line = [&out](const std::string& l) { out += l + "\n"; };
  line("version " + std::to_string(f.version()));
  line("tensor_count " + std::to_string(f.tensors().size()));
  line("kv_count " + std::to_string(f.metadata().size()));
  line("alignment " + std::to_string(f.alignment()));
  line("data_offset " + std::to_string(f.data_offset()));
  for (const auto& [key, v] : f.metadata()) {
    std::string l = "kv " + std::string(key) + " ";
    switch (v.type) {
      case GgufType::kArray:
        l += std::string("array ") + GgufTypeName(v.elem_type) + " " + std::to_string(v.count);
        break;
      case GgufType::kString:
        l += "string len:" + std::to_string(v.str.size()) + " " + Escape(v.str);
        break;
      case GgufType::kFloat32:
      case GgufType::kFloat64: {
        char buf[40];
        std::snprintf(buf, sizeof(buf), "%.9g", v.f);
        l += std::string(GgufTypeName(v.type)) + " " + buf;
        break;
      }
      case GgufType::kInt8:
      case GgufType::kInt16:
      case GgufType::kInt32:
      case GgufType::kInt64:
        l += std::string(GgufTypeName(v.type)) + " " + std::to_string(v.i);
        break;
      default:  // unsigned integers and bool
        l += std::string(GgufTypeName(v.type)) + " " + std::to_string(v.u);
        break;
    }
    line(l);
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    std::string shape;
    for (uint32_t d = 0; d < t.n_dims; ++d) shape += (d ? "," : "") + std::to_string(t.ne[d]);
    line("tensor " + std::string(t.name) + " " + std::to_string(static_cast<uint32_t>(t.type)) +
         " " + shape + " " + std::to_string(t.offset) + " " + std::to_string(t.n_bytes));
  }
  return out;
}

void CrossCheck(const char* file) {
  const std::string path = CacheDir() + "/" + file;
  const std::string python = CacheDir() + "/venv/bin/python";
  if (!Exists(path)) GTEST_SKIP() << path << " absent; run scripts/fetch_models.sh";
  if (!Exists(python)) GTEST_SKIP() << python << " absent; run scripts/fetch_models.sh venv";
  std::unique_ptr<GgufFile> f;
  Status s = GgufFile::Open(path, &f);
  ASSERT_TRUE(s.ok()) << s.message();
  const std::string cmd =
      "'" + python + "' '" KVARN_SOURCE_DIR "/tests/reference/gguf_dump_check.py' '" + path + "'";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << cmd;
  std::string expected;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) expected.append(buf, n);
  ASSERT_EQ(::pclose(pipe), 0) << cmd << "\n" << expected;
  const std::string got = Dump(*f);
  // Compare line by line so a failure names the first differing fact.
  size_t a = 0, b = 0;
  int line_no = 1;
  while (a < expected.size() || b < got.size()) {
    const size_t ea = std::min(expected.find('\n', a), expected.size());
    const size_t eb = std::min(got.find('\n', b), got.size());
    ASSERT_EQ(got.substr(b, eb - b), expected.substr(a, ea - a)) << "line " << line_no;
    a = ea + 1;
    b = eb + 1;
    ++line_no;
  }
}

TEST(GgufRealTest, SmolLm2MatchesGgufPy) { CrossCheck(kSmolLm2); }
TEST(GgufRealTest, QwenMatchesGgufPy) { CrossCheck(kQwen); }

}  // namespace
}  // namespace kvarn
