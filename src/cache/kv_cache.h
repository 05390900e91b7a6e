// KvCache: the paged, quantized KV cache (spec §2) shared by several sequences.
//
// Per sequence the cache holds blocks of G tokens (G = the codec's tile size; per-token codecs
// use G = 128 as allocation granularity). For tile codecs (kvarn, kivi, hadamard, varn):
//   block 0 (the sink) stays fp16 forever;
//   completed blocks are encoded into one record per (layer, KV head);
//   the unfinished block (the tail) stays fp16, in the codec's (rotated) frame.
// Per-token codecs (f32, f16, q8_0, q4_0, q4_1) encode each token when it is written, as
// llama.cpp does: no sink and no tail.
//
// Step protocol, per sequence:
//   BeginStep(seq, n)  commit rule (spec §2.6): encodes every non-sink block whose tokens were
//                      all written in *earlier* steps, then reserves n new positions. All
//                      allocation happens here, all-or-nothing: on a budget error nothing changed.
//   Write(seq, layer, ...) writes this step's K/V of one layer (any order of layers).
//   EndStep(seq)       marks this step's tokens as committed.
//   Truncate(seq, len) rolls back tokens >= len (e.g. rejected draft tokens). Because encoding
//                      only ever takes tokens of earlier steps, rolling back the current step
//                      never touches encoded history; rolling back into it is an error.
//
// Memory: every page comes from one pool with a byte budget; Stats() counts every byte the
// cache holds (records, fp16 sink and tail pages, per-token rows, its staging scratch). The
// codec's own per-call temporaries (about 4*G*D bytes while a tile encodes) are not pages.
// Not thread-safe: one caller at a time (the model serializes steps).
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/status.h"
#include "quant/codec.h"
#include "quant/tile_codec.h"

namespace kvarn {

struct KvCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  CodecSpec codec;
  int max_tokens = 4096;           // per-sequence context limit
  size_t byte_budget = size_t(1) << 32;  // all pages of all sequences together
  int per_token_block = 128;       // allocation granularity of per-token codecs
};

// How one block of a sequence is stored.
enum class BlockKind : uint8_t {
  kF16,      // fp16 [L][Hk][G][D] for K, then the same for V (sink, tail, not yet encoded)
  kRecord,   // tile records [L][Hk][record_bytes]
  kRows,     // per-token rows [L][Hk][G][row_bytes] for K, then the same for V
};

struct CacheStats {
  size_t record_bytes = 0;  // encoded tile records
  size_t sink_bytes = 0;    // fp16 block 0 of tile codecs
  size_t tail_bytes = 0;    // fp16 blocks not yet encoded
  size_t row_bytes = 0;     // per-token codec rows
  size_t scratch_bytes = 0; // encode scratch
  size_t total() const { return record_bytes + sink_bytes + tail_bytes + row_bytes + scratch_bytes; }
  size_t budget = 0;
  int64_t tokens = 0;       // tokens stored, all sequences
};

class KvCache;

// Read-only description of one sequence for attention: its blocks and their storage.
struct BlockRef {
  BlockKind kind;
  const uint8_t* data;  // the page
};

class SeqView {
 public:
  int length() const { return length_; }
  int block_tokens() const { return G_; }
  int n_blocks() const { return int(blocks_.size()); }
  const BlockRef& block(int b) const { return blocks_[size_t(b)]; }
  // Tokens of block b that are valid (G except maybe the last).
  int block_len(int b) const { return std::min(G_, length_ - b * G_); }

  // fp16 K or V of (layer, head) in block b (kind kF16): [G][D], rotated frame if the codec
  // rotates.
  const f16_t* F16K(int b, int layer, int head) const;
  const f16_t* F16V(int b, int layer, int head) const;
  // Tile record of (layer, head) in block b (kind kRecord), as stored: in the kernel layout
  // (quant/kernel_layout.h) when KvCache::kernel_layout(), else in the reference layout.
  const uint8_t* Record(int b, int layer, int head) const;
  // The same record in the reference layout (record.h), what Codec::Decode reads:
  // out [KvCache::RecordBytes()].
  void ReferenceRecord(int b, int layer, int head, uint8_t* out) const;
  // Per-token rows of (layer, head) in block b (kind kRows): [G][row_bytes].
  const uint8_t* RowsK(int b, int layer, int head) const;
  const uint8_t* RowsV(int b, int layer, int head) const;

 private:
  friend class KvCache;
  const KvCache* cache_ = nullptr;
  int length_ = 0;
  int G_ = 0;
  std::vector<BlockRef> blocks_;
};

class KvCache {
 public:
  static Status Create(const KvCacheConfig& config, std::unique_ptr<KvCache>* out);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  const KvCacheConfig& config() const { return config_; }
  const Codec& codec() const { return *codec_; }
  int block_tokens() const { return G_; }
  // Whether stored K/V (fp16 blocks and records) are in the Hadamard-rotated frame.
  bool rotated() const { return codec_->rotated_storage(); }
  // Whether records are stored in the kernel layout (quant/kernel_layout.h): tile codecs whose
  // geometry has one. The record is converted once, when its tile commits.
  bool kernel_layout() const { return kernel_layout_; }

