#include "weights/synthetic.h"

#include <cstring>

#include "common/check.h"
#include "common/fp16.h"
#include "weights/kquant_blocks.h"

namespace kvarn {
namespace {

// A finite fp16 of magnitude in [scale/2, 3*scale/2), with a random sign if `signed_ok`.
f16_t RandomScale(Rng& rng, float scale, bool signed_ok) {
  float v = scale * static_cast<float>(0.5 + rng.Uniform());
  if (signed_ok && (rng.Next() & 1) != 0) v = -v;
  return F32ToF16(v);
}

uint8_t RandomByte(Rng& rng) { return static_cast<uint8_t>(rng.Next() & 0xFF); }

template <typename Block>
void Put(const Block& b, int64_t i, uint8_t* out) {
  std::memcpy(out + static_cast<size_t>(i) * sizeof(Block), &b, sizeof(Block));
}

template <size_t kN>
void RandomBytes(Rng& rng, uint8_t (&bytes)[kN]) {
  for (uint8_t& v : bytes) v = RandomByte(rng);
}

}  // namespace

void FillRandomRow(GgmlType type, int64_t n, float scale, Rng& rng, uint8_t* out) {
  const GgmlTypeInfo* info = FindGgmlTypeInfo(type);
  KVARN_CHECK(info != nullptr && n % info->block_size == 0);
  const int64_t blocks = n / info->block_size;
  for (int64_t i = 0; i < blocks; ++i) {
    switch (type) {
      case GgmlType::kF32: {
        const float v = scale * static_cast<float>(rng.Normal());
        std::memcpy(out + 4 * i, &v, 4);
        break;
      }
      case GgmlType::kF16: {
        const f16_t v = F32ToF16(scale * static_cast<float>(rng.Normal()));
        std::memcpy(out + 2 * i, &v, 2);
        break;
      }
      case GgmlType::kBF16: {
        // Truncating an f32 to its top half gives a valid bf16 of about the same magnitude.
        const uint16_t v =
            static_cast<uint16_t>(FloatBits(scale * static_cast<float>(rng.Normal())) >> 16);
        std::memcpy(out + 2 * i, &v, 2);
        break;
      }
      case GgmlType::kQ8_0: {
        BlockQ8_0 b;
        b.d = RandomScale(rng, scale, true);
        for (int8_t& q : b.qs) q = static_cast<int8_t>(RandomByte(rng));
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ4_0: {
        BlockQ4_0 b;
        b.d = RandomScale(rng, scale, true);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ4_1: {
        BlockQ4_1 b;
        b.d = RandomScale(rng, scale, true);
        b.m = RandomScale(rng, 8 * scale, true);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ5_0: {
        BlockQ5_0 b;
        b.d = RandomScale(rng, scale, true);
        RandomBytes(rng, b.qh);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ5_1: {
        BlockQ5_1 b;
        b.d = RandomScale(rng, scale, true);
        b.m = RandomScale(rng, 16 * scale, true);
        RandomBytes(rng, b.qh);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ4_K: {
        // d and dmin multiply 6-bit scales and mins (up to 63), hence the smaller super-scales.
        BlockQ4_K b;
        b.d = RandomScale(rng, scale / 32, true);
        b.dmin = RandomScale(rng, scale / 4, true);
        RandomBytes(rng, b.scales);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ5_K: {
        BlockQ5_K b;
        b.d = RandomScale(rng, scale / 32, true);
        b.dmin = RandomScale(rng, scale / 2, true);
        RandomBytes(rng, b.scales);
        RandomBytes(rng, b.qh);
        RandomBytes(rng, b.qs);
        Put(b, i, out);
        break;
      }
      case GgmlType::kQ6_K: {
        BlockQ6_K b;
        RandomBytes(rng, b.ql);
        RandomBytes(rng, b.qh);
        for (int8_t& s : b.scales) s = static_cast<int8_t>(RandomByte(rng));
        b.d = RandomScale(rng, scale / 64, true);
        Put(b, i, out);
        break;
      }
    }
  }
}

}  // namespace kvarn
