// The C API's KV cache: kvarn_cache_* over KvCache and Attend.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <new>
#include <string>

#include "attention/attention.h"
#include "capi/capi_internal.h"

using kvarn::capi::NullArg;
using kvarn::capi::Report;

namespace {

kvarn_status MakeCache(const kvarn::KvCacheConfig& config, kvarn_cache** out) {
  auto* c = new (std::nothrow) kvarn_cache;
  if (c == nullptr) return Report(kvarn::OutOfMemory("cache allocation"));
  const kvarn::Status st = kvarn::KvCache::Create(config, &c->impl);
  if (!st.ok()) {
    delete c;
    return Report(st);
  }
  c->codec_name = config.codec.Name();
  *out = c;
  return KVARN_OK;
}

kvarn_cache::OpenStep* Step(kvarn_cache* c, int seq) {
  if (seq < 0) return nullptr;
  if (size_t(seq) >= c->steps.size()) c->steps.resize(size_t(seq) + 1);
  return &c->steps[size_t(seq)];
}

}  // namespace

namespace kvarn::capi {

// Shared with kvarn_model_cache_init.
kvarn_status CacheInit(const KvCacheConfig& config, kvarn_cache** out) {
  return MakeCache(config, out);
}

}  // namespace kvarn::capi

extern "C" {

kvarn_status kvarn_cache_init(int n_layers, int n_kv_heads, int head_dim, const char* codec,
                              int max_tokens, size_t byte_budget, kvarn_cache** out) {
  if (out == nullptr) return NullArg("out");
  *out = nullptr;
  kvarn::KvCacheConfig cfg;
  cfg.n_layers = n_layers;
  cfg.n_kv_heads = n_kv_heads;
  cfg.head_dim = head_dim;
  cfg.max_tokens = max_tokens;
  cfg.byte_budget = byte_budget == 0 ? SIZE_MAX : byte_budget;
  if (codec != nullptr) {
    const kvarn::Status st = kvarn::ParseCodecSpec(codec, &cfg.codec);
    if (!st.ok()) return Report(st);
  }
  return MakeCache(cfg, out);
}

void kvarn_cache_free(kvarn_cache* cache) { delete cache; }

const char* kvarn_cache_codec_name(const kvarn_cache* cache) {
  return cache != nullptr ? cache->codec_name.c_str() : "";
}

int kvarn_cache_block_tokens(const kvarn_cache* cache) {
  return cache != nullptr ? cache->impl->block_tokens() : 0;
}

kvarn_status kvarn_cache_add_sequence(kvarn_cache* cache, int* seq) {
  if (cache == nullptr) return NullArg("cache");
  if (seq == nullptr) return NullArg("seq");
  return Report(cache->impl->AddSequence(seq));
}

kvarn_status kvarn_cache_remove_sequence(kvarn_cache* cache, int seq) {
  if (cache == nullptr) return NullArg("cache");
  const kvarn::Status st = cache->impl->RemoveSequence(seq);
  if (st.ok() && size_t(seq) < cache->steps.size()) cache->steps[size_t(seq)] = {};
  return Report(st);
}

kvarn_status kvarn_cache_copy_sequence(kvarn_cache* cache, int src, int* dst) {
  if (cache == nullptr) return NullArg("cache");
  if (dst == nullptr) return NullArg("dst");
  return Report(cache->impl->CopySequence(src, dst));
}

kvarn_status kvarn_cache_length(const kvarn_cache* cache, int seq, int* length) {
  if (cache == nullptr) return NullArg("cache");
  if (length == nullptr) return NullArg("length");
  kvarn::SeqView view;  // View validates the id; Length() alone would report 0
  const kvarn::Status st = cache->impl->View(seq, &view);
  if (!st.ok()) return Report(st);
  *length = view.length();
  return KVARN_OK;
}

kvarn_status kvarn_cache_encoded_tokens(const kvarn_cache* cache, int seq, int* n) {
  if (cache == nullptr) return NullArg("cache");
  if (n == nullptr) return NullArg("n");
  kvarn::SeqView view;
  const kvarn::Status st = cache->impl->View(seq, &view);
  if (!st.ok()) return Report(st);
  *n = cache->impl->EncodedTokens(seq);
  return KVARN_OK;
}

kvarn_status kvarn_cache_begin_step(kvarn_cache* cache, int seq, int n_new) {
  if (cache == nullptr) return NullArg("cache");
  const int begin = cache->impl->Length(seq);
  const kvarn::Status st = cache->impl->BeginStep(seq, n_new);
  if (!st.ok()) return Report(st);
  kvarn_cache::OpenStep* s = Step(cache, seq);
  s->begin = begin;
  s->n = n_new;
  s->written.assign(size_t(cache->impl->config().n_layers) * size_t(n_new), 0);
  return KVARN_OK;
}

kvarn_status kvarn_cache_write(kvarn_cache* cache, int seq, int layer, int pos, int n,
                               const float* k, const float* v) {
  if (cache == nullptr) return NullArg("cache");
  if (k == nullptr) return NullArg("k");
  if (v == nullptr) return NullArg("v");
  const kvarn::Status st = cache->impl->Write(seq, layer, pos, n, k, v);
  if (!st.ok()) return Report(st);
  // Write checked layer and positions against the open step.
  kvarn_cache::OpenStep* s = Step(cache, seq);
  if (s->n > 0)
    for (int t = pos; t < pos + n; ++t)
      s->written[size_t(layer) * size_t(s->n) + size_t(t - s->begin)] = 1;
  return KVARN_OK;
}

kvarn_status kvarn_cache_end_step(kvarn_cache* cache, int seq) {
  if (cache == nullptr) return NullArg("cache");
  kvarn_cache::OpenStep* s = Step(cache, seq);
  if (s != nullptr && s->n > 0) {
    for (size_t i = 0; i < s->written.size(); ++i) {
      if (s->written[i]) continue;
      const size_t layer = i / size_t(s->n), pos = size_t(s->begin) + i % size_t(s->n);
      return Report(kvarn::InvalidArgument(
          "end_step: layer " + std::to_string(layer) + " has no K/V for position " +
          std::to_string(pos) + " of this step [" + std::to_string(s->begin) + ", " +
          std::to_string(s->begin + s->n) + "); write it or abort the step"));
    }
  }
  const kvarn::Status st = cache->impl->EndStep(seq);
  if (st.ok() && s != nullptr) *s = {};
  return Report(st);
}

kvarn_status kvarn_cache_abort_step(kvarn_cache* cache, int seq) {
  if (cache == nullptr) return NullArg("cache");
  const kvarn::Status st = cache->impl->AbortStep(seq);
  if (st.ok() && seq >= 0 && size_t(seq) < cache->steps.size()) cache->steps[size_t(seq)] = {};
  return Report(st);
}

kvarn_status kvarn_cache_truncate(kvarn_cache* cache, int seq, int length) {
  if (cache == nullptr) return NullArg("cache");
  return Report(cache->impl->Truncate(seq, length));
}

kvarn_status kvarn_cache_attend(const kvarn_cache* cache, int seq, int layer, const float* q,
                                int n_q, int n_heads, int pos0, float scale, int n_threads,
                                float* out) {
  if (cache == nullptr) return NullArg("cache");
  if (q == nullptr) return NullArg("q");
  if (out == nullptr) return NullArg("out");
  if (!(scale >= 0.0f) || !std::isfinite(scale))
    return Report(kvarn::InvalidArgument("attend: scale " + std::to_string(scale)));
  kvarn::SeqView view;
  const kvarn::Status st = cache->impl->View(seq, &view);
  if (!st.ok()) return Report(st);
  // Inside a step begun here, the positions read must have been written (else the pages hold
  // undefined values there).
  if (size_t(seq) < cache->steps.size() && cache->steps[size_t(seq)].n > 0 && layer >= 0 &&
      layer < cache->impl->config().n_layers) {
    const kvarn_cache::OpenStep& s = cache->steps[size_t(seq)];
    for (int t = s.begin; t < std::min(pos0 + n_q, s.begin + s.n); ++t)
      if (!s.written[size_t(layer) * size_t(s.n) + size_t(t - s.begin)])
        return Report(kvarn::InvalidArgument("attend: layer " + std::to_string(layer) +
                                             " has no K/V for position " + std::to_string(t) +
                                             " yet (write before attending)"));
  }
  kvarn::AttentionParams p;
  p.n_heads = n_heads;
  p.scale = scale > 0.0f ? scale : float(1.0 / std::sqrt(double(cache->impl->config().head_dim)));
  p.n_threads = n_threads < 1 ? 1 : n_threads;
  return Report(kvarn::Attend(*cache->impl, view, layer, p, q, n_q, pos0, out));
}

kvarn_status kvarn_cache_get_stats(const kvarn_cache* cache, kvarn_cache_stats* out) {
  if (cache == nullptr) return NullArg("cache");
  if (out == nullptr) return NullArg("out");
  const kvarn::CacheStats s = cache->impl->Stats();
  out->record_bytes = s.record_bytes;
  out->sink_bytes = s.sink_bytes;
  out->tail_bytes = s.tail_bytes;
  out->row_bytes = s.row_bytes;
  out->scratch_bytes = s.scratch_bytes;
  out->total_bytes = s.total();
  out->budget_bytes = s.budget;
  out->tokens = s.tokens;
  return KVARN_OK;
}

}  // extern "C"
