// Byte layout of one KVarN record: one (block of G tokens, KV head) pair, K and V together.
// This is the reference implementation's record (spec §5.4), byte for byte; docs/format.md
// describes it in prose. Everything here is constexpr so tests and static_asserts pin it.
#pragma once

#include <cstddef>

namespace kvarn {

struct TileRecordLayout {
  int head_dim = 0;  // D
  int group = 0;     // G, tokens per tile
  int k_bits = 0;    // 2, 4 or 8
  int v_bits = 0;

  // K codes: [D channels][G tokens], each row packed along tokens.
  constexpr size_t k_row_bytes() const { return size_t(group) * k_bits / 8; }
  constexpr size_t k_codes_bytes() const { return size_t(head_dim) * k_row_bytes(); }
  // V codes: [G tokens][D channels], each row packed along channels.
  constexpr size_t v_row_bytes() const { return size_t(head_dim) * v_bits / 8; }
  constexpr size_t v_codes_bytes() const { return size_t(group) * v_row_bytes(); }

  // Offsets (bytes) of each field, in record order. All scale fields are fp16.
  constexpr size_t k_codes() const { return 0; }
  constexpr size_t a_k() const { return k_codes() + k_codes_bytes(); }    // [D] per-channel step
  constexpr size_t z_k() const { return a_k() + 2 * size_t(head_dim); }   // [D] per-channel zero
  constexpr size_t tau_k() const { return z_k() + 2 * size_t(head_dim); } // [G] per-token scale
  constexpr size_t v_codes() const { return tau_k() + 2 * size_t(group); }
  constexpr size_t gamma_v() const { return v_codes() + v_codes_bytes(); } // [D] per-channel
  constexpr size_t a_v() const { return gamma_v() + 2 * size_t(head_dim); } // [G] per-token step
  constexpr size_t z_v() const { return a_v() + 2 * size_t(group); }       // [G] per-token zero
  constexpr size_t bytes() const { return z_v() + 2 * size_t(group); }

  // The reference pads a whole cache's per-head stride (spec §5.4): to 8 bytes for D <= 128;
  // for D >= 256 the per-token share is rounded up to a power of two. kvarn's own cache does
  // not pad (it has one head_dim per model); this is for byte-compatible interchange only.
  constexpr size_t reference_stride() const {
    if (head_dim <= 128) return (bytes() + 7) / 8 * 8;
    size_t per_token = (bytes() + group - 1) / group;
    size_t p = 1;
    while (p < per_token) p *= 2;
    return p * size_t(group);
  }
};

static_assert(TileRecordLayout{128, 128, 4, 2}.bytes() == 13824);
static_assert(TileRecordLayout{128, 128, 4, 4}.bytes() == 17920);
static_assert(TileRecordLayout{128, 64, 4, 2}.bytes() == 7296);
static_assert(TileRecordLayout{128, 128, 2, 2}.bytes() == 9728);
static_assert(TileRecordLayout{128, 128, 4, 2}.v_codes() == 8960);
static_assert(TileRecordLayout{128, 128, 4, 4}.gamma_v() == 17152);
static_assert(TileRecordLayout{64, 128, 4, 2}.bytes() == 57 * 128);
static_assert(TileRecordLayout{256, 128, 4, 2}.reference_stride() == 32768);

}  // namespace kvarn
