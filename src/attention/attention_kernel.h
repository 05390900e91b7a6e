// Interface between the attention driver (attention.cc) and its SIMD kernels
// (attention_simd.cc): one call attends a set of query rows of one (layer, KV head) over a
// range of blocks, updating running softmax states.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "cache/kv_cache.h"
#include "quant/codec_spec.h"
#include "quant/record.h"

namespace kvarn::attn {

struct SoftmaxRow {
  float m = -INFINITY;
  float l = 0.0f;
};

// Per-thread scratch, reused across calls. Shapes in rows x (D or G).
struct KernelScratch {
  std::vector<float> S, W;  // [rows][G] scores; float weights of fp16/row blocks
  std::vector<float> kf;    // [kRowChunk][D] dequantized per-token rows
  // Record tiles (int_path.h):
  std::vector<int8_t> q8;               // [parts][rows][D] quantized folded query
  std::vector<float> sq, c0;            // [rows] query scale, score constant
  std::vector<uint8_t> p8;              // [parts][rows][G] quantized folded probabilities
  std::vector<float> tm, tl, sp, zsum;  // [rows] tile max, tile sum, weight scale, zero sum
  std::vector<int32_t> acc_i;           // [parts][rows][D] integer value sums
  std::vector<float> tile;              // [3 D + 3 G] one record's scale fields as floats
  std::vector<float> red;               // [3][rows][lanes] per-row vector sums of a tile
  std::vector<float> red_out;           // [6][rows] their lane sums and scalar tails
  std::vector<uint8_t> kc, vc;          // [D][G], [G][D] unpacked codes (scalar path only)
};

struct KernelArgs {
  const SeqView* view;
  int layer, kv_head;
  int D, G;
  int rows;        // query rows: n_q * group
  int group;       // query heads per KV head
  int pos0;        // position of query 0 (row r is query r / group)
  float scale;     // softmax scale
  const float* q;  // [rows][D], rotated when the cache stores the rotated frame
  int block_begin, block_end;
  // Tile records.
  TileRecordLayout layout;
  int k_bits, v_bits;
  bool kernel_layout;  // records stored in quant/kernel_layout.h's layout
  // Per-token rows.
  CodecKind kind;
  size_t row_bytes;
  // State: [rows] softmax rows and [rows][D] accumulators (unnormalized).
  SoftmaxRow* states;
  float* acc;
  KernelScratch* scratch;
};

void AttendRange(const KernelArgs& a);

// Test hooks: the integer tile kernels on the dispatched target, for exact comparison with
// scalar sums. kc / vc: a record's code fields in the kernel layout; bits 2 or 4.
//   dots [rows][G] = sum_d q8[r][d] * codeK[d][t]   (returned through S with sq = 1, c0 = 0,
//   tau = 1, lambda = 1: exact for |dot| < 2^24); with parts = 2, q8 [2][rows][D] and
//   S = dot_hi + dot_lo / 254 (exact when the float sum is)
//   out [rows][D] = sum_t p8[r][t] * codeV[t][d]
void ScoreTileForTest(int bits, int parts, const uint8_t* kc, int D, int G, const int8_t* q8,
                      int rows, float* S);
//   with parts = 2, p8 [2][rows][G] and out [2][rows][D] (each part summed alone)
void ValueTileForTest(int bits, int parts, const uint8_t* vc, int D, int G, const uint8_t* p8,
                      int rows, int32_t* out);

}  // namespace kvarn::attn
