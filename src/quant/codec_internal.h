// Factories of the concrete codecs, used by Codec::Create (codec.cc) only.
#pragma once

#include <memory>

#include "quant/codec.h"

namespace kvarn {

Status CreateTileCodec(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out);
Status CreateTokenCodec(const CodecSpec& spec, int head_dim, std::unique_ptr<Codec>* out);

}  // namespace kvarn

namespace kvarn {
// Bytes of one token's K (or V) row for a per-token codec.
size_t TokenRowBytes(const CodecSpec& spec, int head_dim);
}  // namespace kvarn
