// The identity a session file records for the model it was computed with.
#pragma once

#include "model/model.h"
#include "session/session_file.h"

namespace kvarn {

// File size, architecture, name and cache shape of a loaded model, and its fingerprint:
// SHA-256 over the GGUF header (metadata and tensor table, bytes [0, data_offset)) followed by
// the first and the last 4 KiB of every tensor's data in table order (all of a tensor smaller
// than 8 KiB). That tells apart two files that share a header (a re-quantized or fine-tuned
// model of the same architecture) at the cost of reading ~8 KiB per tensor, not the weights.
ModelIdentity IdentifyModel(const Model& model);

}  // namespace kvarn
