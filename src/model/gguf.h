// GGUF reader: a validated, read-only, memory-mapped view of a GGUF v2/v3 model file.
// Every count, length, offset and tensor extent is checked against the file size with 64-bit
// checked arithmetic, so a malformed or hostile file yields a Status naming the file, the field
// and the value, never a crash. Strings and tensor data point into the mapping: they live as
// long as the GgufFile.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "weights/ggml_type.h"

namespace kvarn {

// Metadata value types (gguf_type in ggml's gguf.h).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufTypeName(GgufType type);  // "uint32", "string", ...; "unknown" otherwise

// Tensor element types: GgmlType and its block geometry come from the weights layer
// (weights/ggml_type.h), which decodes them. GgmlSupportedType is that table indexed by the
// raw id; GgmlTypeName also knows the ids kvarn does not decode, so errors can say
// "type Q2_K (10) not supported".
const GgmlTypeInfo* GgmlSupportedType(uint32_t id);  // nullptr for any other id
// ggml's name for any known id (supported or not), nullptr for ids ggml never defined.
const char* GgmlTypeName(uint32_t id);

// One metadata value. Scalars are decoded; arrays keep their raw little-endian elements in
// the mapping (not necessarily aligned: read them with memcpy, or use the Get* accessors).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t u = 0;        // kUint8/16/32/64, and kBool as 0 or 1
  int64_t i = 0;         // kInt8/16/32/64
  double f = 0.0;        // kFloat32/64
  std::string_view str;  // kString
  // kArray only. Arrays of arrays are rejected at Open.
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;         // numeric element bytes, count * element size
  std::vector<std::string_view> strings;  // elements of a string array
};

struct GgufTensorInfo {
  std::string_view name;
  uint32_t n_dims = 0;
  // [ne0 (contiguous), ne1, ne2, ne3]; 1 beyond n_dims. ggml order, i.e. a [rows, cols]
  // matrix has ne = [cols, rows].
  std::array<int64_t, 4> ne = {1, 1, 1, 1};
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;      // from the start of the data section; a multiple of the alignment
  uint64_t n_elements = 0;  // product of ne
  uint64_t n_bytes = 0;     // n_elements / block_size * block_bytes
};

class GgufFile {
 public:
  // Limits on counts read from the file; beyond them the file is rejected as corrupt.
  static constexpr uint64_t kMaxMetadataCount = uint64_t{1} << 20;
  static constexpr uint64_t kMaxTensorCount = uint64_t{1} << 20;
  static constexpr uint32_t kMaxDims = 4;
  static constexpr uint32_t kDefaultAlignment = 32;

  // Maps and validates the file. On success *out owns the mapping.
  static Status Open(const std::string& path, std::unique_ptr<GgufFile>* out);
  // Validates size bytes held in memory (fuzzing, embedded files). The bytes are copied, so
  // the buffer may be freed afterwards; name stands in for the path in messages.
  static Status OpenBuffer(const uint8_t* data, size_t size, const std::string& name,
                           std::unique_ptr<GgufFile>* out);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
  // The whole file, file_size() bytes (e.g. to fingerprint the header and tensor data).
  const uint8_t* bytes() const { return base_; }

  // Metadata in file order: (key, value).
  const std::vector<std::pair<std::string_view, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(std::string_view key) const;  // nullptr when absent

  // Typed accessors. A missing key or a value that cannot be represented exactly gives
  // kCorruptData naming the file, key, actual type and value. Integer accessors accept any
  // integer type whose value fits; GetF32 accepts float32 and float64.
  Status GetString(std::string_view key, std::string_view* out) const;
  Status GetU32(std::string_view key, uint32_t* out) const;
  Status GetU64(std::string_view key, uint64_t* out) const;
  Status GetI64(std::string_view key, int64_t* out) const;
  Status GetF32(std::string_view key, float* out) const;
  Status GetBool(std::string_view key, bool* out) const;
  Status GetStringArray(std::string_view key, std::vector<std::string_view>* out) const;
  Status GetArrayI32(std::string_view key, std::vector<int32_t>* out) const;  // integer elems
  Status GetArrayF32(std::string_view key, std::vector<float>* out) const;    // float32 elems

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;  // nullptr when absent
  // First byte of the tensor's data (n_bytes long) inside the mapping.
  const uint8_t* TensorData(const GgufTensorInfo& t) const {
    return base_ + data_offset_ + t.offset;
  }

 private:
  friend class GgufParser;
  GgufFile() = default;
  Status Lookup(std::string_view key, const GgufValue** v) const;

  std::string path_;
  const uint8_t* base_ = nullptr;  // the read-only mapping, or owned_.data()
  bool mapped_ = false;            // base_ is an mmap to unmap
  // OpenBuffer's copy. An exactly sized heap block, so a read past the end is an ASan report
  // when fuzzing rather than a silent read of mapping padding.
  std::unique_ptr<uint8_t[]> owned_;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string_view, GgufValue>> kv_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace kvarn
