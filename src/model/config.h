// ModelConfig: the hyperparameters of a decoder-only transformer, read from GGUF metadata.
// llama and qwen2 are implemented; the fields qwen3 (q/k norm) and gemma3 (sliding window,
// head_dim 256) need are named here so adding them is a matter of the forward pass only.
#pragma once

#include <string>

#include "common/status.h"
#include "model/gguf.h"

namespace kvarn {

enum class RopeStyle {
  kNorm,  // rotate adjacent pairs (x[2i], x[2i+1]): llama (GGUF permutes Q/K for this)
  kNeox,  // rotate halves (x[i], x[i + d/2]): qwen2, qwen3, gemma
};

struct ModelConfig {
  std::string arch;      // general.architecture
  std::string name;      // general.name
  int n_layers = 0;      // {arch}.block_count
  int n_embd = 0;        // {arch}.embedding_length
  int n_ff = 0;          // {arch}.feed_forward_length
  int n_heads = 0;       // {arch}.attention.head_count
  int n_kv_heads = 0;    // {arch}.attention.head_count_kv
  int head_dim = 0;      // {arch}.attention.key_length, default n_embd / n_heads
  int n_vocab = 0;       // rows of token_embd.weight
  int n_ctx_train = 0;   // {arch}.context_length
  float rms_eps = 1e-5f; // {arch}.attention.layer_norm_rms_epsilon
  float rope_base = 10000.0f;  // {arch}.rope.freq_base
  int rope_dim = 0;      // {arch}.rope.dimension_count, default head_dim
  RopeStyle rope = RopeStyle::kNorm;
  bool qkv_bias = false;       // qwen2: attn_{q,k,v}.bias
  bool tied_output = false;    // no output.weight: logits use token_embd.weight
};

// Reads and validates the config (clear error naming the key and value on anything missing,
// inconsistent or unsupported, e.g. architecture "mamba" or head_dim 80).
Status ReadModelConfig(const GgufFile& f, ModelConfig* out);

}  // namespace kvarn
