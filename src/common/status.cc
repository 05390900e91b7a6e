#include "common/status.h"

namespace kvarn {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kNonFinite: return "non-finite value";
    case StatusCode::kBufferTooSmall: return "buffer too small";
    case StatusCode::kCorruptData: return "corrupt data";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

}  // namespace kvarn
