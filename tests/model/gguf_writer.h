// A minimal GGUF writer for tests: builds valid files and, through its raw hooks, malformed
// ones (wrong counts, huge lengths, bad offsets). Not a product API: it trusts its caller.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf.h"

namespace kvarn::gguftest {

using Bytes = std::vector<uint8_t>;

// Little-endian appenders. resize + memcpy rather than vector::insert: GCC 12 at -O3 reports
// a false -Wnonnull inside insert's inlined copy.
inline void Append(Bytes* b, const void* p, size_t n) {
  if (n == 0) return;
  const size_t at = b->size();
  b->resize(at + n);
  std::memcpy(b->data() + at, p, n);
}
template <typename T>
void Put(Bytes* b, T v) {
  Append(b, &v, sizeof(T));
}
inline void PutStr(Bytes* b, std::string_view s) {
  Put<uint64_t>(b, s.size());
  Append(b, s.data(), s.size());
}

class GgufWriter {
 public:
  static constexpr uint64_t kAutoOffset = ~uint64_t{0};
  static constexpr uint64_t kMaxLayout = uint64_t{1} << 24;  // bytes of data the writer lays out

  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  // Header overrides for malformed files.
  void SetMagic(uint32_t magic) { magic_ = magic; }
  void SetTensorCount(uint64_t n) {
    tensor_count_ = n;
    has_tensor_count_ = true;
  }
  void SetKvCount(uint64_t n) {
    kv_count_ = n;
    has_kv_count_ = true;
  }
  // Alignment used to place the data section and auto offsets; does not write the key.
  void SetLayoutAlignment(uint64_t a) { align_ = a; }

  // A key-value pair whose value bytes (after the type id) are given raw.
  void KvRaw(std::string_view key, uint32_t type, const Bytes& value) {
    PutStr(&kv_, key);
    Put<uint32_t>(&kv_, type);
    Append(&kv_, value.data(), value.size());
    ++n_kv_;
  }
  // Bytes appended to the metadata section verbatim (e.g. a key with a huge length).
  void KvBytes(const Bytes& raw, uint64_t pairs) {
    Append(&kv_, raw.data(), raw.size());
    n_kv_ += pairs;
  }
  template <typename T>
  void Kv(std::string_view key, GgufType type, T v) {
    Bytes b;
    Put<T>(&b, v);
    KvRaw(key, static_cast<uint32_t>(type), b);
  }
  void KvU32(std::string_view key, uint32_t v) { Kv(key, GgufType::kUint32, v); }
  void KvString(std::string_view key, std::string_view v) {
    Bytes b;
    PutStr(&b, v);
    KvRaw(key, static_cast<uint32_t>(GgufType::kString), b);
  }
  void KvStringArray(std::string_view key, const std::vector<std::string>& v) {
    Bytes b;
    Put<uint32_t>(&b, static_cast<uint32_t>(GgufType::kString));
    Put<uint64_t>(&b, v.size());
    for (const std::string& s : v) PutStr(&b, s);
    KvRaw(key, static_cast<uint32_t>(GgufType::kArray), b);
  }
  template <typename T>
  void KvArray(std::string_view key, GgufType elem, const std::vector<T>& v) {
    Bytes b;
    Put<uint32_t>(&b, static_cast<uint32_t>(elem));
    Put<uint64_t>(&b, v.size());
    for (const T& x : v) Put<T>(&b, x);
    KvRaw(key, static_cast<uint32_t>(GgufType::kArray), b);
  }

  // A tensor info. data_bytes is how much data the writer lays out for it (its real size for
  // a valid file); with kAutoOffset it is placed after the previous one, aligned.
  void Tensor(std::string_view name, const std::vector<uint64_t>& ne, uint32_t type,
              uint64_t data_bytes, uint64_t offset = kAutoOffset) {
    TensorSpec t{std::string(name), ne, type, data_bytes, offset};
    tensors_.push_back(t);
  }
  // Appends bytes verbatim to the tensor-info section (raw malformed infos).
  void TensorBytes(const Bytes& raw, uint64_t infos) {
    Append(&raw_infos_, raw.data(), raw.size());
    n_raw_infos_ += infos;
  }

  Bytes Build() const {
    Bytes out;
    Put<uint32_t>(&out, magic_);
    Put<uint32_t>(&out, version_);
    Put<uint64_t>(&out, has_tensor_count_ ? tensor_count_ : tensors_.size() + n_raw_infos_);
    Put<uint64_t>(&out, has_kv_count_ ? kv_count_ : n_kv_);
    Append(&out, kv_.data(), kv_.size());
    uint64_t next = 0, data_size = 0;
    std::vector<uint64_t> offsets;
    for (const TensorSpec& t : tensors_) {
      const uint64_t off = t.offset == kAutoOffset ? next : t.offset;
      offsets.push_back(off);
      // An explicit offset far out (a test of offsets past the end) gets no data laid out.
      if (off > kMaxLayout || t.data_bytes > kMaxLayout) continue;
      data_size = std::max(data_size, off + t.data_bytes);
      next = (off + t.data_bytes + align_ - 1) / align_ * align_;
    }
    for (size_t k = 0; k < tensors_.size(); ++k) {
      const TensorSpec& t = tensors_[k];
      PutStr(&out, t.name);
      Put<uint32_t>(&out, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) Put<uint64_t>(&out, d);
      Put<uint32_t>(&out, t.type);
      Put<uint64_t>(&out, offsets[k]);
    }
    Append(&out, raw_infos_.data(), raw_infos_.size());
    if (tensors_.empty() && n_raw_infos_ == 0) return out;
    out.resize((out.size() + align_ - 1) / align_ * align_, 0);
    // Data bytes are a position pattern so tests can check TensorData points at the right place.
    const size_t base = out.size();
    out.resize(base + data_size);
    for (uint64_t j = 0; j < data_size; ++j) out[base + j] = static_cast<uint8_t>(j * 7 + 1);
    return out;
  }

 private:
  struct TensorSpec {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t data_bytes;
    uint64_t offset;
  };

  uint32_t magic_ = 0x46554747u;  // "GGUF"
  uint32_t version_;
  uint64_t tensor_count_ = 0, kv_count_ = 0;
  bool has_tensor_count_ = false, has_kv_count_ = false;
  uint64_t align_ = 32;
  Bytes kv_;
  uint64_t n_kv_ = 0;
  std::vector<TensorSpec> tensors_;
  Bytes raw_infos_;
  uint64_t n_raw_infos_ = 0;
};

// Writes bytes to a file; returns false on failure. The old file is removed first: on ext4,
// truncating a file that holds data and rewriting it forces a flush (auto_da_alloc), which
// makes the thousands of rewrites in the truncation and corruption tests take seconds.
inline bool WriteFile(const std::string& path, const Bytes& b) {
  std::remove(path.c_str());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = b.empty() || std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace kvarn::gguftest
