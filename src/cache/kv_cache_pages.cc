// KvCache persistence: a sequence's pages out and in, byte for byte (kv_cache.h, "Persistence").
// Records are copied whole; fp16 and per-token-row pages are planes of [L][Hk][G] token rows
// (K plane, then V plane), of which a partial block's image keeps the first `tokens` rows of
// each (layer, head), so a session file never carries the unwritten rest of a tail page.
#include <algorithm>
#include <cstring>
#include <string>

#include "cache/kv_cache.h"

namespace kvarn {
namespace {

std::string Num(size_t v) { return std::to_string(v); }

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

}  // namespace

size_t KvCache::BlockImageBytes(const BlockImage& b) const {
  const size_t lh = size_t(config_.n_layers) * config_.n_kv_heads;
  const size_t n = size_t(std::clamp(b.tokens, 0, G_));
  switch (b.kind) {
    case BlockKind::kF16:
      return 2 * lh * n * config_.head_dim * sizeof(f16_t);
    case BlockKind::kRecord:
      return PageBytes(BlockKind::kRecord);
    case BlockKind::kRows:
      return 2 * lh * n * row_bytes_;
  }
  return 0;
}

Status KvCache::EncodeCommitted(int seq) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin >= 0)
    return InvalidArgument("KV cache: EncodeCommitted of sequence " + std::to_string(seq) +
                           " inside an open step");
  if (!config_.codec.is_tile()) return Status::Ok();
  // The first half of BeginStep (kv_cache.cc), on its own.
  const int complete = s.committed / G_;
  for (int b = std::max(s.encoded_blocks, 1); b < complete; ++b) {
    KVARN_RETURN_IF_ERROR(EncodeBlock(s, b));
    s.encoded_blocks = b + 1;
  }
  return Status::Ok();
}

Status KvCache::ExportBlocks(int seq, std::vector<BlockImage>* blocks) const {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  const Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin >= 0)
    return InvalidArgument("KV cache: export of sequence " + std::to_string(seq) +
                           " inside an open step");
  blocks->clear();
  for (size_t b = 0; b < s.blocks.size(); ++b)
    blocks->push_back(BlockImage{s.blocks[b].kind, std::min(G_, s.length - int(b) * G_)});
  return Status::Ok();
}

Status KvCache::ExportBlock(int seq, int b, uint8_t* dst, size_t size) const {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  const Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin >= 0)
    return InvalidArgument("KV cache: export of sequence " + std::to_string(seq) +
                           " inside an open step");
  if (b < 0 || size_t(b) >= s.blocks.size())
    return OutOfRange("KV cache: block " + std::to_string(b) + " of a sequence of " +
                      Num(s.blocks.size()) + " blocks");
  const Block& blk = s.blocks[size_t(b)];
  const BlockImage img{blk.kind, std::min(G_, s.length - b * G_)};
  const size_t want = BlockImageBytes(img);
  if (size != want)
    return BufferTooSmall("KV cache: block " + std::to_string(b) + " image is " + Num(want) +
                          " bytes, buffer " + Num(size));
  if (img.kind == BlockKind::kRecord || img.tokens == G_) {
    std::memcpy(dst, blk.data, want);
    return Status::Ok();
  }
  const size_t row = img.kind == BlockKind::kF16 ? config_.head_dim * sizeof(f16_t) : row_bytes_;
  const size_t planes = 2 * size_t(config_.n_layers) * config_.n_kv_heads;
  const size_t n = size_t(img.tokens) * row;
  for (size_t p = 0; p < planes; ++p) std::memcpy(dst + p * n, blk.data + p * G_ * row, n);
  return Status::Ok();
}

