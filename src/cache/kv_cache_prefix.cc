// KvCache::CopyPrefix: a new sequence from the first blocks of another (prefix reuse in
// `kvarn serve`). Kept apart from kv_cache.cc; it follows CopySequence page for page.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cache/kv_cache.h"

namespace kvarn {

Status KvCache::CopyPrefix(int src, int length, int* dst) {
  KVARN_RETURN_IF_ERROR(CheckSeq(src));
  const Sequence& s = seqs_[size_t(src)];
  if (s.step_begin >= 0)
    return InvalidArgument("KV cache: CopyPrefix of sequence " + std::to_string(src) +
                           " inside an open step");
  if (length < G_ || length % G_ != 0 || length > s.committed)
    return InvalidArgument("KV cache: CopyPrefix of " + std::to_string(length) +
                           " tokens of sequence " + std::to_string(src) + " (" +
                           std::to_string(s.committed) +
                           " committed): the length must be a positive multiple of the block of " +
                           std::to_string(G_) + " tokens and at most the committed length");
  const int n_blocks = length / G_;
  size_t need = 0;
  for (int b = 0; b < n_blocks; ++b) need += PageBytes(s.blocks[size_t(b)].kind);
  if (used_bytes_ + need > config_.byte_budget)
    return OutOfMemory("KV cache: copying " + std::to_string(length) + " tokens of sequence " +
                       std::to_string(src) + " needs " + std::to_string(need) + " bytes, " +
                       std::to_string(config_.byte_budget - used_bytes_) +
                       " left of the budget of " + std::to_string(config_.byte_budget));
  std::vector<Block> pages;
  for (int b = 0; b < n_blocks; ++b) {
    const Block& from = s.blocks[size_t(b)];
    uint8_t* p = Allocate(from.kind);
    if (p == nullptr) {
      for (Block& q : pages) Release(q.kind, q.data);
      return OutOfMemory("KV cache: allocation of " + std::to_string(PageBytes(from.kind)) +
                         " bytes failed");
    }
    std::memcpy(p, from.data, PageBytes(from.kind));
    pages.push_back(Block{from.kind, p});
  }
  const int encoded_blocks = std::min(s.encoded_blocks, n_blocks);
  int id = 0;
  KVARN_RETURN_IF_ERROR(AddSequence(&id));  // may grow seqs_: index, never hold a reference
  Sequence& d = seqs_[size_t(id)];
  d.length = length;
  d.committed = length;
  d.encoded_blocks = std::max(encoded_blocks, 1);
  d.blocks = std::move(pages);
  *dst = id;
  return Status::Ok();
}

}  // namespace kvarn
