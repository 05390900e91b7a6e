// Codec: encodes a block of tokens of one KV head (K and V) into a record and back.
// One interface for KVarN and every baseline, so each comparison is one name away.
//
// Shapes: k and v are token-major [n][D] floats in the model's (unrotated) frame.
// Tile codecs need n == group(); per-token codecs take any n >= 1 (a record is n rows).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/fp16.h"
#include "common/status.h"
#include "quant/codec_spec.h"
#include "quant/record.h"

namespace kvarn {

// Which frame Decode returns values in. Tile codecs with rotation store the rotated frame;
// kRotated gives it as stored (what fused attention reads), kModel un-rotates.
enum class Frame { kModel, kRotated };

// Per-tile diagnostics of one encode (VarN imbalance before and after; iterate chosen).
struct TileEncodeInfo {
  float k_initial_imbalance = 0, k_best_imbalance = 0;
  float v_initial_imbalance = 0, v_best_imbalance = 0;
  int k_best_iter = 0, v_best_iter = 0;  // 0 = identity scales kept
};

class Codec {
 public:
  // Validates spec against head_dim (clear error naming the bad value).
  static Status Create(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out);
  virtual ~Codec() = default;

  const CodecSpec& spec() const { return spec_; }
  int head_dim() const { return head_dim_; }
  // Tokens per record for tile codecs (G); per-token codecs report 1.
  int tokens_per_record() const { return spec_.is_tile() ? spec_.group : 1; }
  // Whether stored values live in the Hadamard-rotated frame.
  bool rotated_storage() const { return spec_.is_tile() && spec_.rotate; }

  // Bytes of a record holding n tokens (n == group for tile codecs).
  size_t RecordBytes(int n) const;
  // Bytes per token of K+V for one head, averaged over a full record (exact for per-token codecs).
  double BytesPerToken() const;

  // Encodes unrotated k, v [n][D]. Rejects NaN/Inf (and values that overflow fp16 after
  // rotation) with kNonFinite, writing nothing valid. info may be null.
  virtual Status Encode(const float* k, const float* v, int n, uint8_t* record, size_t record_size,
                        TileEncodeInfo* info = nullptr) const = 0;
  // Decodes a record into k, v [n][D] in the requested frame.
  virtual Status Decode(const uint8_t* record, size_t record_size, int n, float* k, float* v,
                        Frame frame = Frame::kModel) const = 0;

 protected:
  Codec(const CodecSpec& spec, int head_dim) : spec_(spec), head_dim_(head_dim) {}
  Status CheckArgs(int n, size_t record_size) const;

  CodecSpec spec_;
  int head_dim_;
};

}  // namespace kvarn
