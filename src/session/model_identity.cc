#include "session/model_identity.h"

#include <algorithm>

#include "session/checksum.h"

namespace kvarn {

ModelIdentity IdentifyModel(const Model& model) {
  constexpr uint64_t kSample = 4096;
  const GgufFile& f = model.gguf();
  Sha256 h;
  h.Update(f.bytes(), size_t(f.data_offset()));
  for (const GgufTensorInfo& t : f.tensors()) {
    const uint8_t* d = f.TensorData(t);
    if (t.n_bytes <= 2 * kSample) {
      h.Update(d, size_t(t.n_bytes));
    } else {
      h.Update(d, kSample);
      h.Update(d + t.n_bytes - kSample, kSample);
    }
  }
  ModelIdentity id;
  id.fingerprint = h.Finish();
  id.file_size = f.file_size();
  const ModelConfig& c = model.config();
  id.arch = c.arch.substr(0, SessionHeader::kMaxString);
  id.name = c.name.substr(0, SessionHeader::kMaxString);
  id.n_layers = c.n_layers;
  id.n_kv_heads = c.n_kv_heads;
  id.head_dim = c.head_dim;
  id.n_vocab = c.n_vocab;
  return id;
}

}  // namespace kvarn
