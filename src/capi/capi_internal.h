// Shared by the C API's translation units: the opaque structs and the error reporting.
// Everything here reaches only the layers' public interfaces.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "common/status.h"
#include "kvarn/kvarn.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "quant/codec.h"
#include "session/session_file.h"

struct kvarn_codec {
  std::unique_ptr<kvarn::Codec> impl;
  std::string name;
};

struct kvarn_cache {
  std::unique_ptr<kvarn::KvCache> impl;
  std::string codec_name;
  // Per sequence with an open step begun through kvarn_cache_begin_step: which positions of
  // which layer were written ([layer][position - begin]), so end_step can refuse a gap instead
  // of committing undefined values.
  struct OpenStep {
    int begin = 0, n = 0;
    std::vector<uint8_t> written;
  };
  std::vector<OpenStep> steps;  // indexed by sequence id; n == 0 when no step is open
};

struct kvarn_model {
  std::unique_ptr<kvarn::Model> impl;
  std::unique_ptr<kvarn::Tokenizer> tokenizer;  // null if the GGUF's vocabulary is unusable
  kvarn::Status tokenizer_status;               // why, then
  // The session identity (a SHA-256 over the header and tensor samples), computed once.
  mutable std::once_flag identity_once;
  mutable kvarn::ModelIdentity identity;
  const kvarn::ModelIdentity& Identity() const;
};

struct kvarn_sampler {
  std::unique_ptr<kvarn::Sampler> impl;
};

namespace kvarn::capi {

// Stores the message for kvarn_last_error() (this thread) and returns the status code.
kvarn_status Report(const Status& st);
kvarn_status NullArg(const char* what);

}  // namespace kvarn::capi
