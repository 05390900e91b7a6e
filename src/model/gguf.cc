#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

namespace kvarn {

// GGUF is little-endian on disk; kvarn reads it with memcpy and no byte swapping.
static_assert(std::endian::native == std::endian::little, "GGUF reader assumes little-endian");

namespace {

constexpr uint32_t kGgufMagic = 0x46554747u;  // "GGUF" read as a little-endian uint32
constexpr GgufType kLastGgufType = GgufType::kFloat64;

std::string Num(uint64_t v) { return std::to_string(v); }
std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
std::string Quote(std::string_view s) {
  // Names from a corrupt file may hold anything; keep messages short and printable.
  std::string out = "'";
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out + "'";
}

bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* r) { return !__builtin_add_overflow(a, b, r); }
bool CheckedMul(uint64_t a, uint64_t b, uint64_t* r) { return !__builtin_mul_overflow(a, b, r); }

// Bytes of one scalar of the type; 0 for string and array (variable size).
uint64_t ScalarBytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool IsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}
bool IsSigned(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Decodes one fixed-size scalar of type t at p into the value's u/i/f field.
void DecodeScalar(GgufType t, const uint8_t* p, GgufValue* v) {
  switch (t) {
    case GgufType::kUint8:
      v->u = Load<uint8_t>(p);
      break;
    case GgufType::kBool:
      v->u = Load<uint8_t>(p);
      break;
    case GgufType::kUint16:
      v->u = Load<uint16_t>(p);
      break;
    case GgufType::kUint32:
      v->u = Load<uint32_t>(p);
      break;
    case GgufType::kUint64:
      v->u = Load<uint64_t>(p);
      break;
    case GgufType::kInt8:
      v->i = Load<int8_t>(p);
      break;
    case GgufType::kInt16:
      v->i = Load<int16_t>(p);
      break;
    case GgufType::kInt32:
      v->i = Load<int32_t>(p);
      break;
    case GgufType::kInt64:
      v->i = Load<int64_t>(p);
      break;
    case GgufType::kFloat32:
      v->f = Load<float>(p);
      break;
    case GgufType::kFloat64:
      v->f = Load<double>(p);
      break;
    case GgufType::kString:
    case GgufType::kArray:
      break;
  }
}

// "uint32 7", "string 'qwen2'", "array of 3 float32": the actual value, for type errors.
std::string Describe(const GgufValue& v) {
  const std::string type = GgufTypeName(v.type);
  if (IsUnsigned(v.type)) return type + " " + Num(v.u);
  if (IsSigned(v.type)) return type + " " + std::to_string(v.i);
  switch (v.type) {
    case GgufType::kBool:
      return type + (v.u != 0 ? " true" : " false");
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      return type + " " + std::to_string(v.f);
    case GgufType::kString:
      return type + " " + Quote(v.str);
    case GgufType::kArray:
      return "array of " + Num(v.count) + " " + GgufTypeName(v.elem_type);
    default:
      return type;
  }
}

// The value as the integer type T, when it is an integer that T represents exactly.
template <typename T>
bool IntegerAs(const GgufValue& v, T* out) {
  if (IsUnsigned(v.type) && std::in_range<T>(v.u)) {
    *out = static_cast<T>(v.u);
    return true;
  }
  if (IsSigned(v.type) && std::in_range<T>(v.i)) {
    *out = static_cast<T>(v.i);
    return true;
  }
  return false;
}

// A bounds-checked reader over the mapped bytes. Errors say what was read and where; the
// caller adds which field it was (WithContext), only on failure.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size) : base_(base), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const uint8_t* here() const { return base_ + pos_; }

  Status Skip(uint64_t n, const char* what) {
    if (n > left()) {
      return CorruptData(std::string("truncated: ") + what + " at offset " + Num(pos_) + " needs " +
                         Num(n) + " bytes, " + Num(left()) + " left in the file");
    }
    pos_ += n;
    return Status::Ok();
  }
  template <typename T>
  Status Read(T* v, const char* what) {
    const uint64_t at = pos_;
    KVARN_RETURN_IF_ERROR(Skip(sizeof(T), what));
    std::memcpy(v, base_ + at, sizeof(T));
    return Status::Ok();
  }
  Status String(std::string_view* s) {
    uint64_t len = 0;
    KVARN_RETURN_IF_ERROR(Read(&len, "string length"));
    if (len > left()) {
      return CorruptData("string length " + Num(len) + " at offset " + Num(pos_ - 8) +
                         " exceeds the " + Num(left()) + " bytes left in the file");
    }
    *s = std::string_view(reinterpret_cast<const char*>(here()), static_cast<size_t>(len));
    pos_ += len;
    return Status::Ok();
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

}  // namespace

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "unknown";
}

