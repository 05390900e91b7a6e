#include "quant/codec.h"

#include <string>

#include "quant/codec_internal.h"

namespace kvarn {

Status Codec::Create(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out) {
  KVARN_RETURN_IF_ERROR(ValidateCodec(spec, head_dim));
  if (spec.is_tile()) return CreateTileCodec(spec, head_dim, out);
  return CreateTokenCodec(spec, head_dim, out);
}

size_t Codec::RecordBytes(int n) const {
  if (spec_.is_tile()) {
    return TileRecordLayout{head_dim_, spec_.group, spec_.k_bits, spec_.v_bits}.bytes();
  }
  return size_t(n) * size_t(BytesPerToken());
}

double Codec::BytesPerToken() const {
  if (spec_.is_tile()) return double(RecordBytes(spec_.group)) / spec_.group;
  return double(2 * TokenRowBytes(spec_, head_dim_));
}

Status Codec::CheckArgs(int n, size_t record_size) const {
  if (spec_.is_tile() && n != spec_.group)
    return InvalidArgument("codec " + spec_.Name() + ": a tile holds exactly " +
                           std::to_string(spec_.group) + " tokens, got " + std::to_string(n));
  if (n < 1) return InvalidArgument("codec " + spec_.Name() + ": token count " + std::to_string(n));
  if (record_size < RecordBytes(n))
    return BufferTooSmall("codec " + spec_.Name() + ": record buffer of " +
                          std::to_string(record_size) + " bytes, need " +
                          std::to_string(RecordBytes(n)));
  return Status::Ok();
}

}  // namespace kvarn
