// Thin C++ layer over the C API: RAII ownership and exception-free error returns (every
// fallible method returns kvarn_status; kvarn_last_error() holds the message, as in C).
// Header-only; link kvarn::kvarn. Thread-safety rules are the C API's (kvarn.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvarn/kvarn.h"

namespace kvarn::api {

// ------------------------------------------------------------------ codecs

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
  if (rec.empty() || kvarn_codec_encode(c, k, v, n_tokens, rec.data(), rec.size()) != KVARN_OK) {
    if (error != nullptr) *error = kvarn_last_error();
    return {};
  }
  return rec;
}

// ------------------------------------------------------------------ cache

class Cache {
 public:
  Cache() = default;
  // Adopts a cache from kvarn_cache_init or kvarn_model_cache_init.
  explicit Cache(kvarn_cache* c) : c_(c) {}
  // A cache, or an empty one (false) with *error set.
  static Cache Create(int n_layers, int n_kv_heads, int head_dim, const std::string& codec,
                      int max_tokens, size_t byte_budget = 0, std::string* error = nullptr) {
    kvarn_cache* c = nullptr;
    if (kvarn_cache_init(n_layers, n_kv_heads, head_dim, codec.c_str(), max_tokens, byte_budget,
                         &c) != KVARN_OK &&
        error != nullptr)
      *error = kvarn_last_error();
    return Cache(c);
  }
  explicit operator bool() const { return c_ != nullptr; }
  kvarn_cache* get() const { return c_.get(); }
  std::string codec_name() const { return kvarn_cache_codec_name(c_.get()); }
  int block_tokens() const { return kvarn_cache_block_tokens(c_.get()); }

  kvarn_status AddSequence(int* seq) { return kvarn_cache_add_sequence(c_.get(), seq); }
  kvarn_status RemoveSequence(int seq) { return kvarn_cache_remove_sequence(c_.get(), seq); }
  kvarn_status CopySequence(int src, int* dst) {
    return kvarn_cache_copy_sequence(c_.get(), src, dst);
  }
  kvarn_status BeginStep(int seq, int n) { return kvarn_cache_begin_step(c_.get(), seq, n); }
  // k, v [n][n_kv_heads][head_dim]
  kvarn_status Write(int seq, int layer, int pos, int n, const float* k, const float* v) {
    return kvarn_cache_write(c_.get(), seq, layer, pos, n, k, v);
  }
  kvarn_status EndStep(int seq) { return kvarn_cache_end_step(c_.get(), seq); }
  kvarn_status AbortStep(int seq) { return kvarn_cache_abort_step(c_.get(), seq); }
  kvarn_status Truncate(int seq, int length) { return kvarn_cache_truncate(c_.get(), seq, length); }
  // q, out [n_q][n_heads][head_dim]
  kvarn_status Attend(int seq, int layer, const float* q, int n_q, int n_heads, int pos0,
                      float scale, int n_threads, float* out) const {
    return kvarn_cache_attend(c_.get(), seq, layer, q, n_q, n_heads, pos0, scale, n_threads, out);
  }
  int Length(int seq) const {  // -1 for an unknown sequence
    int n = -1;
    return kvarn_cache_length(c_.get(), seq, &n) == KVARN_OK ? n : -1;
  }
  kvarn_cache_stats Stats() const {
    kvarn_cache_stats s{};
    (void)kvarn_cache_get_stats(c_.get(), &s);
    return s;
  }

 private:
  struct Deleter {
    void operator()(kvarn_cache* c) const { kvarn_cache_free(c); }
  };
  std::unique_ptr<kvarn_cache, Deleter> c_;
};

// ------------------------------------------------------------------ model

class Model {
 public:
  static Model Load(const std::string& path, std::string* error = nullptr) {
    kvarn_model* m = nullptr;
    if (kvarn_model_load(path.c_str(), &m) != KVARN_OK && error != nullptr)
      *error = kvarn_last_error();
    Model out;
    out.m_.reset(m);
    return out;
  }
  explicit operator bool() const { return m_ != nullptr; }
  const kvarn_model* get() const { return m_.get(); }
  kvarn_model_info Info() const {
    kvarn_model_info i{};
    (void)kvarn_model_get_info(m_.get(), &i);
    return i;
  }
  Cache CreateCache(const std::string& codec, int max_tokens, size_t byte_budget = 0,
                    std::string* error = nullptr) const {
    kvarn_cache* c = nullptr;
    if (kvarn_model_cache_init(m_.get(), codec.c_str(), max_tokens, byte_budget, &c) != KVARN_OK &&
        error != nullptr)
      *error = kvarn_last_error();
    return Cache(c);
  }
  // add_bos: 1, 0, or -1 for the model's default.
  kvarn_status Tokenize(std::string_view text, std::vector<int32_t>* ids, int add_bos = -1,
                        bool parse_special = false) const {
    size_t n = 0;
    ids->resize(text.size() + 2);  // byte-level BPE: at most one token per byte, plus bos
    kvarn_status st = kvarn_model_tokenize(m_.get(), text.data(), text.size(), add_bos,
                                           parse_special, ids->data(), ids->size(), &n);
    ids->resize(st == KVARN_OK ? n : 0);
    return st;
  }
  kvarn_status Detokenize(const std::vector<int32_t>& ids, std::string* text,
                          bool render_control = false) const {
    size_t n = 0;
    kvarn_status st =
        kvarn_model_detokenize(m_.get(), ids.data(), ids.size(), render_control, nullptr, 0, &n);
    if (st != KVARN_ERR_BUFFER_TOO_SMALL) return st;
    std::vector<char> buf(n + 1);
    st = kvarn_model_detokenize(m_.get(), ids.data(), ids.size(), render_control, buf.data(),
                                buf.size(), &n);
    if (st == KVARN_OK) text->assign(buf.data(), n);
    return st;
  }
  // logits: [n_vocab] (LAST) or [n][n_vocab] (ALL), resized here.
  kvarn_status Forward(Cache& cache, int seq, const int32_t* tokens, int n, int n_threads,
                       std::vector<float>* logits, kvarn_logits which = KVARN_LOGITS_LAST,
                       const kvarn_forward_hooks* hooks = nullptr) const {
    const size_t rows = which == KVARN_LOGITS_ALL ? size_t(n) : 1;
    logits->resize(rows * size_t(Info().n_vocab));
    return kvarn_model_forward(m_.get(), cache.get(), seq, tokens, n, n_threads, which,
                               logits->data(), hooks);
  }

 private:
  struct Deleter {
    void operator()(kvarn_model* m) const { kvarn_model_free(m); }
  };
  std::unique_ptr<kvarn_model, Deleter> m_;
};

}  // namespace kvarn::api