const GgmlTypeInfo* GgmlSupportedType(uint32_t id) {
  for (const GgmlTypeInfo& info : kGgmlTypeInfos)
    if (static_cast<uint32_t>(info.type) == id) return &info;
  return nullptr;
}

const char* GgmlTypeName(uint32_t id) {
  // Every id ggml has assigned (ggml.h), including removed ones, so a file using one is
  // reported by name rather than as garbage.
  static constexpr const char* kNames[] = {
      "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
      "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
      "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
      "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
      "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
      "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
  return id < std::size(kNames) ? kNames[id] : nullptr;
}

// Parses and validates the mapped bytes into a GgufFile. Error messages carry the field and
// value; Open prefixes the path.
class GgufParser {
 public:
  explicit GgufParser(GgufFile* f) : f_(f), in_(f->base_, f->size_) {}

  Status Parse() {
    KVARN_RETURN_IF_ERROR(Header());
    KVARN_RETURN_IF_ERROR(Metadata());
    KVARN_RETURN_IF_ERROR(Alignment());
    KVARN_RETURN_IF_ERROR(TensorInfos());
    return TensorExtents();
  }

 private:
  Status Header() {
    uint32_t magic = 0;
    KVARN_RETURN_IF_ERROR(in_.Read(&magic, "magic"));
    if (magic != kGgufMagic) {
      std::string bytes(reinterpret_cast<const char*>(&magic), 4);
      return CorruptData("bad magic " + Quote(bytes) + " (" + Hex(magic) +
                         "), expected 'GGUF': not a GGUF file");
    }
    KVARN_RETURN_IF_ERROR(in_.Read(&f_->version_, "version"));
    const uint32_t v = f_->version_;
    if (v == 0x02000000u || v == 0x03000000u) {
      return Unsupported("version " + Hex(v) + " is a byte-swapped 2 or 3: big-endian GGUF " +
                         "files are not supported");
    }
    if (v != 2 && v != 3) {
      return Unsupported("GGUF version " + Num(v) + " not supported (only 2 and 3)");
    }
    KVARN_RETURN_IF_ERROR(in_.Read(&n_tensors_, "tensor count"));
    if (n_tensors_ >= GgufFile::kMaxTensorCount) {
      return CorruptData("tensor count " + Num(n_tensors_) + " exceeds the limit " +
                         Num(GgufFile::kMaxTensorCount));
    }
    KVARN_RETURN_IF_ERROR(in_.Read(&n_kv_, "metadata count"));
    if (n_kv_ >= GgufFile::kMaxMetadataCount) {
      return CorruptData("metadata count " + Num(n_kv_) + " exceeds the limit " +
                         Num(GgufFile::kMaxMetadataCount));
    }
    return Status::Ok();
  }

  Status Metadata() {
    // A key-value pair takes at least 13 bytes (key length, type, 1-byte value), so a count
    // the file cannot hold is caught by the reads below; this bound only limits the reserve.
    f_->kv_.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv_, in_.left() / 13)));
    for (uint64_t k = 0; k < n_kv_; ++k) {
      std::string_view key;
      GgufValue value;
      Status s = in_.String(&key);
      if (s.ok()) s = Value(&value);
      if (!s.ok()) {
        const std::string name = key.data() != nullptr ? " " + Quote(key) : "";
        return s.WithContext("metadata #" + Num(k) + name);
      }
      if (!f_->kv_index_.emplace(key, f_->kv_.size()).second) {
        return CorruptData("metadata #" + Num(k) + ": duplicate key " + Quote(key));
      }
      f_->kv_.emplace_back(key, std::move(value));
    }
    return Status::Ok();
  }

  Status ValueType(uint32_t raw, GgufType* t) {
    if (raw > static_cast<uint32_t>(kLastGgufType)) {
      return CorruptData("unknown value type " + Num(raw));
    }
    *t = static_cast<GgufType>(raw);
    return Status::Ok();
  }

  Status Value(GgufValue* v) {
    uint32_t raw = 0;
    KVARN_RETURN_IF_ERROR(in_.Read(&raw, "value type"));
    KVARN_RETURN_IF_ERROR(ValueType(raw, &v->type));
    if (v->type == GgufType::kString) return in_.String(&v->str);
    if (v->type != GgufType::kArray) {
      const uint8_t* p = in_.here();
      KVARN_RETURN_IF_ERROR(in_.Skip(ScalarBytes(v->type), GgufTypeName(v->type)));
      DecodeScalar(v->type, p, v);
      if (v->type == GgufType::kBool && v->u > 1) {
        return CorruptData("bool value " + Num(v->u) + " is neither 0 nor 1");
      }
      return Status::Ok();
    }
    KVARN_RETURN_IF_ERROR(in_.Read(&raw, "array element type"));
    KVARN_RETURN_IF_ERROR(ValueType(raw, &v->elem_type));
    KVARN_RETURN_IF_ERROR(in_.Read(&v->count, "array length"));
    if (v->elem_type == GgufType::kArray) {
      return Unsupported("arrays of arrays are not supported");
    }
    if (v->elem_type == GgufType::kString) {
      // Each element has at least its 8-byte length; check before reserving.
      if (v->count > in_.left() / 8) {
        return CorruptData("array length " + Num(v->count) + " of strings exceeds what the " +
                           Num(in_.left()) + " bytes left in the file can hold");
      }
      v->strings.resize(static_cast<size_t>(v->count));
      for (uint64_t j = 0; j < v->count; ++j) {
        Status s = in_.String(&v->strings[j]);
        if (!s.ok()) return s.WithContext("array element " + Num(j));
      }
      return Status::Ok();
    }
    const uint64_t elem = ScalarBytes(v->elem_type);
    uint64_t bytes = 0;
    if (!CheckedMul(v->count, elem, &bytes) || bytes > in_.left()) {
      return CorruptData("array length " + Num(v->count) + " of " + GgufTypeName(v->elem_type) +
                         " exceeds the " + Num(in_.left()) + " bytes left in the file");
    }
    v->elems = in_.here();
    KVARN_RETURN_IF_ERROR(in_.Skip(bytes, "array data"));
    if (v->elem_type == GgufType::kBool) {
      for (uint64_t j = 0; j < v->count; ++j) {
        if (v->elems[j] > 1) {
          return CorruptData("bool array element " + Num(j) + " is " + Num(v->elems[j]) +
                             ", neither 0 nor 1");
        }
      }
    }
    return Status::Ok();
  }

  Status Alignment() {
    const GgufValue* v = f_->Find("general.alignment");
    if (v == nullptr) return Status::Ok();
    // The spec (and llama.cpp) require uint32 here; anything else is a malformed writer.
    if (v->type != GgufType::kUint32) {
      return CorruptData("metadata 'general.alignment' is " + Describe(*v) + ", expected uint32");
    }
    if (!std::has_single_bit(v->u)) {
      return CorruptData("metadata 'general.alignment' is " + Num(v->u) + ", not a power of two");
    }
    f_->alignment_ = static_cast<uint32_t>(v->u);
    return Status::Ok();
  }

  Status TensorInfos() {
    // A tensor info takes at least 24 bytes (name length, n_dims, type, offset).
    f_->tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors_, in_.left() / 24)));
    for (uint64_t k = 0; k < n_tensors_; ++k) {
      GgufTensorInfo t;
      Status s = TensorInfo(&t);
      if (!s.ok()) {
        const std::string name = t.name.data() != nullptr ? " " + Quote(t.name) : "";
        return s.WithContext("tensor #" + Num(k) + name);
      }
      if (!f_->tensor_index_.emplace(t.name, f_->tensors_.size()).second) {
        return CorruptData("tensor #" + Num(k) + ": duplicate name " + Quote(t.name));
      }
      f_->tensors_.push_back(t);
    }
    return Status::Ok();
  }

  Status TensorInfo(GgufTensorInfo* t) {
    KVARN_RETURN_IF_ERROR(in_.String(&t->name));
    KVARN_RETURN_IF_ERROR(in_.Read(&t->n_dims, "n_dims"));
    if (t->n_dims > GgufFile::kMaxDims) {
      return CorruptData("n_dims " + Num(t->n_dims) + " exceeds " + Num(GgufFile::kMaxDims));
    }
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; ++d) {
      uint64_t dim = 0;
      KVARN_RETURN_IF_ERROR(in_.Read(&dim, "dimension"));
      // ggml keeps ne[] as int64_t, so a dimension must fit it, and so must the product.
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return CorruptData("ne[" + Num(d) + "] = " + Num(dim) + " exceeds int64");
      }
      if (!CheckedMul(n, dim, &n) ||
          n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return CorruptData("shape product overflows 64 bits at ne[" + Num(d) + "] = " + Num(dim));
      }
      t->ne[d] = static_cast<int64_t>(dim);
    }
    t->n_elements = n;
    uint32_t type = 0;
    KVARN_RETURN_IF_ERROR(in_.Read(&type, "type"));
    const GgmlTypeInfo* traits = GgmlSupportedType(type);
    if (traits == nullptr) {
      const char* name = GgmlTypeName(type);
      if (name == nullptr) return CorruptData("unknown ggml type id " + Num(type));
      return Unsupported("type " + std::string(name) + " (" + Num(type) + ") not supported");
    }
    t->type = static_cast<GgmlType>(type);
    // Blocks run along ne[0] (rows are whole blocks), as ggml requires.
    if (t->ne[0] % traits->block_size != 0) {
      return CorruptData("ne[0] = " + std::to_string(t->ne[0]) + " is not a multiple of the " +
                         GgmlTypeName(type) + std::string(" block size ") + std::to_string(traits->block_size));
    }
    // Blocks can be larger than their element count (F32: 4 bytes per element), so the byte
    // size can overflow even when the element count fits int64.
    if (!CheckedMul(n / static_cast<uint64_t>(traits->block_size),
                    static_cast<uint64_t>(traits->block_bytes), &t->n_bytes)) {
      return CorruptData("byte size of " + Num(n) + " " + GgmlTypeName(type) +
                         " elements overflows 64 bits");
    }
    KVARN_RETURN_IF_ERROR(in_.Read(&t->offset, "offset"));
    if (t->offset % f_->alignment_ != 0) {
      return CorruptData("offset " + Num(t->offset) + " is not a multiple of the alignment " +
                         Num(f_->alignment_));
    }
    return Status::Ok();
  }

  Status TensorExtents() {
    // The data section starts at the first aligned offset after the tensor infos.
    const uint64_t a = f_->alignment_;
    uint64_t padded = 0;
    if (!CheckedAdd(in_.pos(), a - 1, &padded)) return Internal("header end overflows");
    f_->data_offset_ = padded / a * a;
    if (f_->tensors_.empty()) return Status::Ok();  // the padding may be absent then
    if (f_->data_offset_ > f_->size_) {
      return CorruptData("truncated: data section starts at offset " + Num(f_->data_offset_) +
                         " (alignment " + Num(a) + "), past the end of the file (" +
                         Num(f_->size_) + " bytes)");
    }
    const uint64_t data_size = f_->size_ - f_->data_offset_;
    for (const GgufTensorInfo& t : f_->tensors_) {
      uint64_t end = 0;
      if (!CheckedAdd(t.offset, t.n_bytes, &end) || end > data_size) {
        return CorruptData("tensor " + Quote(t.name) + ": offset " + Num(t.offset) + " + " +
                           Num(t.n_bytes) + " bytes exceeds the data section (" + Num(data_size) +
                           " bytes from file offset " + Num(f_->data_offset_) + ")");
      }
    }
    // Overlap: sorted by offset, each tensor must start at or after the previous one's end.
    std::vector<const GgufTensorInfo*> order;
    order.reserve(f_->tensors_.size());
    for (const GgufTensorInfo& t : f_->tensors_) {
      if (t.n_bytes > 0) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const GgufTensorInfo* x, const GgufTensorInfo* y) {
      return x->offset < y->offset;
    });
    for (size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo& prev = *order[k - 1];
      const GgufTensorInfo& cur = *order[k];
      if (cur.offset < prev.offset + prev.n_bytes) {
        return CorruptData("tensor " + Quote(cur.name) + " [" + Num(cur.offset) + ", " +
                           Num(cur.offset + cur.n_bytes) + ") overlaps tensor " + Quote(prev.name) +
                           " [" + Num(prev.offset) + ", " + Num(prev.offset + prev.n_bytes) + ")");
      }
    }
    return Status::Ok();
  }

  GgufFile* f_;
  Cursor in_;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
};

