// How much the integer-domain read path (attention/int_path.h) adds to a tile codec's error, on
// a model's real queries, keys and values.
//
// The model prefills a text with an exact (f32) cache, recording every layer's post-RoPE
// queries, keys and values. Then, per layer and cache type, the recorded K/V are written into a
// one-layer cache token by token (one step per token, so the commit rule encodes blocks exactly
// as in decoding), and at sampled positions the recorded query of that position attends:
//   exact     attention over the original K/V, in double;
//   dequant   attention over the cache dequantized by the codec, in double (AttendReference):
//             what the cache holds, computed exactly;
//   fused     Attend, the fast path.
// codec error = fused-free error of the cache: |dequant - exact|; integer error: |fused -
// dequant|. Both are root-mean-square over layers, positions, heads and channels.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"

namespace kvarn::eval {

struct IntPathErrorOptions {
  int first_position = 256;  // first sampled query position (past the sink and one tile)
  int stride = 61;           // positions sampled every `stride` tokens
  int n_threads = 1;
};

struct IntPathErrorResult {
  std::string codec;
  double codec_rms = 0;          // RMS of dequant - exact
  double int_rms = 0;            // RMS of fused - dequant
  double worst_layer_ratio = 0;  // largest per-layer int_rms / codec_rms
  int worst_layer = -1;
  int64_t samples = 0;  // output elements compared
};

Status MeasureIntPathError(const Model& model, const std::vector<int32_t>& tokens,
                           const std::vector<CodecSpec>& codecs, const IntPathErrorOptions& opt,
                           std::vector<IntPathErrorResult>* out);

}  // namespace kvarn::eval
