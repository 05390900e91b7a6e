// Thin C++ layer over the C API: RAII ownership and exceptions-free error returns.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvarn/kvarn.h"

namespace kvarn::api {

struct CodecDeleter {
  void operator()(kvarn_codec* c) const { kvarn_codec_free(c); }
};
using CodecPtr = std::unique_ptr<kvarn_codec, CodecDeleter>;

// Returns a codec, or null with *error set to the library's message.
inline CodecPtr MakeCodec(const std::string& name, int head_dim, std::string* error = nullptr) {
  kvarn_codec* c = nullptr;
  if (kvarn_codec_init(name.c_str(), head_dim, &c) != KVARN_OK) {
    if (error != nullptr) *error = kvarn_last_error();
    return nullptr;
  }
  return CodecPtr(c);
}

// Encodes one record; returns an empty vector (and *error) on failure.
inline std::vector<uint8_t> Encode(const kvarn_codec* c, const float* k, const float* v,
                                   int n_tokens, std::string* error = nullptr) {
  std::vector<uint8_t> rec(kvarn_codec_record_bytes(c, n_tokens));
  if (rec.empty() ||
      kvarn_codec_encode(c, k, v, n_tokens, rec.data(), rec.size()) != KVARN_OK) {
    if (error != nullptr) *error = kvarn_last_error();
    return {};
  }
  return rec;
}

}  // namespace kvarn::api