Status GgufFile::Open(const std::string& path, std::unique_ptr<GgufFile>* out) {
  out->reset();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return IoError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return IoError(path + ": not a regular file");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {  // mmap rejects length 0; an empty file fails parsing below instead
    void* p = ::mmap(nullptr, static_cast<size_t>(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return IoError(path + ": cannot map " + Num(f->size_) + " bytes: " + std::strerror(err));
    }
    f->base_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
  }
  ::close(fd);  // the mapping keeps the file contents reachable
  Status s = GgufParser(f.get()).Parse();
  if (!s.ok()) return s.WithContext(path);
  *out = std::move(f);
  return Status::Ok();
}

Status GgufFile::OpenBuffer(const uint8_t* data, size_t size, const std::string& name,
                            std::unique_ptr<GgufFile>* out) {
  out->reset();
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  f->size_ = size;
  if (size > 0) {
    f->owned_.reset(new uint8_t[size]);
    std::memcpy(f->owned_.get(), data, size);
    f->base_ = f->owned_.get();
  }
  Status s = GgufParser(f.get()).Parse();
  if (!s.ok()) return s.WithContext(name);
  *out = std::move(f);
  return Status::Ok();
}

GgufFile::~GgufFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(base_), static_cast<size_t>(size_));
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Status GgufFile::Lookup(std::string_view key, const GgufValue** v) const {
  *v = Find(key);
  if (*v == nullptr) {
    return CorruptData(path_ + ": metadata key " + Quote(key) + " not found");
  }
  return Status::Ok();
}

