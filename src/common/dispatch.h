// The one place where kvarn chooses its SIMD level.
//
// Highway compiles every kernel file for several x86 targets and dispatches at run time to the
// best one this CPU supports. The attention kernels add AVX3_DL (AVX-512 with VNNI, through
// intrinsics with target attributes where Highway 1.0.3 has no op). A level can be forced
// downwards, so that the AVX2 and portable paths are tested and timed on an AVX-512 machine:
//   KVARN_SIMD=<level> (read once at start-up) or SetSimdLevel(), levels
//     best       the CPU's best (default)
//     avx3_dl    AVX-512 + VNNI (alias avx512vnni)
//     avx3       AVX-512 F/BW/DQ/VL without VNNI (alias avx512)
//     avx2       AVX2 + FMA + F16C (what Zen 1-3 run)
//     sse4, ssse3
//     emu128     Highway's portable 128-bit emulation
//     scalar     Highway's one-lane target (where compiled)
//     reference  the readable scalar reference kernels (same as KVARN_FORCE_REFERENCE=1)
// Forcing a level the CPU lacks is an error; forcing a level restricts every Highway kernel in
// the process, not only attention.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvarn {

bool ForceReference();
void SetForceReference(bool force);

// Sets the level for the whole process (see above). Not to be called while kernels run on
// other threads.
Status SetSimdLevel(std::string_view level);
// The levels this CPU can run, best first, "reference" last.
std::vector<std::string> SupportedSimdLevels();
// The level in effect: the Highway target the attention kernels dispatch to (e.g. "AVX3_DL",
// "AVX2"), or "reference".
std::string SimdTargetName();

}  // namespace kvarn
