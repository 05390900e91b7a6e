// Per-token codecs (f32, f16, and llama.cpp's q8_0/q4_0/q4_1): each token's K row and V row
// are encoded on their own. A record of n tokens is [n] K rows followed by [n] V rows.
#include <cmath>
#include <string>
#include <vector>

#include "quant/codec_internal.h"
#include "quant/ggml_blocks.h"

namespace kvarn {

size_t TokenRowBytes(const CodecSpec& spec, int head_dim) {
  return GgmlRowBytes(spec.kind, head_dim);
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
  void EncodeRow(const float* x, uint8_t* out) const { QuantizeRow(spec_.kind, x, head_dim_, out); }
  void DecodeRow(const uint8_t* in, float* x) const { DequantizeRow(spec_.kind, in, head_dim_, x); }
};

}  // namespace

Status CreateTokenCodec(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out) {
  out->reset(new TokenCodec(spec, head_dim));
  return Status::Ok();
}

}  // namespace kvarn
