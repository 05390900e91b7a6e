// Interface between the attention driver (attention.cc) and its SIMD kernel
// (attention_simd.cc): one call attends a set of query rows of one (layer, KV head) over a
// range of blocks, updating running softmax states.
#pragma once

#include <cmath>
#include <vector>

#include "cache/kv_cache.h"
#include "quant/codec_spec.h"
#include "quant/record.h"

namespace kvarn::attn {

struct SoftmaxRow {
  float m = -INFINITY;
  float l = 0.0f;
};

// Per-thread scratch, reused across calls.
struct KernelScratch {
  std::vector<float> S, W, u, acc2, kf, vf;  // scores, weights, folded query, temporaries
  std::vector<uint8_t> kc, vc;               // unpacked codes
  std::vector<float> c0, zsum;               // [rows] per-tile row constants
};

struct KernelArgs {
  const SeqView* view;
  int layer, kv_head;
  int D, G;
  int rows;    // query rows: n_q * group
  int group;   // query heads per KV head
  int pos0;    // position of query 0 (row r is query r / group)
  float scale; // softmax scale
  const float* q;  // [rows][D], rotated when the cache stores the rotated frame
  int block_begin, block_end;
  // Tile records.
  TileRecordLayout layout;
  int k_bits, v_bits;
  // Per-token rows.
  CodecKind kind;
  size_t row_bytes;
  // State: [rows] softmax rows and [rows][D] accumulators (unnormalized).
  SoftmaxRow* states;
  float* acc;
  KernelScratch* scratch;
};

void AttendRange(const KernelArgs& a);

}  // namespace kvarn::attn
