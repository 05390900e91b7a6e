// Dispatch between the SIMD and reference tile-codec paths, and the tile Codec class.
#include "quant/tile_codec.h"

#include <string>
#include <vector>

#include "common/dispatch.h"
#include "quant/codec_internal.h"
#include "quant/tile_ref.h"

namespace kvarn {

Status PrepareTokens(const TileShape& shape, const float* x, int n, f16_t* out) {
  if (ForceReference()) return ref::PrepareTokensRef(shape, x, n, out);
  return simd::PrepareTokensSimd(shape, x, n, out);
}
void EncodeTile(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                TileEncodeInfo* info) {
  if (ForceReference()) return ref::EncodeTileRef<float>(shape, k, v, record, info);
  simd::EncodeTileSimd(shape, k, v, record, info);
}
void DecodeTile(const TileShape& shape, const uint8_t* record, float* k, float* v) {
  if (ForceReference()) return ref::DecodeTileRef(shape, record, k, v);
  simd::DecodeTileSimd(shape, record, k, v);
}
void FwhtBatch(float* x, int n, int D) {
  if (ForceReference()) {
    for (int t = 0; t < n; ++t) ref::Fwht(x + size_t(t) * D, D);
    return;
  }
  simd::FwhtBatchSimd(x, n, D);
}

namespace {

class TileCodec final : public Codec {
 public:
  TileCodec(const CodecSpec& spec, int head_dim) : Codec(spec, head_dim) {
    shape_.head_dim = head_dim;
    shape_.group = spec.group;
    shape_.k_bits = spec.k_bits;
    shape_.v_bits = spec.v_bits;
    shape_.iters = spec.effective_iters();
    shape_.rotate = spec.rotate;
  }

  Status Encode(const float* k, const float* v, int n, uint8_t* record, size_t record_size,
                TileEncodeInfo* info) const override {
    KVARN_RETURN_IF_ERROR(CheckArgs(n, record_size));
    const size_t elems = size_t(n) * head_dim_;
    std::vector<f16_t> kp(elems), vp(elems);
    KVARN_RETURN_IF_ERROR(PrepareTokens(shape_, k, n, kp.data()).WithContext("K"));
    KVARN_RETURN_IF_ERROR(PrepareTokens(shape_, v, n, vp.data()).WithContext("V"));
    EncodeTile(shape_, kp.data(), vp.data(), record, info);
    return Status::Ok();
  }

  Status Decode(const uint8_t* record, size_t record_size, int n, float* k, float* v,
                Frame frame) const override {
    KVARN_RETURN_IF_ERROR(CheckArgs(n, record_size));
    DecodeTile(shape_, record, k, v);
    if (frame == Frame::kModel && shape_.rotate) {
      FwhtBatch(k, n, head_dim_);
      FwhtBatch(v, n, head_dim_);
    }
    return Status::Ok();
  }

 private:
  TileShape shape_;
};

}  // namespace

Status CreateTileCodec(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out) {
  out->reset(new TileCodec(spec, head_dim));
  return Status::Ok();
}

}  // namespace kvarn
