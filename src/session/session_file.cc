#include "session/session_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "session/checksum.h"

namespace kvarn {
namespace {

std::string Num(uint64_t v) { return std::to_string(v); }

std::string Hex(const std::array<uint8_t, 32>& d, size_t bytes = 32) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < bytes; ++i) s += {k[d[i] >> 4], k[d[i] & 15]};
  return s;
}

const char* KindName(BlockKind k) {
  switch (k) {
    case BlockKind::kF16:
      return "fp16";
    case BlockKind::kRecord:
      return "record";
    case BlockKind::kRows:
      return "rows";
  }
  return "unknown";
}

// ------------------------------------------------------------------ little-endian encoding

class Writer {
 public:
  void U8(uint8_t v) { b_.push_back(v); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b_.push_back(uint8_t(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) b_.push_back(uint8_t(v >> (8 * i)));
  }
  void F32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    U32(u);
  }
  void Bytes(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
  }
  void Str(const std::string& s) {
    U32(uint32_t(s.size()));
    Bytes(s.data(), s.size());
  }
  void PatchU32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b_[at + size_t(i)] = uint8_t(v >> (8 * i));
  }
  void PatchU64(size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) b_[at + size_t(i)] = uint8_t(v >> (8 * i));
  }
  size_t size() const { return b_.size(); }
  std::vector<uint8_t>& bytes() { return b_; }

 private:
  std::vector<uint8_t> b_;
};

// A bounds-checked cursor over the header bytes; every read names the field it was for.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  Status Need(size_t k, const char* field) const {
    if (k > n_ - at_)
      return CorruptData(file_ + ": header ends inside field '" + field + "' (offset " + Num(at_) +
                         ", " + Num(k) + " bytes needed, header is " + Num(n_) + ")");
    return Status::Ok();
  }
  Status U8(const char* field, uint8_t* v) {
    KVARN_RETURN_IF_ERROR(Need(1, field));
    *v = p_[at_++];
    return Status::Ok();
  }
  Status U32(const char* field, uint32_t* v) {
    KVARN_RETURN_IF_ERROR(Need(4, field));
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t(p_[at_++]) << (8 * i);
    return Status::Ok();
  }
  Status U64(const char* field, uint64_t* v) {
    KVARN_RETURN_IF_ERROR(Need(8, field));
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t(p_[at_++]) << (8 * i);
    return Status::Ok();
  }
  Status Bytes(const char* field, void* dst, size_t k) {
    KVARN_RETURN_IF_ERROR(Need(k, field));
    std::memcpy(dst, p_ + at_, k);
    at_ += k;
    return Status::Ok();
  }
  Status Str(const char* field, std::string* s) {
    uint32_t len = 0;
    KVARN_RETURN_IF_ERROR(U32(field, &len));
    if (len > SessionHeader::kMaxString)
      return CorruptData(file_ + ": field '" + field + "' is " + Num(len) +
                         " bytes long, more than the limit of " + Num(SessionHeader::kMaxString));
    KVARN_RETURN_IF_ERROR(Need(len, field));
    s->assign(reinterpret_cast<const char*>(p_ + at_), len);
    at_ += len;
    return Status::Ok();
  }
  size_t at() const { return at_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t at_ = 0;
  const std::string& file_;
};

// Fixed prefix: magic, version, page layout, flags, header bytes.
constexpr size_t kPrefixBytes = 8 + 4 + 4 + 4 + 8;
constexpr uint32_t kFlagLogits = 1;

// ------------------------------------------------------------------ sources

