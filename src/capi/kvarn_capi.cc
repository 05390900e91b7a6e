// The C API (include/kvarn/kvarn.h): errors, codecs and the process switches. The cache,
// model and session calls are in capi_cache.cc, capi_model.cc and capi_session.cc.
#include <memory>
#include <new>
#include <string>

#include "capi/capi_internal.h"
#include "common/dispatch.h"
#include "kvarn/kvarn.h"

namespace kvarn::capi {
namespace {

thread_local std::string g_last_error;

static_assert(int(StatusCode::kInternal) == KVARN_ERR_INTERNAL);
static_assert(int(StatusCode::kNonFinite) == KVARN_ERR_NON_FINITE);
static_assert(int(StatusCode::kOutOfRange) == KVARN_ERR_OUT_OF_RANGE);

}  // namespace

kvarn_status Report(const Status& st) {
  if (st.ok()) return KVARN_OK;
  g_last_error = st.message();
  return static_cast<kvarn_status>(st.code());
}

kvarn_status NullArg(const char* what) {
  return Report(InvalidArgument(std::string(what) + " is NULL"));
}

}  // namespace kvarn::capi

using kvarn::capi::NullArg;
using kvarn::capi::Report;

extern "C" {

const char* kvarn_status_string(kvarn_status status) {
  return kvarn::StatusCodeName(static_cast<kvarn::StatusCode>(status));
}

const char* kvarn_last_error(void) { return kvarn::capi::g_last_error.c_str(); }

kvarn_status kvarn_codec_init(const char* name, int head_dim, kvarn_codec** out) {
  if (out == nullptr) return NullArg("out");
  *out = nullptr;
  kvarn::CodecSpec spec;
  if (name != nullptr) {
    const kvarn::Status st = kvarn::ParseCodecSpec(name, &spec);
    if (!st.ok()) return Report(st);
  }
  auto* c = new (std::nothrow) kvarn_codec;
  if (c == nullptr) return Report(kvarn::OutOfMemory("codec allocation"));
  const kvarn::Status st = kvarn::Codec::Create(spec, head_dim, &c->impl);
  if (!st.ok()) {
    delete c;
    return Report(st);
  }
  c->name = spec.Name();
  *out = c;
  return KVARN_OK;
}

void kvarn_codec_free(kvarn_codec* codec) { delete codec; }

const char* kvarn_codec_name(const kvarn_codec* codec) {
  return codec != nullptr ? codec->name.c_str() : "";
}

int kvarn_codec_tokens_per_record(const kvarn_codec* codec) {
  return codec != nullptr ? codec->impl->tokens_per_record() : 0;
}

size_t kvarn_codec_record_bytes(const kvarn_codec* codec, int n_tokens) {
  if (codec == nullptr || n_tokens < 1) return 0;
  const kvarn::CodecSpec& spec = codec->impl->spec();
  if (spec.is_tile() && n_tokens != spec.group) return 0;
  return codec->impl->RecordBytes(n_tokens);
}

kvarn_status kvarn_codec_encode(const kvarn_codec* codec, const float* k, const float* v,
                                int n_tokens, uint8_t* record, size_t record_size) {
  if (codec == nullptr) return NullArg("codec");
  if (k == nullptr) return NullArg("k");
  if (v == nullptr) return NullArg("v");
  if (record == nullptr) return NullArg("record");
  return Report(codec->impl->Encode(k, v, n_tokens, record, record_size));
}

kvarn_status kvarn_codec_decode(const kvarn_codec* codec, const uint8_t* record, size_t record_size,
                                int n_tokens, float* k, float* v, kvarn_frame frame) {
  if (codec == nullptr) return NullArg("codec");
  if (record == nullptr) return NullArg("record");
  if (k == nullptr) return NullArg("k");
  if (v == nullptr) return NullArg("v");
  if (frame != KVARN_FRAME_MODEL && frame != KVARN_FRAME_ROTATED)
    return Report(kvarn::InvalidArgument("frame " + std::to_string(int(frame)) + " unknown"));
  return Report(codec->impl->Decode(
      record, record_size, n_tokens, k, v,
      frame == KVARN_FRAME_ROTATED ? kvarn::Frame::kRotated : kvarn::Frame::kModel));
}

void kvarn_set_force_reference(int force) { kvarn::SetForceReference(force != 0); }

const char* kvarn_simd_target(void) {
  // The name lives in the calling thread's buffer until its next call (see kvarn.h).
  thread_local std::string name;
  name = kvarn::SimdTargetName();
  return name.c_str();
}

}  // extern "C"
