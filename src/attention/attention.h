// Attention of a chunk of queries over one sequence's KV cache, for one layer.
//
// Query i of the chunk sits at position pos0 + i and attends to cache tokens [0, pos0 + i]
// (causal); the chunk's own K/V must already be written to the cache (KvCache::Write), so
// every token, including the current ones, is read through the cache's storage. This is the
// reference's decode path (current tokens from the fp16 pool) and llama.cpp's (current tokens
// quantized on arrival); see docs/deviations.md for prefill.
//
// Fused read path (spec §6.2): queries are rotated once per head (FWHT) when the cache stores
// the rotated frame; scores come straight from packed codes with the per-channel K step folded
// into the query and the per-token scale and zero into one term per token; values accumulate
// from codes with the per-token V step folded into the probabilities; the output is
// un-rotated once. For tile records both folded operands are quantized (query to int8,
// probabilities to uint8, per tile and row) and the dot products run on integers
// (int_path.h, docs/attention.md). All query heads of a KV head (and all queries of the chunk)
// share one pass over its blocks. Long contexts are split across threads over blocks and merged
// with log-sum-exp (SoftmaxState::Merge).
#pragma once

#include "cache/kv_cache.h"
#include "common/status.h"

namespace kvarn {

struct AttentionParams {
  int n_heads = 0;     // query heads H; H % n_kv_heads == 0 (GQA)
  float scale = 0.0f;  // softmax scale, usually 1/sqrt(head_dim)
  int n_threads = 1;
};

// q: [n_q][H][D] model-frame queries; out: [n_q][H][D].
Status Attend(const KvCache& cache, const SeqView& view, int layer, const AttentionParams& p,
              const float* q, int n_q, int pos0, float* out);

// The exact oracle: decodes every block with the codec (model frame) and attends in T (double:
// the op tests' oracle; float: the naive baseline whose own error sizes float tolerances).
template <typename T>
Status AttendReference(const KvCache& cache, const SeqView& view, int layer,
                       const AttentionParams& p, const float* q, int n_q, int pos0, float* out);

// The fused path's arithmetic as readable scalar loops (attention_fused_ref.cc): tile records
// through the integer-domain path of int_path.h, fp16 blocks and rows in float, block by block.
// This is what KVARN_FORCE_REFERENCE runs.
Status AttendFusedReference(const KvCache& cache, const SeqView& view, int layer,
                            const AttentionParams& p, const float* q, int n_q, int pos0,
                            float* out);

}  // namespace kvarn
