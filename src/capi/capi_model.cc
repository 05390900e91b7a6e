// The C API's model runs: kvarn_model_*, kvarn_sampler_* over Model, Tokenizer and Sampler.
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "capi/capi_internal.h"
#include "model/chat_template.h"
#include "session/model_identity.h"

using kvarn::capi::NullArg;
using kvarn::capi::Report;

namespace kvarn::capi {
kvarn_status CacheInit(const KvCacheConfig& config, kvarn_cache** out);  // capi_cache.cc
}  // namespace kvarn::capi

const kvarn::ModelIdentity& kvarn_model::Identity() const {
  std::call_once(identity_once, [this] { identity = kvarn::IdentifyModel(*impl); });
  return identity;
}

namespace {

kvarn_status NoTokenizer(const kvarn_model* m) {
  return Report(m->tokenizer_status.WithContext("model has no usable tokenizer"));
}

// Copies ids into a caller's buffer of `capacity`, reporting the count either way.
kvarn_status CopyIds(const std::vector<int32_t>& v, int32_t* ids, size_t capacity, size_t* n_ids) {
  *n_ids = v.size();
  if (v.size() > capacity)
    return Report(kvarn::BufferTooSmall(std::to_string(v.size()) + " token ids, buffer of " +
                                        std::to_string(capacity)));
  if (!v.empty()) std::memcpy(ids, v.data(), v.size() * sizeof(int32_t));
  return KVARN_OK;
}

}  // namespace

