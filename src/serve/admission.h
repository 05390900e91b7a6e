// Admission arithmetic: the most bytes one sequence's pages can hold at any moment of its life,
// by the cache's own page rules (KvCache::PageBytes and its commit rule), so that a request is
// admitted only when its worst case fits in what the budget has left and a live sequence can
// never run out of pages.
//
// The plan a sequence follows in `kvarn serve`: it starts empty or from a copied prefix
// (KvCache::CopyPrefix), prefills its prompt in chunks that end at multiples of the chunk size
// (absolute positions), then decodes one token per step until it holds final_tokens tokens.
// Tile codecs keep the sink and the unfinished blocks in fp16 and encode a block at the first
// step after all its tokens were committed, allocating its record before freeing its fp16 page;
// a prefill chunk therefore holds all the blocks it completed in fp16 until the next step.
// Per-token codecs allocate one page of rows per block and never re-encode.
#pragma once

#include <cstddef>
#include <vector>

#include "cache/kv_cache.h"

namespace kvarn::serve {

struct SequencePlan {
  std::vector<BlockKind> start_blocks;  // kinds of the copied prefix's blocks (empty: cold)
  int start_tokens = 0;                 // tokens of the copied prefix (a multiple of G)
  int prompt_tokens = 0;                // prefilled in chunks from start_tokens on
  int chunk = 256;                      // prefill chunk: ends at multiples of it
  int final_tokens = 0;                 // tokens held after the last decode step (>= prompt)
};

// Peak page bytes of the plan; the sequence's pages never exceed it at any moment (the test
// runs plans through a cache whose budget is exactly this, and one byte less).
size_t PeakSequenceBytes(const KvCache& cache, const SequencePlan& plan);

// Page bytes of a set of blocks.
size_t BlockBytes(const KvCache& cache, const std::vector<BlockKind>& blocks);

}  // namespace kvarn::serve
