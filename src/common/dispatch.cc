#include "common/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hwy/targets.h"

namespace kvarn {
namespace {
std::atomic<int>& ForceFlag() {
  static std::atomic<int> flag = [] {
    const char* env = std::getenv("KVARN_FORCE_REFERENCE");
    return (env != nullptr && std::strcmp(env, "0") != 0 && env[0] != '\0') ? 1 : 0;
  }();
  return flag;
}
}  // namespace

bool ForceReference() { return ForceFlag().load(std::memory_order_relaxed) != 0; }
void SetForceReference(bool force) { ForceFlag().store(force ? 1 : 0); }

const char* SimdTargetName() {
  // Targets are ordered best first; the dispatcher picks the first one this CPU supports.
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  return targets.empty() ? "none" : hwy::TargetName(targets.front());
}

}  // namespace kvarn
