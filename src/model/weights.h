// ModelWeights: views of every tensor the forward pass reads, bound by name from a GGUF file
// and checked for shape and type. The data stays in the file's memory map.
#pragma once

#include <vector>

#include "model/config.h"
#include "model/gguf.h"
#include "weights/weight_matrix.h"

namespace kvarn {

struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  WeightMatrix wq, wk, wv, wo;       // [H*D][E], [Hk*D][E], [Hk*D][E], [E][H*D]
  const float* bq = nullptr;         // [H*D] (qwen2), else null
  const float* bk = nullptr;         // [Hk*D]
  const float* bv = nullptr;         // [Hk*D]
  const float* ffn_norm = nullptr;   // [n_embd]
  WeightMatrix w_gate, w_up, w_down; // [F][E], [F][E], [E][F]
};

struct ModelWeights {
  WeightMatrix token_embd;  // [n_vocab][E]
  std::vector<LayerWeights> layers;
  const float* output_norm = nullptr;  // [E]
  WeightMatrix output;                 // [n_vocab][E] (token_embd when tied)
};

// Errors name the tensor and what is wrong with it (missing, shape, type).
Status BindWeights(const GgufFile& f, const ModelConfig& c, ModelWeights* out);

}  // namespace kvarn