namespace {
Status TypeError(const std::string& path, std::string_view key, const GgufValue& v,
                 const char* expected) {
  return CorruptData(path + ": metadata " + Quote(key) + " is " + Describe(v) + ", expected " +
                     expected);
}
}  // namespace

Status GgufFile::GetString(std::string_view key, std::string_view* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kString) return TypeError(path_, key, *v, "string");
  *out = v->str;
  return Status::Ok();
}

Status GgufFile::GetU32(std::string_view key, uint32_t* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (!IntegerAs(*v, out)) return TypeError(path_, key, *v, "an integer that fits uint32");
  return Status::Ok();
}

Status GgufFile::GetU64(std::string_view key, uint64_t* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (!IntegerAs(*v, out)) return TypeError(path_, key, *v, "an integer that fits uint64");
  return Status::Ok();
}

Status GgufFile::GetI64(std::string_view key, int64_t* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (!IntegerAs(*v, out)) return TypeError(path_, key, *v, "an integer that fits int64");
  return Status::Ok();
}

Status GgufFile::GetF32(std::string_view key, float* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kFloat32 && v->type != GgufType::kFloat64) {
    return TypeError(path_, key, *v, "float32");
  }
  *out = static_cast<float>(v->f);
  return Status::Ok();
}

Status GgufFile::GetBool(std::string_view key, bool* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kBool) return TypeError(path_, key, *v, "bool");
  *out = v->u != 0;
  return Status::Ok();
}