Status KvCache::ImportSequence(int length, const std::vector<BlockImage>& blocks,
                               const std::function<Status(int, uint8_t*, size_t)>& read, int* seq) {
  // ---- Validation: nothing is allocated until the whole description is known to be sound.
  if (length < 0 || length > config_.max_tokens)
    return OutOfRange("KV cache: imported sequence of " + std::to_string(length) +
                      " tokens, the cache holds at most " + std::to_string(config_.max_tokens));
  const int nb = (length + G_ - 1) / G_;
  if (blocks.size() < size_t(nb))
    return InvalidArgument("KV cache: a sequence of " + std::to_string(length) + " tokens needs " +
                           std::to_string(nb) + " blocks, " + Num(blocks.size()) + " given");
  const bool tile = config_.codec.is_tile();
  int encoded_blocks = 1;
  size_t need = 0;
  for (int b = 0; b < nb; ++b) {
    const BlockImage& img = blocks[size_t(b)];
    const int keep = std::min(G_, length - b * G_);
    std::string bad;
    if (!tile && img.kind != BlockKind::kRows) {
      bad = "a per-token codec stores rows";
    } else if (tile && img.kind == BlockKind::kRows) {
      bad = "a tile codec stores no rows";
    } else if (img.kind == BlockKind::kRecord) {
      if (b == 0)
        bad = "block 0 is the fp16 sink";
      else if (encoded_blocks != b)
        bad = "records must directly follow the sink";
      else if (keep != G_)
        bad = "only full blocks are encoded";
      else
        encoded_blocks = b + 1;
    }
    if (bad.empty() && img.tokens < keep) bad = "the image holds fewer tokens than kept";
    if (bad.empty() && (img.tokens < 1 || img.tokens > G_)) bad = "token count out of range";
    if (!bad.empty())
      return CorruptData("KV cache: block " + std::to_string(b) + " (" + KindName(img.kind) + ", " +
                         std::to_string(img.tokens) + " tokens) of an imported sequence of " +
                         std::to_string(length) + " tokens: " + bad);
    need += PageBytes(img.kind);
  }
  if (used_bytes_ + need > config_.byte_budget)
    return OutOfMemory("KV cache: importing " + std::to_string(length) + " tokens needs " +
                       Num(need) + " bytes, " + Num(config_.byte_budget - used_bytes_) +
                       " left of the budget of " + Num(config_.byte_budget));

  // ---- Pages: read each image, into the page directly when it is the page.
  std::vector<Block> pages;
  const auto undo = [&](const Status& st) {
    for (Block& q : pages) Release(q.kind, q.data);
    return st;
  };
  std::vector<uint8_t> stage;
  for (int b = 0; b < nb; ++b) {
    const BlockImage& img = blocks[size_t(b)];
    const int keep = std::min(G_, length - b * G_);
    uint8_t* page = Allocate(img.kind);
    if (page == nullptr)
      return undo(
          OutOfMemory("KV cache: allocation of " + Num(PageBytes(img.kind)) + " bytes failed"));
    pages.push_back(Block{img.kind, page});
    const size_t bytes = BlockImageBytes(img);
    if (img.kind == BlockKind::kRecord || (img.tokens == G_ && keep == G_)) {
      const Status st = read(b, page, bytes);
      if (!st.ok()) return undo(st);
      continue;
    }
    // A partial image, or a prefix of one: scatter the kept rows of every plane; the rest of
    // the page is zeroed so the cache never holds leftover bytes.
    stage.resize(bytes);
    const Status st = read(b, stage.data(), bytes);
    if (!st.ok()) return undo(st);
    const size_t row = img.kind == BlockKind::kF16 ? config_.head_dim * sizeof(f16_t) : row_bytes_;
    const size_t planes = 2 * size_t(config_.n_layers) * config_.n_kv_heads;
    std::memset(page, 0, PageBytes(img.kind));
    for (size_t p = 0; p < planes; ++p)
      std::memcpy(page + p * G_ * row, stage.data() + p * size_t(img.tokens) * row,
                  size_t(keep) * row);
  }
  int id = 0;
  KVARN_RETURN_IF_ERROR(AddSequence(&id));
  Sequence& s = seqs_[size_t(id)];
  s.length = length;
  s.committed = length;
  s.encoded_blocks = encoded_blocks;
  s.blocks = std::move(pages);
  *seq = id;
  return Status::Ok();
}

}  // namespace kvarn
