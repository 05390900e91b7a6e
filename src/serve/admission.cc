#include "serve/admission.h"

#include <algorithm>

namespace kvarn::serve {

size_t BlockBytes(const KvCache& cache, const std::vector<BlockKind>& blocks) {
  size_t bytes = 0;
  for (BlockKind k : blocks) bytes += cache.PageBytes(k);
  return bytes;
}

size_t PeakSequenceBytes(const KvCache& cache, const SequencePlan& plan) {
  const bool tile = cache.config().codec.is_tile();
  const int G = cache.block_tokens();
  const size_t f16 = cache.PageBytes(BlockKind::kF16);
  const size_t record = cache.PageBytes(BlockKind::kRecord);
  const size_t fresh = cache.PageBytes(tile ? BlockKind::kF16 : BlockKind::kRows);

  size_t bytes = BlockBytes(cache, plan.start_blocks), peak = bytes;
  int n_blocks = int(plan.start_blocks.size());
  // KvCache's watermark: blocks [1, encoded) are records; CopyPrefix keeps the donor's.
  int encoded = 1;
  while (encoded < n_blocks && plan.start_blocks[size_t(encoded)] == BlockKind::kRecord) ++encoded;
  int length = plan.start_tokens;

  // One step of n tokens, as KvCache::BeginStep allocates for it (committed == length between
  // steps: the server never leaves a step open).
  const auto step = [&](int n) {
    if (tile) {
      const int complete = length / G;
      for (int b = std::max(encoded, 1); b < complete; ++b) {
        peak = std::max(peak, bytes + record);  // the record exists before the fp16 page goes
        bytes = bytes + record - f16;
        encoded = b + 1;
      }
    }
    const int need = (length + n + G - 1) / G - n_blocks;
    if (need > 0) {
      bytes += size_t(need) * fresh;
      n_blocks += need;
    }
    peak = std::max(peak, bytes);
    length += n;
  };
  const int chunk = std::max(1, plan.chunk);
  while (length < plan.prompt_tokens) {
    const int end = std::min(plan.prompt_tokens, (length / chunk + 1) * chunk);
    step(end - length);
  }
  while (length < plan.final_tokens) step(1);
  return peak;
}

}  // namespace kvarn::serve
