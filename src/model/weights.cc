#include "model/weights.h"

#include <string>

namespace kvarn {
namespace {

std::string Shape(const GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}

Status Matrix(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols,
              WeightMatrix* out) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) return CorruptData(f.path() + ": missing tensor " + name);
  if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
    return CorruptData(f.path() + ": tensor " + name + " has shape " + Shape(*t) + ", expected [" +
                       std::to_string(cols) + ", " + std::to_string(rows) + "]");
  *out = WeightMatrix{t->type, f.TensorData(*t), rows, cols};
  return ValidateWeightMatrix(*out).WithContext(f.path() + ": tensor " + name);
}

// 1-D f32 vectors (norm weights, biases). required == false: absent gives null.
Status Vector(const GgufFile& f, const std::string& name, int64_t n, bool required,
              const float** out) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    if (required) return CorruptData(f.path() + ": missing tensor " + name);
    *out = nullptr;
    return Status::Ok();
  }
  if (t->n_dims != 1 || t->ne[0] != n)
    return CorruptData(f.path() + ": tensor " + name + " has shape " + Shape(*t) +
                       ", expected [" + std::to_string(n) + "]");
  if (t->type != GgmlType::kF32)
    return Unsupported(f.path() + ": tensor " + name + " is not f32");
  // Tensor data offsets are aligned (general.alignment >= 4, checked by the reader) so the
  // floats can be read in place.
  *out = reinterpret_cast<const float*>(f.TensorData(*t));
  return Status::Ok();
}

}  // namespace

Status BindWeights(const GgufFile& f, const ModelConfig& c, ModelWeights* w) {
  const int64_t E = c.n_embd, F = c.n_ff, QD = int64_t(c.n_heads) * c.head_dim,
                KD = int64_t(c.n_kv_heads) * c.head_dim;
  KVARN_RETURN_IF_ERROR(Matrix(f, "token_embd.weight", c.n_vocab, E, &w->token_embd));
  KVARN_RETURN_IF_ERROR(Vector(f, "output_norm.weight", E, true, &w->output_norm));
  if (c.tied_output) {
    w->output = w->token_embd;
  } else {
    KVARN_RETURN_IF_ERROR(Matrix(f, "output.weight", c.n_vocab, E, &w->output));
  }
  w->layers.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w->layers[size_t(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    KVARN_RETURN_IF_ERROR(Vector(f, p + "attn_norm.weight", E, true, &L.attn_norm));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "attn_q.weight", QD, E, &L.wq));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "attn_k.weight", KD, E, &L.wk));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "attn_v.weight", KD, E, &L.wv));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "attn_output.weight", E, QD, &L.wo));
    KVARN_RETURN_IF_ERROR(Vector(f, p + "attn_q.bias", QD, c.qkv_bias, &L.bq));
    KVARN_RETURN_IF_ERROR(Vector(f, p + "attn_k.bias", KD, c.qkv_bias, &L.bk));
    KVARN_RETURN_IF_ERROR(Vector(f, p + "attn_v.bias", KD, c.qkv_bias, &L.bv));
    KVARN_RETURN_IF_ERROR(Vector(f, p + "ffn_norm.weight", E, true, &L.ffn_norm));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "ffn_gate.weight", F, E, &L.w_gate));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "ffn_up.weight", F, E, &L.w_up));
    KVARN_RETURN_IF_ERROR(Matrix(f, p + "ffn_down.weight", E, F, &L.w_down));
  }
  return Status::Ok();
}

}  // namespace kvarn