class FileSource : public ByteSource {
 public:
  FileSource(int fd, uint64_t size, std::string name)
      : fd_(fd), size_(size), name_(std::move(name)) {}
  ~FileSource() override { ::close(fd_); }
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* dst, size_t n) override {
    auto* p = static_cast<uint8_t*>(dst);
    while (n > 0) {
      const ssize_t got = ::pread(fd_, p, n, off_t(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return IoError(name_ + ": read failed: " + std::strerror(errno));
      if (got == 0) return CorruptData(name_ + ": truncated: the file ended while reading");
      p += got, n -= size_t(got), offset += uint64_t(got);
    }
    return Status::Ok();
  }

 private:
  int fd_;
  uint64_t size_;
  std::string name_;
};

class BufferSource : public ByteSource {
 public:
  BufferSource(const uint8_t* data, size_t size, std::string name)
      : data_(data), size_(size), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, void* dst, size_t n) override {
    if (offset > size_ || n > size_ - offset)
      return CorruptData(name_ + ": truncated: read past the end");
    std::memcpy(dst, data_ + offset, n);
    return Status::Ok();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_;
};

uint32_t RotationOf(const CodecSpec& s) { return s.is_tile() && s.rotate ? 1 : 0; }

}  // namespace

Status OpenFileSource(const std::string& path, std::unique_ptr<ByteSource>* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return IoError(path + ": not a regular file");
  }
  *out = std::make_unique<FileSource>(fd, uint64_t(st.st_size), path);
  return Status::Ok();
}

std::unique_ptr<ByteSource> MemorySource(const uint8_t* data, size_t size, std::string name) {
  return std::make_unique<BufferSource>(data, size, std::move(name));
}

SessionHeader DescribeCache(const KvCache& cache, const ModelIdentity& model) {
  const CodecSpec& spec = cache.config().codec;
  SessionHeader h;
  h.model = model;
  h.codec_name = spec.Name();
  h.codec_kind = uint32_t(spec.kind);
  h.rotation = RotationOf(spec);
  h.varn_iters = spec.is_tile() ? uint32_t(spec.effective_iters()) : 0;
  h.k_bits = spec.is_tile() ? uint32_t(spec.k_bits) : 0;
  h.v_bits = spec.is_tile() ? uint32_t(spec.v_bits) : 0;
  h.block_tokens = uint32_t(cache.block_tokens());
  h.record_bytes = uint32_t(cache.RecordBytes());
  h.row_bytes = uint32_t(cache.RowBytes());
  return h;
}

// ------------------------------------------------------------------ writing

