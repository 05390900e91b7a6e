// Per-token codecs (f32, f16, and llama.cpp's q8_0/q4_0/q4_1): each token's K row and V row
// are encoded on their own. A record of n tokens is [n] K rows followed by [n] V rows.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "quant/codec_internal.h"

namespace kvarn {

size_t TokenRowBytes(const CodecSpec& spec, int head_dim) {
  switch (spec.kind) {
    case CodecKind::kF32: return 4 * size_t(head_dim);
    case CodecKind::kF16: return 2 * size_t(head_dim);
    default: return 0;
  }
}

namespace {

class TokenCodec final : public Codec {
 public:
  TokenCodec(const CodecSpec& spec, int head_dim) : Codec(spec, head_dim) {}

  Status Encode(const float* k, const float* v, int n, uint8_t* record, size_t record_size,
                TileEncodeInfo* /*info*/) const override {
    KVARN_RETURN_IF_ERROR(CheckArgs(n, record_size));
    const size_t D = size_t(head_dim_);
    for (size_t i = 0; i < size_t(n) * D; ++i) {
      if (!std::isfinite(k[i]) || !std::isfinite(v[i]))
        return NonFinite("codec " + spec_.Name() + ": token " + std::to_string(i / D) +
                         " channel " + std::to_string(i % D) + " is not finite");
    }
    const size_t row = TokenRowBytes(spec_, head_dim_);
    for (int t = 0; t < n; ++t) {
      EncodeRow(k + size_t(t) * D, record + size_t(t) * row);
      EncodeRow(v + size_t(t) * D, record + (size_t(n) + t) * row);
    }
    return Status::Ok();
  }

  Status Decode(const uint8_t* record, size_t record_size, int n, float* k, float* v,
                Frame /*frame: per-token codecs store the model frame*/) const override {
    KVARN_RETURN_IF_ERROR(CheckArgs(n, record_size));
    const size_t D = size_t(head_dim_);
    const size_t row = TokenRowBytes(spec_, head_dim_);
    for (int t = 0; t < n; ++t) {
      DecodeRow(record + size_t(t) * row, k + size_t(t) * D);
      DecodeRow(record + (size_t(n) + t) * row, v + size_t(t) * D);
    }
    return Status::Ok();
  }

 private:
  void EncodeRow(const float* x, uint8_t* out) const {
    if (spec_.kind == CodecKind::kF32) {
      std::memcpy(out, x, 4 * size_t(head_dim_));
    } else {
      for (int i = 0; i < head_dim_; ++i) {
        const f16_t h = F32ToF16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
    }
  }
  void DecodeRow(const uint8_t* in, float* x) const {
    if (spec_.kind == CodecKind::kF32) {
      std::memcpy(x, in, 4 * size_t(head_dim_));
    } else {
      for (int i = 0; i < head_dim_; ++i) {
        f16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        x[i] = F16ToF32(h);
      }
    }
  }
};

}  // namespace

Status CreateTokenCodec(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out) {
  if (TokenRowBytes(spec, head_dim) == 0)
    return Unsupported("codec " + spec.Name() + " not available yet");
  out->reset(new TokenCodec(spec, head_dim));
  return Status::Ok();
}

}  // namespace kvarn
