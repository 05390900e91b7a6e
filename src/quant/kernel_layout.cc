// Conversion between the reference record layout and the kernel layout (kernel_layout.h).
// Readable scalar code: it runs once per committed tile, next to an encode that costs far more.
#include "quant/kernel_layout.h"

#include <cstring>
#include <vector>

namespace kvarn {
namespace {

struct BitPos {
  size_t byte;
  int shift;
};

unsigned GetBits(const uint8_t* p, BitPos at, int bits) {
  return (unsigned(p[at.byte]) >> at.shift) & ((1u << bits) - 1u);
}

// Kernel positions (kernel_layout.h).
BitPos KernK(const TileRecordLayout& L, int d, int t) {
  const int per = 8 / L.k_bits, C = 4 * per, D = L.head_dim;
  const int tg = t / 16, j = t % 16, cg = d / C, dd = d % C;
  const size_t block = size_t(tg) * size_t(D / C) + size_t(cg);
  return {L.k_codes() + 64 * block + size_t(4 * j + dd % 4), L.k_bits * (dd / 4)};
}
BitPos KernV(const TileRecordLayout& L, int t, int d) {
  const int per = 8 / L.v_bits, T = 4 * per, D = L.head_dim;
  const int tg = t / T, tt = t % T, cg = d / 16, j = d % 16;
  const size_t block = size_t(tg) * size_t(D / 16) + size_t(cg);
  return {L.v_codes() + 64 * block + size_t(4 * j + tt % 4), L.v_bits * (tt / 4)};
}

bool BitsOk(int b) { return b == 2 || b == 4 || b == 8; }

}  // namespace

bool KernelLayoutSupported(const TileRecordLayout& L) {
  return BitsOk(L.k_bits) && BitsOk(L.v_bits) && L.group > 0 && L.group % 16 == 0 &&
         L.head_dim > 0 && L.head_dim % 16 == 0;
}

// Codes are moved through an unpacked byte array (one code per byte); each packed byte is
// assembled in a register and written once. Bits are compile-time constants so the inner loops
// have no division. One D=128 tile costs a few microseconds.
namespace {

template <int b>
void UnpackBytes(const uint8_t* in, size_t n, uint8_t* out) {  // n codes, little-endian fields
  constexpr int per = 8 / b;
  constexpr unsigned mask = (1u << b) - 1u;
  for (size_t i = 0; i < n / per; ++i)
    for (int k = 0; k < per; ++k) out[i * per + size_t(k)] = uint8_t((in[i] >> (b * k)) & mask);
}
template <int b>
void PackBytes(const uint8_t* in, size_t n, uint8_t* out) {
  constexpr int per = 8 / b;
  for (size_t i = 0; i < n / per; ++i) {
    unsigned x = 0;
    for (int k = 0; k < per; ++k) x |= unsigned(in[i * per + size_t(k)]) << (b * k);
    out[i] = uint8_t(x);
  }
}

// The kernel K field <-> codes kc [D][G]; to_kernel selects the direction.
template <int b, bool to_kernel>
void KernelK(const TileRecordLayout& L, uint8_t* kc, uint8_t* field) {
  constexpr int per = 8 / b, C = 4 * per;
  constexpr unsigned mask = (1u << b) - 1u;
  const size_t D = size_t(L.head_dim), G = size_t(L.group);
  uint8_t* out = field;
  for (size_t tg = 0; tg < G / 16; ++tg) {
    for (size_t cg = 0; cg < D / C; ++cg) {
      for (size_t j = 0; j < 16; ++j) {
        for (size_t i = 0; i < 4; ++i, ++out) {
          uint8_t* col = kc + (cg * C + i) * G + tg * 16 + j;  // channel cg*C + i, token
          if constexpr (to_kernel) {
            unsigned x = 0;
            for (int k = 0; k < per; ++k) x |= unsigned(col[size_t(4 * k) * G]) << (b * k);
            *out = uint8_t(x);
          } else {
            for (int k = 0; k < per; ++k)
              col[size_t(4 * k) * G] = uint8_t((*out >> (b * k)) & mask);
          }
        }
      }
    }
  }
}

// The kernel V field <-> codes vc [G][D].
template <int b, bool to_kernel>
void KernelV(const TileRecordLayout& L, uint8_t* vc, uint8_t* field) {
  constexpr int per = 8 / b, T = 4 * per;
  constexpr unsigned mask = (1u << b) - 1u;
  const size_t D = size_t(L.head_dim), G = size_t(L.group);
  uint8_t* out = field;
  for (size_t tg = 0; tg < G / T; ++tg) {
    for (size_t cg = 0; cg < D / 16; ++cg) {
      for (size_t j = 0; j < 16; ++j) {
        for (size_t i = 0; i < 4; ++i, ++out) {
          uint8_t* row = vc + (tg * T + i) * D + cg * 16 + j;  // token tg*T + i, channel
          if constexpr (to_kernel) {
            unsigned x = 0;
            for (int k = 0; k < per; ++k) x |= unsigned(row[size_t(4 * k) * D]) << (b * k);
            *out = uint8_t(x);
          } else {
            for (int k = 0; k < per; ++k)
              row[size_t(4 * k) * D] = uint8_t((*out >> (b * k)) & mask);
          }
        }
      }
    }
  }
}

template <bool to_kernel>
void KernelK(const TileRecordLayout& L, uint8_t* kc, uint8_t* field) {
  switch (L.k_bits) {
    case 2:
      return KernelK<2, to_kernel>(L, kc, field);
    case 4:
      return KernelK<4, to_kernel>(L, kc, field);
    default:
      return KernelK<8, to_kernel>(L, kc, field);
  }
}
template <bool to_kernel>
void KernelV(const TileRecordLayout& L, uint8_t* vc, uint8_t* field) {
  switch (L.v_bits) {
    case 2:
      return KernelV<2, to_kernel>(L, vc, field);
    case 4:
      return KernelV<4, to_kernel>(L, vc, field);
    default:
      return KernelV<8, to_kernel>(L, vc, field);
  }
}

void Unpack(int bits, const uint8_t* in, size_t n, uint8_t* out) {
  switch (bits) {
    case 2:
      return UnpackBytes<2>(in, n, out);
    case 4:
      return UnpackBytes<4>(in, n, out);
    default:
      return UnpackBytes<8>(in, n, out);
  }
}
void Pack(int bits, const uint8_t* in, size_t n, uint8_t* out) {
  switch (bits) {
    case 2:
      return PackBytes<2>(in, n, out);
    case 4:
      return PackBytes<4>(in, n, out);
    default:
      return PackBytes<8>(in, n, out);
  }
}

// Per-thread scratch of n bytes (two buffers: K and V codes).
uint8_t* Scratch(int which, size_t n) {
  thread_local std::vector<uint8_t> buf[2];
  if (buf[which].size() < n) buf[which].resize(n);
  return buf[which].data();
}

}  // namespace

void ToKernelLayout(const TileRecordLayout& L, const uint8_t* rec, uint8_t* out) {
  const size_t n = size_t(L.head_dim) * size_t(L.group);
  uint8_t* kc = Scratch(0, n);
  uint8_t* vc = Scratch(1, n);
  Unpack(L.k_bits, rec + L.k_codes(), n, kc);
  Unpack(L.v_bits, rec + L.v_codes(), n, vc);
  std::memcpy(out, rec, L.bytes());  // scale fields; code fields are rewritten below
  KernelK<true>(L, kc, out + L.k_codes());
  KernelV<true>(L, vc, out + L.v_codes());
}

void FromKernelLayout(const TileRecordLayout& L, const uint8_t* kernel, uint8_t* out) {
  const size_t n = size_t(L.head_dim) * size_t(L.group);
  uint8_t* kc = Scratch(0, n);
  uint8_t* vc = Scratch(1, n);
  UnpackRecordCodes(L, kernel, /*kernel=*/true, kc, vc);
  std::memcpy(out, kernel, L.bytes());
  Pack(L.k_bits, kc, n, out + L.k_codes());
  Pack(L.v_bits, vc, n, out + L.v_codes());
}

void UnpackRecordCodes(const TileRecordLayout& L, const uint8_t* rec, bool kernel, uint8_t* kc,
                       uint8_t* vc) {
  const size_t n = size_t(L.head_dim) * size_t(L.group);
  if (!kernel) {
    Unpack(L.k_bits, rec + L.k_codes(), n, kc);
    Unpack(L.v_bits, rec + L.v_codes(), n, vc);
    return;
  }
  // The unpacking direction only reads the field.
  KernelK<false>(L, kc, const_cast<uint8_t*>(rec + L.k_codes()));
  KernelV<false>(L, vc, const_cast<uint8_t*>(rec + L.v_codes()));
}

unsigned KernelKCode(const TileRecordLayout& L, const uint8_t* kernel, int d, int t) {
  return GetBits(kernel, KernK(L, d, t), L.k_bits);
}
unsigned KernelVCode(const TileRecordLayout& L, const uint8_t* kernel, int t, int d) {
  return GetBits(kernel, KernV(L, t, d), L.v_bits);
}

}  // namespace kvarn
