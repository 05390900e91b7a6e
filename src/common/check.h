// Invariant checks for kvarn's own bugs (never for bad user input, which gets a Status).
// KVARN_CHECK is always on; KVARN_DCHECK only in debug builds, for hot loops.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace kvarn::detail {
[[noreturn]] inline void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "kvarn: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace kvarn::detail

#define KVARN_CHECK(cond) \
  ((cond) ? (void)0 : ::kvarn::detail::CheckFailed(#cond, __FILE__, __LINE__))

#ifdef NDEBUG
#define KVARN_DCHECK(cond) ((void)0)
#else
#define KVARN_DCHECK(cond) KVARN_CHECK(cond)
#endif
