// ParallelFor: splits [0, n_items) into n_threads contiguous chunks and runs them on a small
// persistent thread pool (the calling thread takes chunk 0). Chunk i is
// [n_items * i / n_threads, n_items * (i + 1) / n_threads).
//
// Determinism is the caller's contract and easy to keep: if each item's result depends only on
// the item (as a matmul row does), the results cannot depend on n_threads.
//
// The pool serves one ParallelFor at a time. A call made while it is busy (from a worker inside
// fn, or concurrently from another thread) runs its chunks in order on the calling thread rather
// than waiting, so nesting cannot deadlock. fn must not throw.
#pragma once

#include <cstdint>
#include <functional>

namespace kvarn {

void ParallelFor(int n_threads, int64_t n_items,
                 const std::function<void(int64_t begin, int64_t end)>& fn);

// Hardware threads of this machine (at least 1): a default for n_threads.
int DefaultThreadCount();

}  // namespace kvarn
