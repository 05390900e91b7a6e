// The switch that forces readable scalar references instead of SIMD kernels.
// Set by the environment variable KVARN_FORCE_REFERENCE=1 (read once) or by SetForceReference
// (the C API's kvarn_set_force_reference). Benchmarks and tests use it to time and compare both.
#pragma once

namespace kvarn {

bool ForceReference();
void SetForceReference(bool force);

// Name of the Highway target the SIMD kernels dispatch to on this CPU (e.g. "AVX2").
const char* SimdTargetName();

}  // namespace kvarn