  Status AddSequence(int* seq);
  Status RemoveSequence(int seq);  // frees all its pages
  // A new sequence holding a deep copy of seq's pages and state (records, sink, tail, commit
  // watermark), e.g. to reuse a prefilled prompt prefix for several continuations. Fails
  // without allocating anything if the byte budget cannot hold the copy, or inside an open step.
  Status CopySequence(int src, int* dst);
  // A new sequence holding the first `length` tokens of src (kv_cache_prefix.cc), for prefix
  // reuse: length must be a multiple of block_tokens() and at most src's committed length, so
  // every copied block holds only prefix tokens. Its state is what a sequence that was fed
  // exactly those tokens holds, except that blocks src has already encoded arrive encoded; the
  // commit rule encodes the others at the next BeginStep, from the same fp16 values, so every
  // later step reads the same bytes. All-or-nothing against the byte budget; not inside an open
  // step of src.
  Status CopyPrefix(int src, int length, int* dst);

  Status BeginStep(int seq, int n_new);
  // k, v: [n][Hk][D] model-frame values of positions pos .. pos+n-1, which must lie in the
  // positions reserved by this step's BeginStep. NaN/Inf (or fp16 overflow) fails with an error
  // naming the layer and position, and nothing is written for that call.
  Status Write(int seq, int layer, int pos, int n, const float* k, const float* v);
  Status EndStep(int seq);
  // Abandons the open step (e.g. a Write failed): its positions are released, encoded blocks
  // and earlier tokens are untouched.
  Status AbortStep(int seq);
  Status Truncate(int seq, int new_length);

  int Length(int seq) const;
  // Tokens of seq stored encoded (as records): they can no longer be rolled back.
  int EncodedTokens(int seq) const;
  Status View(int seq, SeqView* out) const;

  CacheStats Stats() const;
  // Bytes per page of each kind (for the accounting test and capacity planning).
  size_t PageBytes(BlockKind kind) const;
  // The kind of page a completed block is encoded into: records for tile codecs, per-token
  // rows for the others (f16 and f32 included).
  BlockKind EncodedKind() const;
  size_t RowBytes() const { return row_bytes_; }
  size_t RecordBytes() const { return record_bytes_; }

  // ---- Persistence (kv_cache_pages.cc): a sequence's stored bytes, copied verbatim, so a
  // session file holds exactly what the cache holds (records are never re-encoded).
  // Bumped whenever the bytes of a page change meaning (record byte order, plane order):
  // session files record it and refuse another.
  // 1: records in the reference layout (record.h). 2: records in the kernel layout
  // (quant/kernel_layout.h) wherever the geometry has one (G a multiple of 16).
  static constexpr uint32_t kPageLayoutVersion = 2;
  struct BlockImage {
    BlockKind kind;
    int tokens;  // valid tokens the image holds (G for a record)
  };
  // Bytes of a block's image: a record page whole; an fp16 or rows block as the first
  // `tokens` rows of each (plane, layer, head) in page order (the whole page when full).
  size_t BlockImageBytes(const BlockImage& b) const;
  // Encodes now the blocks the commit rule would encode at seq's next BeginStep (complete
  // non-sink blocks of earlier steps), so a saved sequence holds them as records. The
  // sequence continues exactly as it would have; it only can no longer be truncated into them.
  Status EncodeCommitted(int seq);
  // The blocks of seq, in order (outside a step).
  Status ExportBlocks(int seq, std::vector<BlockImage>* blocks) const;
  // Copies the image of block b (size must be BlockImageBytes of that block) into dst.
  Status ExportBlock(int seq, int b, uint8_t* dst, size_t size) const;
  // A new sequence of `length` committed tokens rebuilt from block images: blocks[b] describes
  // the image read(b, dst, size) fills; an image may hold more tokens than the sequence keeps
  // of its block (restoring a prefix). Before allocating, the blocks are checked against what
  // a sequence of that length can hold (tile codecs: the fp16 sink, records of full blocks,
  // then fp16; per-token codecs: rows), max_tokens and the byte budget. All or nothing: on
  // any error, read's included, nothing stays allocated.
  Status ImportSequence(int length, const std::vector<BlockImage>& blocks,
                        const std::function<Status(int b, uint8_t* dst, size_t size)>& read,
                        int* seq);

 private:
  friend class SeqView;
  struct Block {
    BlockKind kind;
    uint8_t* data;
  };
  struct Sequence {
    bool live = false;
    int length = 0;         // tokens stored (committed + this step's reserved)
    int committed = 0;      // tokens of earlier steps
    int step_begin = -1;    // length at BeginStep, -1 outside a step
    int encoded_blocks = 1; // watermark: blocks [1, encoded_blocks) are records (0: sink)
    std::vector<Block> blocks;
  };

  explicit KvCache(const KvCacheConfig& config);
  Status CheckSeq(int seq) const;
  uint8_t* Allocate(BlockKind kind);
  void Release(BlockKind kind, uint8_t* page);
  Status EncodeBlock(Sequence& s, int b);

  KvCacheConfig config_;
  std::unique_ptr<Codec> codec_;
  TileShape shape_;
  int G_ = 0;
  size_t row_bytes_ = 0;     // per-token codecs: one K (or V) row
  size_t record_bytes_ = 0;  // tile codecs
  bool kernel_layout_ = false;
  std::vector<uint8_t> encode_scratch_;  // one reference record, before the layout conversion
  size_t used_bytes_ = 0;
  std::vector<Sequence> seqs_;
  // Staging of one Write (validated completely before anything is stored); reused, and
  // counted as scratch. Not thread-safe: callers serialize calls on one cache.
  std::vector<f16_t> stage_f16_;   // [2][n][Hk][D]
  std::vector<uint8_t> stage_rows_;  // [n][Hk][2][row_bytes]
};

}  // namespace kvarn
