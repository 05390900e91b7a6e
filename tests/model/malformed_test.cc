// The malformed-GGUF corpus (testdata/malformed, written by tests/reference/make_malformed.py):
// every file goes through Model::Load and, when that succeeds, Tokenizer::FromGguf, and the first
// error must contain the substring MANIFEST pairs with the file ("OK": both must succeed). None
// may crash; the sanitizer build checks that no file is read out of bounds either.
#include <dirent.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"
#include "model/tokenizer.h"

namespace kvarn {
namespace {

const std::string kDir = std::string(KVARN_SOURCE_DIR) + "/tests/model/testdata/malformed/";

std::vector<std::pair<std::string, std::string>> ReadManifest() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(kDir + "MANIFEST");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t bar = line.find(" | ");
    if (bar == std::string::npos) {
      ADD_FAILURE() << "MANIFEST line without ' | ': " << line;
      continue;
    }
    out.emplace_back(line.substr(0, bar), line.substr(bar + 3));
  }
  return out;
}

// The first failure of loading the file as kvarn run would: model, then tokenizer.
Status LoadAll(const std::string& path) {
  std::unique_ptr<Model> model;
  KVARN_RETURN_IF_ERROR(Model::Load(path, &model));
  std::unique_ptr<Tokenizer> tok;
  return Tokenizer::FromGguf(model->gguf(), &tok);
}

TEST(MalformedGgufTest, EveryFileGivesItsError) {
  const auto manifest = ReadManifest();
  ASSERT_GE(manifest.size(), 50u) << "MANIFEST missing or short in " << kDir;
  for (const auto& [file, expect] : manifest) {
    SCOPED_TRACE(file);
    const Status s = LoadAll(kDir + file);
    if (expect == "OK") {
      EXPECT_TRUE(s.ok()) << s.message();
      continue;
    }
    ASSERT_FALSE(s.ok()) << "loaded, expected an error containing: " << expect;
    EXPECT_NE(s.message().find(expect), std::string::npos)
        << "message: " << s.message() << "\nexpected to contain: " << expect;
    // Errors about the file's contents name the file.
    if (s.code() != StatusCode::kIoError) {
      EXPECT_NE(s.message().find(file), std::string::npos) << s.message();
    }
  }
}

TEST(MalformedGgufTest, ManifestListsEveryFile) {
  std::set<std::string> listed, present;
  for (const auto& [file, expect] : ReadManifest()) listed.insert(file);
  DIR* d = ::opendir(kDir.c_str());
  ASSERT_NE(d, nullptr) << kDir;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".gguf") present.insert(name);
  }
  ::closedir(d);
  EXPECT_EQ(listed, present);
}

// The valid base of the corpus runs: the defects, not the base, cause the errors above.
TEST(MalformedGgufTest, BaseModelRunsForward) {
  std::unique_ptr<Model> model;
  Status s = Model::Load(kDir + "ok_tiny_llama.gguf", &model);
  ASSERT_TRUE(s.ok()) << s.message();
  CodecSpec f32;
  ASSERT_TRUE(ParseCodecSpec("f32", &f32).ok());
  std::unique_ptr<KvCache> cache;
  s = model->CreateCache(f32, 16, size_t(1) << 20, &cache);
  if (!s.ok()) GTEST_SKIP() << "head_dim 8 has no codec: " << s.message();
  int seq = 0;
  ASSERT_TRUE(cache->AddSequence(&seq).ok());
  const int32_t tokens[] = {0, 1, 3};
  ForwardOutput out;
  s = model->Forward(*cache, seq, tokens, 3, ForwardOptions{}, &out);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(out.logits.size(), 8u);
  for (float x : out.logits) EXPECT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace kvarn
