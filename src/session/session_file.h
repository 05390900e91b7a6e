// Session files: one KV-cache sequence persisted with what is needed to refuse a wrong restore
// (model identity, shape, codec and its parameters, page layout) and the pages as the cache
// stores them (records never re-encoded; the fp16 sink and tail as written). The bytes are
// specified in docs/session-format.md.
//
// Reading treats the file as untrusted: every field, count and size is validated (and the
// header's CRC-32 checked) before anything is allocated beyond the header itself, whose size
// is bounded by the file's; each block image's CRC-32 is checked as it is read. Errors name the
// file and the problem: "truncated", "checksum mismatch", "saved for another model", "holds a
// <codec> cache", an unsupported version. A failed load leaves the cache as it was.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "common/status.h"

namespace kvarn {

// What a session file records about its model: enough to tell two models apart and to
// refuse a cache of another shape (model_identity.h computes it for a loaded GGUF).
struct ModelIdentity {
  uint64_t file_size = 0;
  std::array<uint8_t, 32> fingerprint{};  // SHA-256, see ModelFingerprint()
  std::string arch;                       // general.architecture
  std::string name;                       // general.name
  int n_layers = 0, n_kv_heads = 0, head_dim = 0, n_vocab = 0;
};

// The header of a session file (everything before the block images), as read and validated.
struct SessionHeader {
  static constexpr char kMagic[8] = {'K', 'V', 'A', 'R', 'N', 'S', 'E', 'S'};
  static constexpr uint32_t kVersion = 1;
  // Limits beyond which a file is refused as corrupt (before any allocation).
  static constexpr uint32_t kMaxString = 256;
  static constexpr uint32_t kMaxTokens = uint32_t(1) << 24;
  static constexpr uint32_t kMaxVocab = uint32_t(1) << 22;
  static constexpr uint32_t kMaxHeaderBytes = uint32_t(1) << 28;

  uint32_t version = kVersion;
  uint32_t page_layout = KvCache::kPageLayoutVersion;
  ModelIdentity model;
  // Codec (docs/session-format.md gives the numbering).
  std::string codec_name;           // canonical, e.g. "kvarn_k4v2_g128"
  uint32_t codec_kind = 0;          // CodecKind
  uint32_t rotation = 0;            // 0 none, 1 normalized Sylvester-Hadamard over head_dim
  uint32_t varn_iters = 0;          // variance-normalization iterations run (0: none)
  uint32_t k_bits = 0, v_bits = 0;  // tile codecs; 0 otherwise
  uint32_t block_tokens = 0;        // G: the codec's tile, or the per-token codec's page block
  uint32_t record_bytes = 0;        // tile codecs: one record (one layer, KV head and tile)
  uint32_t row_bytes = 0;           // per-token codecs: one K (or V) row
  // Sequence.
  std::vector<int32_t> tokens;  // [n_tokens] the ids the cache holds, in order
  struct Block {
    KvCache::BlockImage image;
    uint64_t bytes = 0;  // image bytes in the file
    uint32_t crc = 0;    // CRC-32 of those bytes
  };
  std::vector<Block> blocks;  // [ceil(n_tokens / G)]
  std::vector<float> logits;  // [n_vocab] after the last token, or empty
  uint64_t header_bytes = 0;  // file offset of the first block image
};

// Where a session is read from: a file (pread) or bytes in memory (tests, fuzzing).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual const std::string& name() const = 0;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at offset; the caller has checked the range against size().
  virtual Status Read(uint64_t offset, void* dst, size_t n) = 0;
};
Status OpenFileSource(const std::string& path, std::unique_ptr<ByteSource>* out);
std::unique_ptr<ByteSource> MemorySource(const uint8_t* data, size_t size, std::string name);

// The header fields a cache and a model identity determine (everything but tokens and blocks).
SessionHeader DescribeCache(const KvCache& cache, const ModelIdentity& model);

// Writes seq of cache (which holds exactly `tokens`) and, if not null, the logits [n_vocab]
// that followed its last token. Blocks the next step would encode are encoded first
// (KvCache::EncodeCommitted; skipped if the byte budget has no room for a record), so the file
// holds records wherever the cache's continuation will. The file appears atomically (written
// to a temporary beside it, then renamed): a failure never leaves a partial file at path.
Status WriteSession(const std::string& path, const ModelIdentity& model, KvCache& cache, int seq,
                    const std::vector<int32_t>& tokens, const float* logits);

// Reads and validates the header (its own consistency, its checksum, and that the file size
// is exactly the header plus the block images it lists).
Status ReadSessionHeader(ByteSource& src, SessionHeader* out);

// Checks a header against the model and cache it is to be restored into; the error names the
// first field that differs, with both values.
Status CheckSessionMatches(const SessionHeader& h, const std::string& file,
                           const ModelIdentity& model, const KvCache& cache);

// How many saved tokens a new prompt can reuse: llama.cpp's --prompt-cache rule (the longest
// common prefix of saved tokens and prompt), kept below the prompt's length so its last token
// is evaluated again for logits (unless the whole saved sequence is the whole prompt and the
// file holds its logits), and cut to what the cache can restore: a prefix that ends inside an
// encoded block gives that block up (records cannot be split). prompt null: all saved tokens.
int ReusablePrefix(const SessionHeader& h, const int32_t* prompt, int n_prompt);

struct RestoredSession {
  int seq = -1;                 // the new sequence (empty when nothing was reusable)
  int reused = 0;               // tokens it holds: the first `reused` of the saved tokens
  std::vector<int32_t> tokens;  // every saved token
  std::vector<float> logits;    // [n_vocab] after token reused-1, when the file has them
                                // and reused == tokens.size(); empty otherwise
};

// Reads a session into a new sequence of cache: the whole of it (prompt null) or the prefix a
// prompt can reuse (ReusablePrefix). The file is validated and matched against model and cache
// before any page is allocated; on error the cache is unchanged.
Status LoadSession(ByteSource& src, const ModelIdentity& model, KvCache& cache,
                   const int32_t* prompt, int n_prompt, RestoredSession* out);
Status LoadSessionFile(const std::string& path, const ModelIdentity& model, KvCache& cache,
                       const int32_t* prompt, int n_prompt, RestoredSession* out);

}  // namespace kvarn