Status WriteSession(const std::string& path, const ModelIdentity& model, KvCache& cache, int seq,
                    const std::vector<int32_t>& tokens, const float* logits) {
  std::vector<KvCache::BlockImage> blocks;
  KVARN_RETURN_IF_ERROR(cache.ExportBlocks(seq, &blocks));  // checks seq and the step first
  const KvCacheConfig& cfg = cache.config();
  if (cfg.n_layers != model.n_layers || cfg.n_kv_heads != model.n_kv_heads ||
      cfg.head_dim != model.head_dim)
    return InvalidArgument("session: the cache's shape (" + std::to_string(cfg.n_layers) +
                           " layers, " + std::to_string(cfg.n_kv_heads) + " KV heads, head_dim " +
                           std::to_string(cfg.head_dim) + ") is not the model's");
  if (int64_t(tokens.size()) != cache.Length(seq))
    return InvalidArgument("session: " + Num(tokens.size()) + " token ids for a sequence of " +
                           std::to_string(cache.Length(seq)) + " tokens");
  if (tokens.size() > SessionHeader::kMaxTokens)
    return OutOfRange("session: " + Num(tokens.size()) + " tokens, more than a file holds (" +
                      Num(SessionHeader::kMaxTokens) + ")");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= model.n_vocab)
      return InvalidArgument("session: token id " + std::to_string(tokens[i]) + " at index " +
                             Num(i) + " outside the vocabulary of " +
                             std::to_string(model.n_vocab));
  if (model.arch.size() > SessionHeader::kMaxString ||
      model.name.size() > SessionHeader::kMaxString)
    return InvalidArgument("session: model name or architecture longer than " +
                           Num(SessionHeader::kMaxString) + " bytes");
  if (model.n_vocab < 1 || uint32_t(model.n_vocab) > SessionHeader::kMaxVocab)
    return InvalidArgument("session: vocabulary of " + std::to_string(model.n_vocab));

  const Status encoded = cache.EncodeCommitted(seq);
  if (!encoded.ok() && encoded.code() != StatusCode::kOutOfMemory) return encoded;
  KVARN_RETURN_IF_ERROR(cache.ExportBlocks(seq, &blocks));

  const SessionHeader d = DescribeCache(cache, model);
  Writer w;
  w.Bytes(SessionHeader::kMagic, 8);
  w.U32(SessionHeader::kVersion);
  w.U32(KvCache::kPageLayoutVersion);
  w.U32(logits != nullptr ? kFlagLogits : 0);
  const size_t header_bytes_at = w.size();
  w.U64(0);  // header bytes, patched below
  w.U64(model.file_size);
  w.Bytes(model.fingerprint.data(), 32);
  w.Str(model.arch);
  w.Str(model.name);
  w.U32(uint32_t(model.n_layers));
  w.U32(uint32_t(model.n_kv_heads));
  w.U32(uint32_t(model.head_dim));
  w.U32(uint32_t(model.n_vocab));
  w.Str(d.codec_name);
  w.U32(d.codec_kind);
  w.U32(d.rotation);
  w.U32(d.varn_iters);
  w.U32(d.k_bits);
  w.U32(d.v_bits);
  w.U32(d.block_tokens);
  w.U32(d.record_bytes);
  w.U32(d.row_bytes);
  w.U32(uint32_t(tokens.size()));
  w.U32(uint32_t(blocks.size()));
  for (int32_t t : tokens) w.U32(uint32_t(t));
  const size_t table_at = w.size();
  for (const auto& b : blocks) {
    w.U8(uint8_t(b.kind));
    w.U8(0), w.U8(0), w.U8(0);
    w.U32(uint32_t(b.tokens));
    w.U64(cache.BlockImageBytes(b));
    w.U32(0);  // CRC, patched below
    w.U32(0);
  }
  if (logits != nullptr)
    for (int i = 0; i < model.n_vocab; ++i) w.F32(logits[i]);
  const uint64_t header_bytes = w.size() + 4;
  w.PatchU64(header_bytes_at, header_bytes);

  // Images go to a temporary file beside the target, then the header (with their CRCs).
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return IoError(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  const auto fail = [&](const std::string& what) {
    const std::string err = std::strerror(errno);
    std::fclose(f);
    std::remove(tmp.c_str());
    return IoError(path + ": " + what + ": " + err);
  };
  if (std::fseek(f, long(header_bytes), SEEK_SET) != 0) return fail("seek");
  std::vector<uint8_t> image;
  for (size_t b = 0; b < blocks.size(); ++b) {
    image.resize(cache.BlockImageBytes(blocks[b]));
    const Status st = cache.ExportBlock(seq, int(b), image.data(), image.size());
    if (!st.ok()) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return st;
    }
    w.PatchU32(table_at + b * 24 + 16, Crc32(image.data(), image.size()));
    if (std::fwrite(image.data(), 1, image.size(), f) != image.size()) return fail("write");
  }
  w.U32(Crc32(w.bytes().data(), w.size()));
  if (std::fseek(f, 0, SEEK_SET) != 0) return fail("seek");
  if (std::fwrite(w.bytes().data(), 1, w.size(), f) != w.size()) return fail("write");
  if (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0) return fail("flush");
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    return IoError(path + ": close failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    std::remove(tmp.c_str());
    return IoError(path + ": rename from " + tmp + " failed: " + err);
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ reading

Status ReadSessionHeader(ByteSource& src, SessionHeader* out) {
  const std::string& file = src.name();
  const uint64_t size = src.size();
  if (size < kPrefixBytes)
    return CorruptData(file + ": truncated: " + Num(size) + " bytes, not even the " +
                       Num(kPrefixBytes) + "-byte start of a session header");
  uint8_t prefix[kPrefixBytes];
  KVARN_RETURN_IF_ERROR(src.Read(0, prefix, kPrefixBytes));
  if (std::memcmp(prefix, SessionHeader::kMagic, 8) != 0)
    return CorruptData(file + ": not a kvarn session file (magic is not KVARNSES)");
  SessionHeader h;
  bool has_logits = false;
  {
    Reader r(prefix + 8, kPrefixBytes - 8, file);
    uint32_t flags = 0;
    KVARN_RETURN_IF_ERROR(r.U32("version", &h.version));
    KVARN_RETURN_IF_ERROR(r.U32("page layout", &h.page_layout));
    KVARN_RETURN_IF_ERROR(r.U32("flags", &flags));
    KVARN_RETURN_IF_ERROR(r.U64("header bytes", &h.header_bytes));
    if (h.version != SessionHeader::kVersion)
      return Unsupported(file + ": session format version " + Num(h.version) +
                         ", this kvarn reads version " + Num(SessionHeader::kVersion));
    if (h.page_layout != KvCache::kPageLayoutVersion)
      return Unsupported(file + ": cache page layout version " + Num(h.page_layout) +
                         ", this kvarn stores pages in layout " + Num(KvCache::kPageLayoutVersion) +
                         " (the file was written by another kvarn build; recompute the prompt)");
    if ((flags & ~kFlagLogits) != 0)
      return CorruptData(file + ": unknown flags 0x" + Num(flags) + " in the header");
    has_logits = (flags & kFlagLogits) != 0;
  }
  if (h.header_bytes < kPrefixBytes + 4 || h.header_bytes > SessionHeader::kMaxHeaderBytes)
    return CorruptData(file + ": header size " + Num(h.header_bytes) + " out of range");
  if (h.header_bytes > size)
    return CorruptData(file + ": truncated: the header is " + Num(h.header_bytes) +
                       " bytes, the file " + Num(size));
  // The header's size is bounded by the file's, so reading it allocates nothing a hostile
  // count could inflate.
  std::vector<uint8_t> buf(size_t(h.header_bytes));
  KVARN_RETURN_IF_ERROR(src.Read(0, buf.data(), buf.size()));
  const size_t body = buf.size() - 4;
  uint32_t stored_crc = 0;
  for (int i = 0; i < 4; ++i) stored_crc |= uint32_t(buf[body + size_t(i)]) << (8 * i);
  const uint32_t crc = Crc32(buf.data(), body);
  if (crc != stored_crc)
    return CorruptData(file + ": header checksum mismatch (CRC-32 " + Num(crc) + ", stored " +
                       Num(stored_crc) + "): the file is corrupted");

  Reader r(buf.data() + kPrefixBytes, body - kPrefixBytes, file);
  ModelIdentity& m = h.model;
  uint32_t L, Hk, D, V, n_tokens, n_blocks;
  KVARN_RETURN_IF_ERROR(r.U64("model file size", &m.file_size));
  KVARN_RETURN_IF_ERROR(r.Bytes("model fingerprint", m.fingerprint.data(), 32));
  KVARN_RETURN_IF_ERROR(r.Str("model architecture", &m.arch));
  KVARN_RETURN_IF_ERROR(r.Str("model name", &m.name));
  KVARN_RETURN_IF_ERROR(r.U32("layers", &L));
  KVARN_RETURN_IF_ERROR(r.U32("KV heads", &Hk));
  KVARN_RETURN_IF_ERROR(r.U32("head_dim", &D));
  KVARN_RETURN_IF_ERROR(r.U32("vocabulary size", &V));
  KVARN_RETURN_IF_ERROR(r.Str("codec name", &h.codec_name));
  KVARN_RETURN_IF_ERROR(r.U32("codec kind", &h.codec_kind));
  KVARN_RETURN_IF_ERROR(r.U32("rotation", &h.rotation));
  KVARN_RETURN_IF_ERROR(r.U32("VarN iterations", &h.varn_iters));
  KVARN_RETURN_IF_ERROR(r.U32("K bits", &h.k_bits));
  KVARN_RETURN_IF_ERROR(r.U32("V bits", &h.v_bits));
  KVARN_RETURN_IF_ERROR(r.U32("block tokens", &h.block_tokens));
  KVARN_RETURN_IF_ERROR(r.U32("record bytes", &h.record_bytes));
  KVARN_RETURN_IF_ERROR(r.U32("row bytes", &h.row_bytes));
  KVARN_RETURN_IF_ERROR(r.U32("token count", &n_tokens));
  KVARN_RETURN_IF_ERROR(r.U32("block count", &n_blocks));
  const auto bad = [&](const std::string& what) { return CorruptData(file + ": " + what); };
  // Shapes: positive and small enough that products below cannot overflow 64 bits.
  if (L < 1 || L > 4096 || Hk < 1 || Hk > 4096 || D < 1 || D > 4096)
    return bad("shape " + Num(L) + " layers x " + Num(Hk) + " KV heads x head_dim " + Num(D) +
               " out of range");
  if (V < 1 || V > SessionHeader::kMaxVocab)
    return bad("vocabulary size " + Num(V) + " out of range");
  if (h.block_tokens < 1 || h.block_tokens > 4096)
    return bad("block tokens " + Num(h.block_tokens) + " out of range");
  if (h.record_bytes > (uint32_t(1) << 26) || h.row_bytes > (uint32_t(1) << 20))
    return bad("record bytes " + Num(h.record_bytes) + " or row bytes " + Num(h.row_bytes) +
               " out of range");
  if (h.codec_kind > uint32_t(CodecKind::kTile))
    return bad("codec kind " + Num(h.codec_kind) + " unknown");
  const bool tile = h.codec_kind == uint32_t(CodecKind::kTile);
  if (n_tokens > SessionHeader::kMaxTokens)
    return bad("token count " + Num(n_tokens) + " over the limit of " +
               Num(SessionHeader::kMaxTokens));
  const uint64_t want_blocks = (uint64_t(n_tokens) + h.block_tokens - 1) / h.block_tokens;
  if (n_blocks != want_blocks)
    return bad(Num(n_blocks) + " blocks for " + Num(n_tokens) + " tokens of " +
               Num(h.block_tokens) + " per block (expected " + Num(want_blocks) + ")");
  // Every array's bytes must lie inside the header before it is allocated.
  const uint64_t logit_bytes = has_logits ? uint64_t(V) * 4 : 0;
  const uint64_t arrays = uint64_t(n_tokens) * 4 + uint64_t(n_blocks) * 24 + logit_bytes;
  if (arrays != body - kPrefixBytes - r.at())
    return bad("header of " + Num(h.header_bytes) + " bytes does not match " + Num(n_tokens) +
               " tokens, " + Num(n_blocks) + " blocks" + (logit_bytes ? " and logits" : ""));
  m.n_layers = int(L), m.n_kv_heads = int(Hk), m.head_dim = int(D), m.n_vocab = int(V);

  h.tokens.resize(n_tokens);
  for (uint32_t i = 0; i < n_tokens; ++i) {
    uint32_t t = 0;
    KVARN_RETURN_IF_ERROR(r.U32("tokens", &t));
    if (t >= V)
      return bad("token " + Num(i) + " is id " + std::to_string(int32_t(t)) +
                 ", outside the vocabulary of " + Num(V));
    h.tokens[i] = int32_t(t);
  }
  // Expected image sizes, from the shape and codec fields alone.
  const uint64_t lh = uint64_t(L) * Hk;
  uint64_t data = 0;
  h.blocks.resize(n_blocks);
  for (uint32_t b = 0; b < n_blocks; ++b) {
    SessionHeader::Block& blk = h.blocks[b];
    uint8_t kind = 0, pad[3];
    uint32_t tokens = 0, reserved = 0;
    KVARN_RETURN_IF_ERROR(r.U8("block kind", &kind));
    KVARN_RETURN_IF_ERROR(r.Bytes("block reserved", pad, 3));
    KVARN_RETURN_IF_ERROR(r.U32("block tokens", &tokens));
    KVARN_RETURN_IF_ERROR(r.U64("block bytes", &blk.bytes));
    KVARN_RETURN_IF_ERROR(r.U32("block checksum", &blk.crc));
    KVARN_RETURN_IF_ERROR(r.U32("block reserved", &reserved));
    const uint32_t valid = std::min<uint32_t>(h.block_tokens, n_tokens - b * h.block_tokens);
    const std::string which = "block " + Num(b);
    if (kind > uint8_t(BlockKind::kRows)) return bad(which + ": kind " + Num(kind) + " unknown");
    if (pad[0] | pad[1] | pad[2] | reserved) return bad(which + ": reserved bytes are not 0");
    if (tokens != valid)
      return bad(which + " holds " + Num(tokens) + " tokens, expected " + Num(valid));
    blk.image = KvCache::BlockImage{BlockKind(kind), int(tokens)};
    // The kinds a sequence of this codec can hold (KvCache::ImportSequence checks the same for
    // the blocks it restores): tile codecs the fp16 sink, then records of full blocks
    // directly after it, then fp16; per-token codecs rows only.
    const BlockKind k = blk.image.kind;
    const bool prev_record = b > 0 && h.blocks[b - 1].image.kind == BlockKind::kRecord;
    if (tile ? k == BlockKind::kRows : k != BlockKind::kRows)
      return bad(which + ": a " + h.codec_name + " cache holds no " + KindName(k) + " blocks");
    if (k == BlockKind::kRecord && (b == 0 || tokens != h.block_tokens || (b > 1 && !prev_record)))
      return bad(which + ": a record must be a full block directly after the sink or a record");
    uint64_t expect = 0;
    switch (blk.image.kind) {
      case BlockKind::kF16:
        expect = 2 * lh * tokens * D * 2;
        break;
      case BlockKind::kRecord:
        expect = lh * h.record_bytes;
        break;
      case BlockKind::kRows:
        expect = 2 * lh * tokens * h.row_bytes;
        break;
    }
    if (blk.bytes != expect)
      return bad(which + " (" + KindName(blk.image.kind) + ", " + Num(tokens) + " tokens) is " +
                 Num(blk.bytes) + " bytes, expected " + Num(expect));
    data += expect;
    if (h.header_bytes + data > size)
      return CorruptData(file + ": truncated: block " + Num(b) + " ends at byte " +
                         Num(h.header_bytes + data) + ", the file has " + Num(size));
  }
  if (has_logits) {
    h.logits.resize(V);
    for (uint32_t i = 0; i < V; ++i) {
      uint32_t u = 0;
      KVARN_RETURN_IF_ERROR(r.U32("logits", &u));
      std::memcpy(&h.logits[i], &u, 4);
    }
  }
  if (h.header_bytes + data != size) {
    if (h.header_bytes + data > size)
      return CorruptData(file + ": truncated: header and " + Num(n_blocks) + " block images need " +
                         Num(h.header_bytes + data) + " bytes, the file has " + Num(size));
    return CorruptData(file + ": " + Num(size - h.header_bytes - data) +
                       " bytes after the last block image");
  }
  *out = std::move(h);
  return Status::Ok();
}

Status CheckSessionMatches(const SessionHeader& h, const std::string& file,
                           const ModelIdentity& model, const KvCache& cache) {
  const ModelIdentity& s = h.model;
  if (s.fingerprint != model.fingerprint || s.file_size != model.file_size ||
      s.arch != model.arch || s.name != model.name)
    return InvalidArgument(file + ": saved for another model: '" + s.name + "' (" + s.arch + ", " +
                           Num(s.file_size) + " bytes, fingerprint " + Hex(s.fingerprint, 8) +
                           "), not '" + model.name + "' (" + model.arch + ", " +
                           Num(model.file_size) + " bytes, fingerprint " +
                           Hex(model.fingerprint, 8) + ")");
  const auto differ = [&](const char* field, uint64_t saved, uint64_t here) {
    return InvalidArgument(file + ": " + field + " " + Num(saved) + " in the file, " + Num(here) +
                           " here");
  };
  const KvCacheConfig& c = cache.config();
  if (s.n_layers != c.n_layers) return differ("layers", uint64_t(s.n_layers), uint64_t(c.n_layers));
  if (s.n_kv_heads != c.n_kv_heads)
    return differ("KV heads", uint64_t(s.n_kv_heads), uint64_t(c.n_kv_heads));
  if (s.head_dim != c.head_dim)
    return differ("head_dim", uint64_t(s.head_dim), uint64_t(c.head_dim));
  if (s.n_vocab != model.n_vocab)
    return differ("vocabulary size", uint64_t(s.n_vocab), uint64_t(model.n_vocab));
  const SessionHeader d = DescribeCache(cache, model);
  if (h.codec_name != d.codec_name)
    return InvalidArgument(file + ": holds a " + h.codec_name + " cache, this cache is " +
                           d.codec_name + " (use --cache-type " + h.codec_name +
                           " or recompute the prompt)");
  if (h.codec_kind != d.codec_kind) return differ("codec kind", h.codec_kind, d.codec_kind);
  if (h.rotation != d.rotation) return differ("rotation", h.rotation, d.rotation);
  if (h.varn_iters != d.varn_iters) return differ("VarN iterations", h.varn_iters, d.varn_iters);
  if (h.k_bits != d.k_bits) return differ("K bits", h.k_bits, d.k_bits);
  if (h.v_bits != d.v_bits) return differ("V bits", h.v_bits, d.v_bits);
  if (h.block_tokens != d.block_tokens)
    return differ("block tokens (G)", h.block_tokens, d.block_tokens);
  if (h.record_bytes != d.record_bytes)
    return differ("record bytes", h.record_bytes, d.record_bytes);
  if (h.row_bytes != d.row_bytes) return differ("row bytes", h.row_bytes, d.row_bytes);
  return Status::Ok();
}

int ReusablePrefix(const SessionHeader& h, const int32_t* prompt, int n_prompt) {
  const int saved = int(h.tokens.size());
  int target = saved;
  if (prompt != nullptr) {
    int m = 0;
    while (m < saved && m < n_prompt && h.tokens[size_t(m)] == prompt[m]) ++m;
    const bool whole = m == saved && m == n_prompt && !h.logits.empty();
    target = whole ? m : std::min(m, n_prompt - 1);
  }
  if (target <= 0) return 0;
  // A prefix ending inside a block keeps part of it: possible for fp16 and rows, not records.
  const int G = int(h.block_tokens);
  const int b = target / G;
  if (target % G != 0 && h.blocks[size_t(b)].image.kind == BlockKind::kRecord) return b * G;
  return target;
}

Status LoadSession(ByteSource& src, const ModelIdentity& model, KvCache& cache,
                   const int32_t* prompt, int n_prompt, RestoredSession* out) {
  SessionHeader h;
  KVARN_RETURN_IF_ERROR(ReadSessionHeader(src, &h));
  KVARN_RETURN_IF_ERROR(CheckSessionMatches(h, src.name(), model, cache));
  const int reuse = ReusablePrefix(h, prompt, n_prompt);
  std::vector<KvCache::BlockImage> images;
  std::vector<uint64_t> offsets;
  uint64_t off = h.header_bytes;
  for (const auto& b : h.blocks) {
    images.push_back(b.image);
    offsets.push_back(off);
    off += b.bytes;
  }
  int seq = -1;
  const Status imported = cache.ImportSequence(
      reuse, images,
      [&](int b, uint8_t* dst, size_t size) {
        const SessionHeader::Block& blk = h.blocks[size_t(b)];
        if (size != blk.bytes)
          return Internal("session: block " + std::to_string(b) + " image of " + Num(blk.bytes) +
                          " bytes, the cache asks for " + Num(size));
        KVARN_RETURN_IF_ERROR(src.Read(offsets[size_t(b)], dst, size));
        const uint32_t crc = Crc32(dst, size);
        if (crc != blk.crc)
          return CorruptData(src.name() + ": block " + std::to_string(b) +
                             " checksum mismatch (CRC-32 " + Num(crc) + ", stored " + Num(blk.crc) +
                             "): the file is corrupted");
        return Status::Ok();
      },
      &seq);
  if (!imported.ok()) return imported;
  out->seq = seq;
  out->reused = reuse;
  out->tokens = std::move(h.tokens);
  out->logits.clear();
  if (reuse == int(out->tokens.size()) && !h.logits.empty()) out->logits = std::move(h.logits);
  return Status::Ok();
}

Status LoadSessionFile(const std::string& path, const ModelIdentity& model, KvCache& cache,
                       const int32_t* prompt, int n_prompt, RestoredSession* out) {
  std::unique_ptr<ByteSource> src;
  KVARN_RETURN_IF_ERROR(OpenFileSource(path, &src));
  return LoadSession(*src, model, cache, prompt, n_prompt, out);
}

}  // namespace kvarn
