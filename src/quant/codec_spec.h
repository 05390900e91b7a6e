// CodecSpec: which KV codec, with its parameters, parsed from a name.
//
// Tile codecs (the KVarN family) quantize a tile of G tokens per KV head into one record
// (record.h). They differ only in two switches, which is how the paper's ablations are built:
//   kvarn    = Hadamard rotation + variance normalization (VarN) + RTN
//   hadamard = rotation, no normalization        (the paper's QuaRot / "Hadamard" baseline)
//   varn     = normalization, no rotation        (the paper's ablation)
//   kivi     = neither: plain K-per-channel / V-per-token asymmetric RTN (KIVI)
// Per-token codecs quantize every token on its own, as llama.cpp's cache types do:
//   f32, f16, q8_0, q4_0, q4_1 (blocks of 32 channels, fp16 scales, llama.cpp arithmetic).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvarn {

enum class CodecKind { kF32, kF16, kQ8_0, kQ4_0, kQ4_1, kTile };

struct CodecSpec {
  CodecKind kind = CodecKind::kTile;
  // Tile codecs only.
  bool rotate = true;  // Hadamard rotation over head_dim
  bool varn = true;    // variance normalization (iters > 0 means nothing if false)
  int iters = 8;       // VarN iterations (spec default 8; 0 allowed)
  int k_bits = 4;
  int v_bits = 2;
  int group = 128;     // G, tokens per tile

  bool is_tile() const { return kind == CodecKind::kTile; }
  // Iterations actually run: 0 when normalization is off.
  int effective_iters() const { return varn ? iters : 0; }
  // Canonical name, e.g. "kvarn_k4v2_g128", "kivi_k2v2_g128", "kvarn_k4v2_g128_i16", "q8_0".
  std::string Name() const;
};

// Parses a codec name. Accepted forms:
//   presets: kvarn_k4v2_g128 (default), kvarn_k4v4_g128, kvarn_k2v2_g128, kvarn_k4v2_g64,
//            kvarn_k4v4_g64
//   family with free parameters: {kvarn,kivi,hadamard,varn}[_k<b>v<b>][_g<G>][_i<iters>]
//            (defaults: kvarn k4v2, the baselines k2v2 as in the paper; g128; i8)
//   per-token: f32, f16, q8_0, q4_0, q4_1
// Errors name the offending text.
Status ParseCodecSpec(std::string_view text, CodecSpec* out);

// Checks a spec against a head_dim: tile codecs need D in {64,128,256,512} (Hadamard size and
// the reference's range, plus 64 which the reference rejects; see docs/deviations.md), bits in
// {2,4,8}, G a positive multiple of 8 up to 1024; per-token block codecs need D % 32 == 0.
Status ValidateCodec(const CodecSpec& spec, int head_dim);

// Every preset and baseline name, for help texts and sweeps.
std::vector<std::string> KnownCodecNames();

}  // namespace kvarn
