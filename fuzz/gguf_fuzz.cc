// libFuzzer target: the GGUF reader and everything that reads a model's metadata from it.
// The input is a whole GGUF file. OpenBuffer validates it; on success every metadata value
// goes through every typed accessor, and the config and tokenizer builders run on it, as
// Model::Load and the CLI would. (Weight binding, BindWeights, is shape checks on the parsed
// infos; the malformed-file corpus covers it, and leaving it out keeps the fuzz build off the
// matmul kernels.) Any crash, sanitizer report or leak is a bug:
// a hostile file must only ever produce a Status.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvarn;
  std::unique_ptr<GgufFile> f;
  if (!GgufFile::OpenBuffer(data, size, "fuzz.gguf", &f).ok()) return 0;

  // The accessors must reject (not misread) every type mismatch.
  for (const auto& [key, value] : f->metadata()) {
    std::string_view s;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    bool b;
    std::vector<std::string_view> strings;
    std::vector<int32_t> ints;
    std::vector<float> floats;
    (void)f->GetString(key, &s);
    (void)f->GetU32(key, &u32);
    (void)f->GetU64(key, &u64);
    (void)f->GetI64(key, &i64);
    (void)f->GetF32(key, &f32);
    (void)f->GetBool(key, &b);
    (void)f->GetStringArray(key, &strings);
    (void)f->GetArrayI32(key, &ints);
    (void)f->GetArrayF32(key, &floats);
  }
  // Tensor data must lie inside the buffer: touch its first and last byte.
  volatile uint8_t sink = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    if (t.n_bytes == 0) continue;
    const uint8_t* p = f->TensorData(t);
    sink = static_cast<uint8_t>(p[0] ^ p[t.n_bytes - 1]);
  }

  ModelConfig config;
  (void)ReadModelConfig(*f, &config);
  std::unique_ptr<Tokenizer> tok;
  if (Tokenizer::FromGguf(*f, &tok).ok()) {
    std::vector<int32_t> ids;
    (void)tok->Encode("Hello, world! 123 <|im_start|>", true, &ids);
    (void)tok->Decode(ids, true);
  }
  return 0;
}