extern "C" {

kvarn_status kvarn_model_load(const char* path, kvarn_model** out) {
  if (out == nullptr) return NullArg("out");
  *out = nullptr;
  if (path == nullptr) return NullArg("path");
  auto* m = new (std::nothrow) kvarn_model;
  if (m == nullptr) return Report(kvarn::OutOfMemory("model allocation"));
  const kvarn::Status st = kvarn::Model::Load(path, &m->impl);
  if (!st.ok()) {
    delete m;
    return Report(st);
  }
  m->tokenizer_status = kvarn::Tokenizer::FromGguf(m->impl->gguf(), &m->tokenizer);
  *out = m;
  return KVARN_OK;
}

void kvarn_model_free(kvarn_model* model) { delete model; }

kvarn_status kvarn_model_get_info(const kvarn_model* model, kvarn_model_info* out) {
  if (model == nullptr) return NullArg("model");
  if (out == nullptr) return NullArg("out");
  const kvarn::ModelConfig& c = model->impl->config();
  out->arch = c.arch.c_str();
  out->name = c.name.c_str();
  out->n_layers = c.n_layers;
  out->n_embd = c.n_embd;
  out->n_ff = c.n_ff;
  out->n_heads = c.n_heads;
  out->n_kv_heads = c.n_kv_heads;
  out->head_dim = c.head_dim;
  out->n_vocab = c.n_vocab;
  out->n_ctx_train = c.n_ctx_train;
  const kvarn::Tokenizer* t = model->tokenizer.get();
  out->bos = t != nullptr ? t->bos() : -1;
  out->eos = t != nullptr ? t->eos() : -1;
  out->add_bos = t != nullptr && t->add_bos() ? 1 : 0;
  return KVARN_OK;
}

kvarn_status kvarn_model_cache_init(const kvarn_model* model, const char* codec, int max_tokens,
                                    size_t byte_budget, kvarn_cache** out) {
  if (out == nullptr) return NullArg("out");
  *out = nullptr;
  if (model == nullptr) return NullArg("model");
  const kvarn::ModelConfig& c = model->impl->config();
  kvarn::KvCacheConfig cfg;
  cfg.n_layers = c.n_layers;
  cfg.n_kv_heads = c.n_kv_heads;
  cfg.head_dim = c.head_dim;
  cfg.max_tokens = max_tokens;
  cfg.byte_budget = byte_budget == 0 ? SIZE_MAX : byte_budget;
  if (codec != nullptr) {
    const kvarn::Status st = kvarn::ParseCodecSpec(codec, &cfg.codec);
    if (!st.ok()) return Report(st);
  }
  return kvarn::capi::CacheInit(cfg, out);
}

kvarn_status kvarn_model_tokenize(const kvarn_model* model, const char* text, size_t text_len,
                                  int add_bos, int parse_special, int32_t* ids, size_t capacity,
                                  size_t* n_ids) {
  if (model == nullptr) return NullArg("model");
  if (text == nullptr && text_len > 0) return NullArg("text");
  if (ids == nullptr && capacity > 0) return NullArg("ids");
  if (n_ids == nullptr) return NullArg("n_ids");
  if (model->tokenizer == nullptr) return NoTokenizer(model);
  const kvarn::Tokenizer& t = *model->tokenizer;
  std::vector<int32_t> v;
  const kvarn::Status st =
      t.Encode(std::string_view(text != nullptr ? text : "", text_len), parse_special != 0, &v);
  if (!st.ok()) return Report(st);
  const bool bos = add_bos < 0 ? t.add_bos() : add_bos != 0;
  if (bos && t.bos() >= 0) v.insert(v.begin(), t.bos());
  return CopyIds(v, ids, capacity, n_ids);
}

kvarn_status kvarn_model_tokenize_chat(const kvarn_model* model, const char* const* roles,
                                       const char* const* contents, size_t n_messages,
                                       int add_generation_prompt, int32_t* ids, size_t capacity,
                                       size_t* n_ids) {
  if (model == nullptr) return NullArg("model");
  if (n_messages > 0 && (roles == nullptr || contents == nullptr))
    return NullArg("roles or contents");
  if (ids == nullptr && capacity > 0) return NullArg("ids");
  if (n_ids == nullptr) return NullArg("n_ids");
  if (model->tokenizer == nullptr) return NoTokenizer(model);
  std::vector<kvarn::ChatMessage> msgs;
  for (size_t i = 0; i < n_messages; ++i) {
    if (roles[i] == nullptr || contents[i] == nullptr)
      return Report(kvarn::InvalidArgument("chat message " + std::to_string(i) +
                                           ": role or content is NULL"));
    msgs.push_back({roles[i], contents[i]});
  }
  std::vector<int32_t> v;
  const kvarn::Status st =
      kvarn::EncodeChat(*model->tokenizer, msgs, add_generation_prompt != 0, &v);
  if (!st.ok()) return Report(st);
  return CopyIds(v, ids, capacity, n_ids);
}

kvarn_status kvarn_model_detokenize(const kvarn_model* model, const int32_t* ids, size_t n_ids,
                                    int render_control, char* text, size_t capacity,
                                    size_t* text_len) {
  if (model == nullptr) return NullArg("model");
  if (ids == nullptr && n_ids > 0) return NullArg("ids");
  if (text == nullptr && capacity > 0) return NullArg("text");
  if (text_len == nullptr) return NullArg("text_len");
  if (model->tokenizer == nullptr) return NoTokenizer(model);
  const std::string s =
      model->tokenizer->Decode(std::vector<int32_t>(ids, ids + n_ids), render_control != 0);
  *text_len = s.size();
  if (s.size() >= capacity)
    return Report(kvarn::BufferTooSmall(std::to_string(s.size()) +
                                        " bytes of text and a NUL, buffer of " +
                                        std::to_string(capacity)));
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  return KVARN_OK;
}

int kvarn_model_is_eog(const kvarn_model* model, int32_t token) {
  return model != nullptr && model->tokenizer != nullptr && model->tokenizer->IsEog(token) ? 1 : 0;
}

kvarn_status kvarn_model_forward(const kvarn_model* model, kvarn_cache* cache, int seq,
                                 const int32_t* tokens, int n_tokens, int n_threads,
                                 kvarn_logits which, float* logits,
                                 const kvarn_forward_hooks* hooks) {
  if (model == nullptr) return NullArg("model");
  if (cache == nullptr) return NullArg("cache");
  if (tokens == nullptr) return NullArg("tokens");
  if (which != KVARN_LOGITS_LAST && which != KVARN_LOGITS_ALL)
    return Report(kvarn::InvalidArgument("logits selector " + std::to_string(int(which))));
  if (size_t(seq) < cache->steps.size() && cache->steps[size_t(seq)].n > 0)
    return Report(kvarn::InvalidArgument("forward: sequence " + std::to_string(seq) +
                                         " has a step open through kvarn_cache_begin_step"));
  kvarn::ForwardOptions fo;
  fo.n_threads = n_threads < 1 ? 1 : n_threads;
  fo.all_hidden = which == KVARN_LOGITS_ALL;
  if (hooks != nullptr && hooks->on_kv != nullptr)
    fo.on_kv = [hooks](int l, float* k, float* v, int n) { hooks->on_kv(hooks->user, l, k, v, n); };
  if (hooks != nullptr && hooks->on_attention != nullptr)
    fo.on_attention = [hooks](int l, const float* a, int n) {
      hooks->on_attention(hooks->user, l, a, n);
    };
  kvarn::ForwardOutput out;
  kvarn::Status st = model->impl->Forward(*cache->impl, seq, tokens, n_tokens, fo, &out);
  if (!st.ok()) return Report(st);
  if (logits == nullptr) return KVARN_OK;
  if (which == KVARN_LOGITS_LAST) {
    std::memcpy(logits, out.logits.data(), out.logits.size() * sizeof(float));
    return KVARN_OK;
  }
  return Report(model->impl->Logits(out.hidden.data(), n_tokens, logits, fo.n_threads));
}

kvarn_status kvarn_sampler_init(float temperature, int top_k, float top_p, float min_p,
                                uint64_t seed, kvarn_sampler** out) {
  if (out == nullptr) return NullArg("out");
  *out = nullptr;
  auto* s = new (std::nothrow) kvarn_sampler;
  if (s == nullptr) return Report(kvarn::OutOfMemory("sampler allocation"));
  kvarn::SamplerParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  const kvarn::Status st = kvarn::Sampler::Create(p, &s->impl);
  if (!st.ok()) {
    delete s;
    return Report(st);
  }
  *out = s;
  return KVARN_OK;
}

void kvarn_sampler_free(kvarn_sampler* sampler) { delete sampler; }

int32_t kvarn_sampler_sample(kvarn_sampler* sampler, const float* logits, int n_vocab) {
  if (sampler == nullptr || logits == nullptr || n_vocab < 1) return -1;
  return sampler->impl->Sample(logits, n_vocab);
}

kvarn_status kvarn_model_generate(const kvarn_model* model, kvarn_cache* cache, int seq,
                                  kvarn_sampler* sampler, const float* logits, int n_predict,
                                  int n_threads, int32_t* tokens_out, int* n_out,
                                  float* last_logits) {
  if (model == nullptr) return NullArg("model");
  if (cache == nullptr) return NullArg("cache");
  if (sampler == nullptr) return NullArg("sampler");
  if (logits == nullptr) return NullArg("logits");
  if (n_out == nullptr) return NullArg("n_out");
  if (tokens_out == nullptr && n_predict > 0) return NullArg("tokens_out");
  *n_out = 0;
  if (n_predict < 0)
    return Report(kvarn::InvalidArgument("n_predict " + std::to_string(n_predict)));
  if (model->tokenizer == nullptr) return NoTokenizer(model);
  kvarn::SeqView view;
  kvarn::Status st = cache->impl->View(seq, &view);
  if (!st.ok()) return Report(st);
  const int n_vocab = model->impl->config().n_vocab;
  kvarn::ForwardOptions fo;
  fo.n_threads = n_threads < 1 ? 1 : n_threads;
  kvarn::ForwardOutput out;
  out.logits.assign(logits, logits + n_vocab);
  // The loop of `kvarn run` (tools/kvarn/cmd_run.cc), token for token.
  for (int generated = 0; generated < n_predict; ++generated) {
    const int32_t next = sampler->impl->Sample(out.logits.data(), n_vocab);
    if (model->tokenizer->IsEog(next)) break;
    tokens_out[(*n_out)++] = next;
    if (cache->impl->Length(seq) + 1 > cache->impl->config().max_tokens) break;
    if (!(st = model->impl->Forward(*cache->impl, seq, &next, 1, fo, &out)).ok()) return Report(st);
  }
  if (last_logits != nullptr)
    std::memcpy(last_logits, out.logits.data(), size_t(n_vocab) * sizeof(float));
  return KVARN_OK;
}

}  // extern "C"
