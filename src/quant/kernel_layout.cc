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

// Codes are moved through an unpacked byte array (one code per byte): the loops over the
// kernel blocks then need no division per code. One tile costs a few times G*D byte moves.
namespace {

// Unpacks the reference K field to codes[d][t] and V to codes[t][d] (one byte each).
void UnpackRef(const TileRecordLayout& L, const uint8_t* rec, uint8_t* kc, uint8_t* vc) {
  const unsigned mk = (1u << L.k_bits) - 1u, mv = (1u << L.v_bits) - 1u;
  const uint8_t* k = rec + L.k_codes();
  for (size_t i = 0; i < size_t(L.head_dim) * size_t(L.group); ++i)
    kc[i] = uint8_t((k[i * size_t(L.k_bits) / 8] >> ((i * size_t(L.k_bits)) % 8)) & mk);
  const uint8_t* v = rec + L.v_codes();
  for (size_t i = 0; i < size_t(L.head_dim) * size_t(L.group); ++i)
    vc[i] = uint8_t((v[i * size_t(L.v_bits) / 8] >> ((i * size_t(L.v_bits)) % 8)) & mv);
}

void PackRef(const TileRecordLayout& L, const uint8_t* kc, const uint8_t* vc, uint8_t* rec) {
  uint8_t* k = rec + L.k_codes();
  std::memset(k, 0, L.k_codes_bytes());
  for (size_t i = 0; i < size_t(L.head_dim) * size_t(L.group); ++i)
    k[i * size_t(L.k_bits) / 8] |= uint8_t(kc[i] << ((i * size_t(L.k_bits)) % 8));
  uint8_t* v = rec + L.v_codes();
  std::memset(v, 0, L.v_codes_bytes());
  for (size_t i = 0; i < size_t(L.head_dim) * size_t(L.group); ++i)
    v[i * size_t(L.v_bits) / 8] |= uint8_t(vc[i] << ((i * size_t(L.v_bits)) % 8));
}

// Visits every code position of the kernel layout in storage order:
// f(byte offset in the field, bit shift, row, column) with (row, column) = (d, t) for K
// and (t, d) for V, i.e. the index into the unpacked arrays of UnpackRef.
template <class F>
void ForEachKernelK(const TileRecordLayout& L, F&& f) {
  const int b = L.k_bits, per = 8 / b, C = 4 * per, D = L.head_dim, G = L.group;
  size_t byte = 0;
  for (int tg = 0; tg < G / 16; ++tg)
    for (int cg = 0; cg < D / C; ++cg, byte += 64)
      for (int j = 0; j < 16; ++j)
        for (int i = 0; i < 4; ++i)
          for (int k = 0; k < per; ++k)
            f(byte + size_t(4 * j + i), b * k, cg * C + 4 * k + i, tg * 16 + j);
}
template <class F>
void ForEachKernelV(const TileRecordLayout& L, F&& f) {
  const int b = L.v_bits, per = 8 / b, T = 4 * per, D = L.head_dim, G = L.group;
  size_t byte = 0;
  for (int tg = 0; tg < G / T; ++tg)
    for (int cg = 0; cg < D / 16; ++cg, byte += 64)
      for (int j = 0; j < 16; ++j)
        for (int i = 0; i < 4; ++i)
          for (int k = 0; k < per; ++k)
            f(byte + size_t(4 * j + i), b * k, tg * T + 4 * k + i, cg * 16 + j);
}

struct Unpacked {
  std::vector<uint8_t> k, v;  // [D][G], [G][D]
  explicit Unpacked(const TileRecordLayout& L)
      : k(size_t(L.head_dim) * size_t(L.group)), v(k.size()) {}
};

}  // namespace

void ToKernelLayout(const TileRecordLayout& L, const uint8_t* rec, uint8_t* out) {
  Unpacked u(L);
  UnpackRef(L, rec, u.k.data(), u.v.data());
  std::memcpy(out, rec, L.bytes());  // scale fields; code fields are rewritten below
  const size_t G = size_t(L.group), D = size_t(L.head_dim);
  uint8_t* k = out + L.k_codes();
  std::memset(k, 0, L.k_codes_bytes());
  ForEachKernelK(L, [&](size_t byte, int shift, int d, int t) {
    k[byte] |= uint8_t(u.k[size_t(d) * G + size_t(t)] << shift);
  });
  uint8_t* v = out + L.v_codes();
  std::memset(v, 0, L.v_codes_bytes());
  ForEachKernelV(L, [&](size_t byte, int shift, int t, int d) {
    v[byte] |= uint8_t(u.v[size_t(t) * D + size_t(d)] << shift);
  });
}

void FromKernelLayout(const TileRecordLayout& L, const uint8_t* kernel, uint8_t* out) {
  Unpacked u(L);
  UnpackRecordCodes(L, kernel, /*kernel=*/true, u.k.data(), u.v.data());
  std::memcpy(out, kernel, L.bytes());
  PackRef(L, u.k.data(), u.v.data(), out);
}

void UnpackRecordCodes(const TileRecordLayout& L, const uint8_t* rec, bool kernel, uint8_t* kc,
                       uint8_t* vc) {
  if (!kernel) return UnpackRef(L, rec, kc, vc);
  const size_t G = size_t(L.group), D = size_t(L.head_dim);
  const unsigned mk = (1u << L.k_bits) - 1u, mv = (1u << L.v_bits) - 1u;
  const uint8_t* k = rec + L.k_codes();
  ForEachKernelK(L, [&](size_t byte, int shift, int d, int t) {
    kc[size_t(d) * G + size_t(t)] = uint8_t((k[byte] >> shift) & mk);
  });
  const uint8_t* v = rec + L.v_codes();
  ForEachKernelV(L, [&](size_t byte, int shift, int t, int d) {
    vc[size_t(t) * D + size_t(d)] = uint8_t((v[byte] >> shift) & mv);
  });
}

unsigned KernelKCode(const TileRecordLayout& L, const uint8_t* kernel, int d, int t) {
  return GetBits(kernel, KernK(L, d, t), L.k_bits);
}
unsigned KernelVCode(const TileRecordLayout& L, const uint8_t* kernel, int t, int d) {
  return GetBits(kernel, KernV(L, t, d), L.v_bits);
}

}  // namespace kvarn