Status GgufFile::GetStringArray(std::string_view key, std::vector<std::string_view>* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return TypeError(path_, key, *v, "array of string");
  }
  *out = v->strings;
  return Status::Ok();
}

Status GgufFile::GetArrayI32(std::string_view key, std::vector<int32_t>* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kArray || !(IsSigned(v->elem_type) || IsUnsigned(v->elem_type))) {
    return TypeError(path_, key, *v, "array of integers");
  }
  const uint64_t elem = ScalarBytes(v->elem_type);
  out->resize(static_cast<size_t>(v->count));
  for (uint64_t j = 0; j < v->count; ++j) {
    GgufValue e;
    e.type = v->elem_type;
    DecodeScalar(e.type, v->elems + j * elem, &e);
    if (!IntegerAs(e, &(*out)[j])) {
      out->clear();
      return CorruptData(path_ + ": metadata " + Quote(key) + " element " + Num(j) + " is " +
                         Describe(e) + ", which does not fit int32");
    }
  }
  return Status::Ok();
}

Status GgufFile::GetArrayF32(std::string_view key, std::vector<float>* out) const {
  const GgufValue* v = nullptr;
  KVARN_RETURN_IF_ERROR(Lookup(key, &v));
  if (v->type != GgufType::kArray ||
      (v->elem_type != GgufType::kFloat32 && v->elem_type != GgufType::kFloat64)) {
    return TypeError(path_, key, *v, "array of float32");
  }
  const uint64_t elem = ScalarBytes(v->elem_type);
  out->resize(static_cast<size_t>(v->count));
  for (uint64_t j = 0; j < v->count; ++j) {
    GgufValue e;
    DecodeScalar(v->elem_type, v->elems + j * elem, &e);
    (*out)[j] = static_cast<float>(e.f);
  }
  return Status::Ok();
}

}  // namespace kvarn
