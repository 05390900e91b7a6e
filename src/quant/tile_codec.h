// The KVarN tile codec's three stages, each with a fast (Highway) and a reference path.
//
//   PrepareTokens: x [n][D] model-frame floats -> rotated (if enabled) and rounded to fp16,
//                  which is what the fp16 tail/pool holds (spec §2.5, §3).
//   EncodeTile:    the fp16 pool of one tile (K and V [G][D]) -> one record: VarN (§4),
//                  RTN (§5.1), scale absorption (§5.2), packing (§5.3), layout (§5.4).
//   DecodeTile:    record -> K and V [G][D] floats in the stored (rotated) frame (§6.1).
//
// The fast paths dispatch to the best SIMD target once per call; KVARN_FORCE_REFERENCE (or
// SetForceReference) routes every call to the scalar reference in tile_ref.h.
#pragma once

#include <cstdint>
#include <vector>

#include "common/fp16.h"
#include "common/status.h"
#include "quant/codec.h"
#include "quant/record.h"

namespace kvarn {

struct TileShape {
  int head_dim = 128;  // D, a power of two in [64, 512]
  int group = 128;     // G
  int k_bits = 4;
  int v_bits = 2;
  int iters = 8;       // VarN iterations; 0 disables normalization
  bool rotate = true;  // Hadamard rotation

  TileRecordLayout layout() const { return {head_dim, group, k_bits, v_bits}; }
};

// Returns kNonFinite naming the token and channel if x holds NaN/Inf, or if a value would not
// fit in fp16 after rotation (|v| > 65504 would be stored as Inf).
Status PrepareTokens(const TileShape& shape, const float* x /*[n][D]*/, int n,
                     f16_t* out /*[n][D]*/);
void EncodeTile(const TileShape& shape, const f16_t* k /*[G][D]*/, const f16_t* v /*[G][D]*/,
                uint8_t* record, TileEncodeInfo* info);
void DecodeTile(const TileShape& shape, const uint8_t* record, float* k /*[G][D]*/,
                float* v /*[G][D]*/);
// Normalized FWHT of n vectors of length D in place (H is its own inverse).
void FwhtBatch(float* x /*[n][D]*/, int n, int D);

namespace ref {
Status PrepareTokensRef(const TileShape& shape, const float* x, int n, f16_t* out);
// Test hooks of the reference encoder: force the VarN iterate chosen for K and V, and read
// back the imbalance of every candidate.
struct RefControl {
  int k_iter = -1, v_iter = -1;  // -1: the best, as the spec says
  std::vector<double> k_imbalances, v_imbalances;  // out: [iters + 1]
};
// T = float (forced-reference path) or double (golden model in tests).
template <typename T>
void EncodeTileRef(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                   TileEncodeInfo* info, RefControl* control = nullptr);
void DecodeTileRef(const TileShape& shape, const uint8_t* record, float* k, float* v);
}  // namespace ref

namespace simd {
// Entry points of the Highway kernels (tile_simd.cc); callers go through the dispatchers above.
Status PrepareTokensSimd(const TileShape& shape, const float* x, int n, f16_t* out);
void EncodeTileSimd(const TileShape& shape, const f16_t* k, const f16_t* v, uint8_t* record,
                    TileEncodeInfo* info);
void DecodeTileSimd(const TileShape& shape, const uint8_t* record, float* k, float* v);
void FwhtBatchSimd(float* x, int n, int D);
}  // namespace simd

}  // namespace kvarn
