#include "model/config.h"

#include <string>

namespace kvarn {
namespace {

Status GetInt(const GgufFile& f, const std::string& key, int* out, bool required, int lo, int hi) {
  if (f.Find(key) == nullptr) {
    if (required) return CorruptData(f.path() + ": missing required key " + key);
    return Status::Ok();
  }
  int64_t v = 0;
  KVARN_RETURN_IF_ERROR(f.GetI64(key, &v));
  if (v < lo || v > hi)
    return CorruptData(f.path() + ": " + key + " = " + std::to_string(v) + " outside [" +
                       std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = int(v);
  return Status::Ok();
}

}  // namespace

Status ReadModelConfig(const GgufFile& f, ModelConfig* c) {
  std::string_view arch;
  KVARN_RETURN_IF_ERROR(f.GetString("general.architecture", &arch));
  c->arch = std::string(arch);
  if (c->arch == "llama") {
    c->rope = RopeStyle::kNorm;
  } else if (c->arch == "qwen2") {
    c->rope = RopeStyle::kNeox;
    c->qkv_bias = true;
  } else {
    return Unsupported(f.path() + ": architecture '" + c->arch +
                       "' not supported (kvarn runs llama and qwen2)");
  }
  std::string_view name;
  if (f.Find("general.name") != nullptr && f.GetString("general.name", &name).ok())
    c->name = std::string(name);
  const std::string a = c->arch + ".";
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "block_count", &c->n_layers, true, 1, 1024));
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "embedding_length", &c->n_embd, true, 1, 1 << 16));
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "feed_forward_length", &c->n_ff, true, 1, 1 << 18));
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "attention.head_count", &c->n_heads, true, 1, 1024));
  c->n_kv_heads = c->n_heads;
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "attention.head_count_kv", &c->n_kv_heads, false, 1, 1024));
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "context_length", &c->n_ctx_train, false, 1, 1 << 24));
  if (c->n_embd % c->n_heads != 0 && f.Find(a + "attention.key_length") == nullptr)
    return CorruptData(f.path() + ": embedding_length " + std::to_string(c->n_embd) +
                       " not divisible by head_count " + std::to_string(c->n_heads));
  c->head_dim = c->n_embd / c->n_heads;
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "attention.key_length", &c->head_dim, false, 1, 4096));
  int value_length = c->head_dim;
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "attention.value_length", &value_length, false, 1, 4096));
  if (value_length != c->head_dim)
    return Unsupported(f.path() + ": value_length " + std::to_string(value_length) +
                       " differs from key_length " + std::to_string(c->head_dim));
  if (c->n_heads % c->n_kv_heads != 0)
    return CorruptData(f.path() + ": head_count " + std::to_string(c->n_heads) +
                       " is not a multiple of head_count_kv " + std::to_string(c->n_kv_heads));
  c->rope_dim = c->head_dim;
  KVARN_RETURN_IF_ERROR(GetInt(f, a + "rope.dimension_count", &c->rope_dim, false, 2, 4096));
  if (c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
    return CorruptData(f.path() + ": rope.dimension_count " + std::to_string(c->rope_dim));
  if (f.Find(a + "attention.layer_norm_rms_epsilon") != nullptr)
    KVARN_RETURN_IF_ERROR(f.GetF32(a + "attention.layer_norm_rms_epsilon", &c->rms_eps));
  if (f.Find(a + "rope.freq_base") != nullptr)
    KVARN_RETURN_IF_ERROR(f.GetF32(a + "rope.freq_base", &c->rope_base));
  if (!(c->rms_eps > 0.0f && c->rms_eps < 1.0f))
    return CorruptData(f.path() + ": layer_norm_rms_epsilon " + std::to_string(c->rms_eps));
  if (!(c->rope_base > 1.0f))
    return CorruptData(f.path() + ": rope.freq_base " + std::to_string(c->rope_base));
  const GgufTensorInfo* emb = f.FindTensor("token_embd.weight");
  if (emb == nullptr) return CorruptData(f.path() + ": missing tensor token_embd.weight");
  if (emb->n_dims != 2 || emb->ne[0] != c->n_embd)
    return CorruptData(f.path() + ": token_embd.weight has shape [" + std::to_string(emb->ne[0]) +
                       ", " + std::to_string(emb->ne[1]) + "], expected [" +
                       std::to_string(c->n_embd) + ", n_vocab]");
  c->n_vocab = int(emb->ne[1]);
  c->tied_output = f.FindTensor("output.weight") == nullptr;
  return Status::Ok();
}

}  // namespace kvarn
