// The C API's session files: kvarn_session_* over session/session_file.h.
#include <cstring>
#include <string>
#include <vector>

#include "capi/capi_internal.h"

using kvarn::capi::NullArg;
using kvarn::capi::Report;

extern "C" {

kvarn_status kvarn_session_save(const kvarn_model* model, kvarn_cache* cache, int seq,
                                const int32_t* tokens, size_t n_tokens, const float* logits,
                                const char* path) {
  if (model == nullptr) return NullArg("model");
  if (cache == nullptr) return NullArg("cache");
  if (tokens == nullptr && n_tokens > 0) return NullArg("tokens");
  if (path == nullptr) return NullArg("path");
  if (size_t(seq) < cache->steps.size() && cache->steps[size_t(seq)].n > 0)
    return Report(kvarn::InvalidArgument("session save: sequence " + std::to_string(seq) +
                                         " has an open step"));
  const std::vector<int32_t> ids(tokens, tokens + n_tokens);
  return Report(kvarn::WriteSession(path, model->Identity(), *cache->impl, seq, ids, logits));
}

kvarn_status kvarn_session_load(const kvarn_model* model, kvarn_cache* cache, const char* path,
                                const int32_t* prompt, size_t n_prompt, int* seq, size_t* n_reused,
                                float* logits, int* has_logits) {
  if (model == nullptr) return NullArg("model");
  if (cache == nullptr) return NullArg("cache");
  if (path == nullptr) return NullArg("path");
  if (seq == nullptr) return NullArg("seq");
  if (n_reused == nullptr) return NullArg("n_reused");
  if (prompt == nullptr && n_prompt > 0) return NullArg("prompt");
  if (n_prompt > size_t(INT32_MAX))
    return Report(kvarn::InvalidArgument("prompt of " + std::to_string(n_prompt) + " tokens"));
  kvarn::RestoredSession r;
  const kvarn::Status st =
      kvarn::LoadSessionFile(path, model->Identity(), *cache->impl, prompt, int(n_prompt), &r);
  if (!st.ok()) return Report(st);
  *seq = r.seq;
  *n_reused = size_t(r.reused);
  if (has_logits != nullptr) *has_logits = r.logits.empty() ? 0 : 1;
  if (logits != nullptr && !r.logits.empty())
    std::memcpy(logits, r.logits.data(), r.logits.size() * sizeof(float));
  return KVARN_OK;
}

kvarn_status kvarn_session_tokens(const char* path, int32_t* tokens, size_t capacity,
                                  size_t* n_tokens) {
  if (path == nullptr) return NullArg("path");
  if (tokens == nullptr && capacity > 0) return NullArg("tokens");
  if (n_tokens == nullptr) return NullArg("n_tokens");
  std::unique_ptr<kvarn::ByteSource> src;
  kvarn::Status st = kvarn::OpenFileSource(path, &src);
  if (!st.ok()) return Report(st);
  kvarn::SessionHeader h;
  if (!(st = kvarn::ReadSessionHeader(*src, &h)).ok()) return Report(st);
  *n_tokens = h.tokens.size();
  if (h.tokens.size() > capacity)
    return Report(kvarn::BufferTooSmall(std::to_string(h.tokens.size()) + " token ids, buffer of " +
                                        std::to_string(capacity)));
  if (!h.tokens.empty()) std::memcpy(tokens, h.tokens.data(), h.tokens.size() * sizeof(int32_t));
  return KVARN_OK;
}

}  // extern "C"
