// Model: a loaded GGUF transformer (llama, qwen2) and its forward pass over a KvCache.
//
// Forward runs a chunk of n tokens appended to one sequence: batched for prefill (n > 1),
// single-token for decode (n = 1). The cache is passed per call, so one model can drive several
// caches (the evaluation compares cache types on the same weights).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/weights.h"
#include "weights/matmul.h"

namespace kvarn {

struct ForwardOptions {
  int n_threads = 1;
  // Also return the final normed hidden states of every position ([n][E]), e.g. for
  // perplexity; otherwise only the last position's logits are computed.
  bool all_hidden = false;
  // Called after each layer's attention with its output [n][H*D] (before the output
  // projection); the evaluation measures per-layer attention error with it.
  std::function<void(int layer, const float* attn_out, int n)> on_attention;
  // Called with each layer's K and V ([n][Hk*D], post-RoPE, model frame) before they are
  // written to the cache; may modify them. The evaluation's static schedule uses it to write
  // the exact model's K/V into the cache under test.
  std::function<void(int layer, float* k, float* v, int n)> on_kv;
  // Called with each layer's queries ([n][H*D], post-RoPE, model frame) before attention.
  std::function<void(int layer, const float* q, int n)> on_q;
};

struct ForwardOutput {
  std::vector<float> logits;  // [n_vocab] of the last position
  std::vector<float> hidden;  // [n][E] when all_hidden
};

class Model {
 public:
  static Status Load(const std::string& path, std::unique_ptr<Model>* out);

  const ModelConfig& config() const { return config_; }
  const GgufFile& gguf() const { return *file_; }

  // A cache shaped for this model.
  Status CreateCache(const CodecSpec& codec, int max_tokens, size_t byte_budget,
                     std::unique_ptr<KvCache>* out) const;

  // Appends tokens [n] to seq (BeginStep/Write/EndStep on the cache). On any error the step
  // is abandoned (the sequence keeps its earlier tokens) and the error names what failed:
  // a token id out of range, a full context or cache budget, NaN/Inf in a layer's activations.
  Status Forward(KvCache& cache, int seq, const int32_t* tokens, int n, const ForwardOptions& opt,
                 ForwardOutput* out) const;

  // One decode step of several sequences at once: item i appends tokens[i] to (caches[i],
  // seqs[i]) and gets the next-token logits in logits[i * n_vocab ...]. The weights are read
  // once per tile of items (decode is bound by reading them), attention runs per item on its
  // own cache. Items must be distinct (cache, sequence) pairs; any number of them. The matrix
  // products take their per-token route (MatMulRoute::kPerToken), so each item's logits are
  // bit-identical to a Forward of that token alone, whatever else shares the step. On error
  // every item's step is abandoned.
  Status DecodeBatch(const std::vector<KvCache*>& caches, const std::vector<int>& seqs,
                     const std::vector<int32_t>& tokens, int n_threads,
                     std::vector<float>* logits) const;

  // logits [m][n_vocab] of normed hidden states [m][E].
  Status Logits(const float* hidden, int m, float* logits, int n_threads) const;

 private:
  Model() = default;
  Status AttentionInputs(const LayerWeights& L, const float* x, int n, int T, MatMulRoute route,
                         float* xn, float* q, float* k, float* v) const;
  Status LayerOutput(const LayerWeights& L, const float* att, int n, int T, MatMulRoute route,
                     float* x, float* xn, float* g, float* u, float* y) const;
  Status ForwardChunk(KvCache& cache, int seq, const int32_t* tokens, int n, int pos0,
                      const ForwardOptions& opt, ForwardOutput* out) const;

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  ModelWeights weights_;
};

}  // namespace kvarn
