#include "common/dispatch.h"

// The attention kernels are compiled with AVX3_DL; so is this file, so that the name below is
// the target they dispatch to.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

struct Level {
  const char* name;
  const char* alias;
  int64_t target;  // 0: best / reference
};
constexpr Level kLevels[] = {
    {"best", "", 0},
    {"avx3_dl", "avx512vnni", HWY_AVX3_DL},
    {"avx3", "avx512", HWY_AVX3},
    {"avx2", "", HWY_AVX2},
    {"sse4", "", HWY_SSE4},
    {"ssse3", "", HWY_SSSE3},
    {"emu128", "", HWY_EMU128},
    {"scalar", "", HWY_SCALAR},
    {"reference", "", 0},
};

// The CPU's own targets that kernels are compiled for (without any forcing).
int64_t CpuTargets() {
  static const int64_t targets = [] {
    hwy::DisableTargets(0);
    return hwy::SupportedTargets() & HWY_TARGETS;
  }();
  return targets;
}

// Applies KVARN_SIMD once, before main (a bad value is reported and ignored: there is no
// caller to return an error to; the CLI's --simd flag reports it as an error).
const bool kEnvApplied = [] {
  const char* env = std::getenv("KVARN_SIMD");
  if (env == nullptr || env[0] == '\0') return false;
  Status st = SetSimdLevel(env);
  if (!st.ok()) std::fprintf(stderr, "kvarn: %s; using the best level\n", st.message().c_str());
  return st.ok();
}();

}  // namespace

bool ForceReference() { return ForceFlag().load(std::memory_order_relaxed) != 0; }
void SetForceReference(bool force) { ForceFlag().store(force ? 1 : 0); }

Status SetSimdLevel(std::string_view name) {
  for (const Level& l : kLevels) {
    if (name != l.name && (l.alias[0] == '\0' || name != l.alias)) continue;
    const std::string n(l.name);
    if (n == "reference") {
      hwy::DisableTargets(0);
      SetForceReference(true);
      return Status::Ok();
    }
    if (l.target != 0 && (CpuTargets() & l.target) == 0)
      return Unsupported("SIMD level " + n + ": not supported by this CPU (it runs " + [] {
        std::string s;
        for (const std::string& x : SupportedSimdLevels()) s += " " + x;
        return s;
      }() + ")");
    SetForceReference(false);
    // Highway orders targets best first by ascending bit: disabling every lower bit leaves the
    // requested target as the best one.
    hwy::DisableTargets(l.target == 0 ? 0 : (l.target - 1));
    return Status::Ok();
  }
  return InvalidArgument("SIMD level '" + std::string(name) +
                         "' unknown (best, avx3_dl, avx3, avx2, sse4, ssse3, emu128, scalar, "
                         "reference)");
}

std::vector<std::string> SupportedSimdLevels() {
  std::vector<std::string> out;
  for (const Level& l : kLevels)
    if (l.target != 0 && (CpuTargets() & l.target) != 0) out.push_back(l.name);
  out.push_back("reference");
  return out;
}

std::string SimdTargetName() {
  (void)kEnvApplied;
  if (ForceReference()) return "reference";
  const int64_t t = hwy::SupportedTargets() & HWY_TARGETS;
  if (t == 0) return "none";
  return hwy::TargetName(t & -t);
}

}  // namespace kvarn
