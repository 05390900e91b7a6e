// Highway kernels of fused attention over one (layer, KV head) and a range of cache blocks.
// Dispatched once per work item (attention.cc). Three kinds of blocks:
//   tile records  the integer-domain path of int_path.h: int8 folded query, uint8 folded
//                 probabilities, int32 dot products over the packed codes (int_kernels-inl.h);
//   fp16 blocks   (sink, tail, the f16 cache) and float rows: float kernels
//                 (float_kernels-inl.h) with an online softmax over the block;
//   quantized rows (q8_0, q4_0, q4_1) dequantized a few tokens at a time into float rows.
//
// Rows: the queries served together are the g = H/Hk heads of the KV head times the n_q queries
// of the chunk; row r = i * g + j (query i, head j of the group).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention/attention_simd.cc"
// The integer kernels have an AVX-512 VNNI variant (Highway's AVX3_DL target).
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif
#include "hwy/foreach_target.h"  // IWYU pragma: keep

// The -inl.h kernels below must follow foreach_target.h (it re-includes this file per target).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention/attention_kernel.h"
#include "attention/float_kernels-inl.h"
#include "attention/int_kernels-inl.h"
#include "attention/int_path.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "quant/ggml_blocks.h"
#include "quant/kernel_layout.h"

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
namespace kvarn::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Tokens per dequantized chunk of per-token quantized rows (q8_0, q4_0, q4_1): small enough to
// stay in L1 between dequantization and use.
constexpr size_t kRowChunk = 16;

// ------------------------------------------------------------------ fp16 blocks and rows
// Per-token rows (f32, f16, q8_0, q4_0, q4_1) of block b: scores (values == false) or value
// accumulation (values == true). Plain fp16 / f32 rows are read in place; quantized rows are
// dequantized kRowChunk tokens at a time into sc.kf, which stays in L1 until used.
void TokenRows(const KernelArgs& a, KernelScratch& sc, int b, size_t len, bool values, float* S,
               const float* W) {
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const SeqView& view = *a.view;
  const uint8_t* data =
      values ? view.RowsV(b, a.layer, a.kv_head) : view.RowsK(b, a.layer, a.kv_head);
  const auto run = [&](auto* elems, size_t n, size_t t0) HWY_ATTR {
    if (values) {
      AccumTokenMajor(elems, n, D, W + t0, G, rows, a.acc);
    } else {
      ScoresTokenMajor(elems, n, D, a.q, rows, a.scale, S + t0, G);
    }
  };
  if (a.kind == CodecKind::kF16 && a.row_bytes == D * sizeof(f16_t)) {
    run(reinterpret_cast<const f16_t*>(data), len, 0);
  } else if (a.kind == CodecKind::kF32 && a.row_bytes == D * sizeof(float)) {
    run(reinterpret_cast<const float*>(data), len, 0);
  } else {
    for (size_t t0 = 0; t0 < len; t0 += kRowChunk) {
      const size_t n = std::min(kRowChunk, len - t0);
      // Consecutive rows form one longer row (whole 32-value blocks per row).
      DequantizeRow(a.kind, data + t0 * a.row_bytes, int(n * D), sc.kf.data());
      run(static_cast<const float*>(sc.kf.data()), n, t0);
    }
  }
}

// Tokens of a block starting at position base that row r sees (causal).
HWY_INLINE size_t Visible(const KernelArgs& a, size_t r, int base, size_t len) {
  const int qpos = a.pos0 + int(r) / a.group;
  return size_t(std::clamp(qpos - base + 1, 0, int(len)));
}

// Online softmax of every row over its visible tokens of one float block: updates the running
// max and denominator, rescales acc, writes the weights to W (zero where masked).
void SoftmaxBlock(const KernelArgs& a, int base, size_t len, const float* S, float* W) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  for (size_t r = 0; r < rows; ++r) {
    const size_t vis = Visible(a, r, base, len);
    const float* s = S + r * G;
    float* w = W + r * G;
    std::fill(w + vis, w + G, 0.0f);
    if (vis == 0) continue;
    size_t t = 0;
    auto mxv = hn::Set(df, -INFINITY);
    for (; t + N <= vis; t += N) mxv = hn::Max(mxv, hn::LoadU(df, s + t));
    float mx = hn::GetLane(hn::MaxOfLanes(df, mxv));
    for (; t < vis; ++t) mx = std::max(mx, s[t]);
    SoftmaxRow& st = a.states[r];
    const float m_new = std::max(st.m, mx);
    const float alpha = std::exp(st.m - m_new);  // 0 when st.m == -inf
    float* acc = a.acc + r * D;
    if (alpha != 1.0f) {
      const auto alv = hn::Set(df, alpha);
      size_t d = 0;
      for (; d + N <= D; d += N) hn::StoreU(hn::Mul(alv, hn::LoadU(df, acc + d)), df, acc + d);
      for (; d < D; ++d) acc[d] *= alpha;
      st.l *= alpha;
    }
    const auto mv = hn::Set(df, m_new);
    auto lsum = hn::Zero(df);
    for (t = 0; t + N <= vis; t += N) {
      const auto p = ExpNonPositive(df, hn::Sub(hn::LoadU(df, s + t), mv));
      lsum = hn::Add(lsum, p);
      hn::StoreU(p, df, w + t);
    }
    float l = hn::GetLane(hn::SumOfLanes(df, lsum));
    for (; t < vis; ++t) l += (w[t] = std::exp(s[t] - m_new));
    st.l += l;
    st.m = m_new;
  }
}

// ------------------------------------------------------------------ tile records
// int_path.h, step by step.

// Sums of the lanes of four vectors: out[0..3].
HWY_INLINE void SumsOf4(DF df, VF v0, VF v1, VF v2, VF v3, float* out) {
#if HWY_TARGET == HWY_SCALAR
  (void)df;
  out[0] = hn::GetLane(v0);
  out[1] = hn::GetLane(v1);
  out[2] = hn::GetLane(v2);
  out[3] = hn::GetLane(v3);
#else
  StoreSums4(df, v0, v1, v2, v3, hn::Set(df, 1.0f), out);
#endif
}

// out[r] = sum of the lanes of the vector stored at v + r * N, for r < n: four rows per
// horizontal reduction (the per-row reductions of a tile are deferred to here).
void SumRows(const float* v, size_t n, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t r = 0;
  for (; r + 4 <= n; r += 4)
    SumsOf4(df, hn::LoadU(df, v + r * N), hn::LoadU(df, v + (r + 1) * N),
            hn::LoadU(df, v + (r + 2) * N), hn::LoadU(df, v + (r + 3) * N), out + r);
  for (; r < n; ++r) out[r] = hn::GetLane(hn::SumOfLanes(df, hn::LoadU(df, v + r * N)));
}

// n fp16 values -> floats (n a multiple of the lane count, or a scalar tail).
void F16ToFloats(const f16_t* in, size_t n, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadF16(df, in + i), df, out + i);
  for (; i < n; ++i) out[i] = F16ToF32(in[i]);
}

// One record's scale fields as floats (converted once per tile, read by every row), and its
// code fields.
struct TileFields {
  const uint8_t* k_codes;
  const uint8_t* v_codes;
  const float *a_k, *z_k, *tau, *gamma, *a_v, *z_v;
};

TileFields LoadTile(const KernelArgs& a, KernelScratch& sc, const uint8_t* rec) {
  const TileRecordLayout& L = a.layout;
  const size_t D = size_t(a.D), G = size_t(a.G);
  const auto f16 = [&](size_t off) { return reinterpret_cast<const f16_t*>(rec + off); };
  float* t = sc.tile.data();  // [3 D + 3 G]
  TileFields f{rec + L.k_codes(), rec + L.v_codes(), t, t + D, t + 2 * D, t + 2 * D + G,
               t + 3 * D + G,     t + 3 * D + 2 * G};
  // The record keeps a_K, z_K, tau_K (and gamma_V, a_V, z_V) next to each other.
  F16ToFloats(f16(L.a_k()), 2 * D + G, t);
  F16ToFloats(f16(L.gamma_v()), D + 2 * G, t + 2 * D + G);
  return f;
}

// Rounds v (|v| <= 255) to the nearest integer, ties to even: returns the rounded value as a
// float and its low byte (the integer, two's complement) in bytes.
template <class D8>
HWY_INLINE VF RoundToBytes(DF df, VF v, D8 d8, uint8_t* bytes) {
  const hn::RebindToUnsigned<DF> du;
  const VF t = hn::Add(v, hn::Set(df, kRoundMagic));
#if HWY_TARGET <= HWY_AVX3
  // vpmovdb. (Highway 1.0.3's TruncateTo to bytes is wrong on AVX3_DL: it permutes 32-bit
  // lanes with a byte index table.)
  (void)d8;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes), _mm512_cvtepi32_epi8(hn::BitCast(du, t).raw));
#else
  hn::StoreU(hn::TruncateTo(d8, hn::BitCast(du, t)), d8, bytes);
#endif
  return hn::Sub(t, hn::Set(df, kRoundMagic));
}

// Folded, quantized queries of one tile: q8 [rows][D], sq, c0 [rows].
void PrepareQueries(const KernelArgs& a, KernelScratch& sc, const TileFields& f) {
  const DF df;
  const hn::Rebind<uint8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), rows = size_t(a.rows);
  const float mid = CodeMid(a.k_bits);
  const int parts = IntParts(a.v_bits);
  const float* HWY_RESTRICT ak = f.a_k;
  const float* HWY_RESTRICT zk = f.z_k;
  float* HWY_RESTRICT u = sc.S.data();  // [D] temporary: S is rewritten by the scores afterwards
  float* HWY_RESTRICT red = sc.red.data();  // [2][rows][N] lane sums of z and the residuals
  for (size_t r = 0; r < rows; ++r) {
    const float* HWY_RESTRICT q = a.q + r * D;
    auto mx = hn::Zero(df);
    auto z = hn::Zero(df);
    for (size_t d = 0; d < D; d += N) {
      const auto qv = hn::LoadU(df, q + d);
      const auto uv = hn::Mul(qv, hn::LoadU(df, ak + d));
      hn::StoreU(uv, df, u + d);
      mx = hn::Max(mx, hn::Abs(uv));
      z = hn::MulAdd(qv, hn::LoadU(df, zk + d), z);
    }
    const float amax = hn::GetLane(hn::MaxOfLanes(df, mx));
    const float inv = amax > 0.0f ? kQueryLevels / amax : 0.0f;
    const float step = amax / kQueryLevels;
    const auto invv = hn::Set(df, inv), stepv = hn::Set(df, step);
    auto e = hn::Zero(df);
    uint8_t* q8 = reinterpret_cast<uint8_t*>(sc.q8.data() + r * D);
    if (parts == 1) {
      for (size_t d = 0; d < D; d += N) {
        const auto uv = hn::LoadU(df, u + d);
        const auto rq = RoundToBytes(df, hn::Mul(uv, invv), d8, q8 + d);
        e = hn::Add(e, hn::NegMulAdd(rq, stepv, uv));  // u - step * q8
      }
    } else {
      uint8_t* lo = q8 + rows * D;
      const auto inv2 = hn::Set(df, inv * kQueryLoLevels),
                 step2 = hn::Set(df, step / kQueryLoLevels);
      for (size_t d = 0; d < D; d += N) {
        const auto uv = hn::LoadU(df, u + d);
        const auto rem = hn::NegMulAdd(RoundToBytes(df, hn::Mul(uv, invv), d8, q8 + d), stepv, uv);
        const auto rl = RoundToBytes(df, hn::Mul(rem, inv2), d8, lo + d);
        e = hn::Add(e, hn::NegMulAdd(rl, step2, rem));
      }
    }
    hn::StoreU(z, df, red + r * N);
    hn::StoreU(e, df, red + (rows + r) * N);
    sc.sq[r] = step;
  }
  float* sums = sc.red_out.data();  // [2][rows]
  SumRows(red, 2 * rows, sums);
  for (size_t r = 0; r < rows; ++r) sc.c0[r] = sums[r] + mid * sums[rows + r];
}

// Scalar dot products for geometries without SIMD kernels (8-bit codes, records in the
// reference layout): codes unpacked to bytes first.
void ScoreTileScalar(const KernelArgs& a, KernelScratch& sc, const TileFields& f,
                     const uint8_t* rec) {
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  UnpackRecordCodes(a.layout, rec, a.kernel_layout, sc.kc.data(), sc.vc.data());
  const bool two = IntParts(a.v_bits) == 2;
  for (size_t r = 0; r < rows; ++r) {
    const int8_t* q8 = sc.q8.data() + r * D;
    const int8_t* lo = q8 + rows * D;
    float mx = -INFINITY;
    for (size_t t = 0; t < G; ++t) {
      int32_t dot = 0, dot_lo = 0;
      for (size_t d = 0; d < D; ++d) dot += int32_t(q8[d]) * int32_t(sc.kc[d * G + t]);
      if (two)
        for (size_t d = 0; d < D; ++d) dot_lo += int32_t(lo[d]) * int32_t(sc.kc[d * G + t]);
      const float dq = two ? float(dot_lo) * (1.0f / kQueryLoLevels) + float(dot) : float(dot);
      const float s = a.scale * f.tau[t] * (sc.sq[r] * dq + sc.c0[r]);
      sc.S[r * G + t] = s;
      mx = std::max(mx, s);
    }
    sc.tm[r] = mx;
  }
}
void ValueTileScalar(const KernelArgs& a, KernelScratch& sc) {  // after ScoreTileScalar
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  for (size_t part = 0; part < size_t(IntParts(a.v_bits)); ++part) {
    for (size_t r = 0; r < rows; ++r) {
      const uint8_t* p8 = sc.p8.data() + (part * rows + r) * G;
      for (size_t d = 0; d < D; ++d) {
        int32_t s = 0;
        for (size_t t = 0; t < G; ++t) s += int32_t(p8[t]) * int32_t(sc.vc[t * D + d]);
        sc.acc_i[(part * rows + r) * D + d] = s;
      }
    }
  }
}

// Local softmax of one tile per row and the quantized folded probabilities: tm, tl, p8, sp,
// zsum (int_path.h). On entry tm holds each row's largest score over all G tokens, which is
// its maximum when the row sees the whole tile (always, for records: they hold tokens of
// earlier steps). Masked tokens get p8 = 0; a row that sees nothing gets tm = -inf.
void TileSoftmax(const KernelArgs& a, KernelScratch& sc, const TileFields& f, int base,
                 size_t len) {
  const DF df;
  const hn::Rebind<uint8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  const size_t G = size_t(a.G), rows = size_t(a.rows);
  const float mid = CodeMid(a.v_bits);
  const int parts = IntParts(a.v_bits);
  const float* HWY_RESTRICT av = f.a_v;
  const float* HWY_RESTRICT zv = f.z_v;
  float* HWY_RESTRICT w = sc.W.data();  // [G] temporary per row
  // Lane sums of l, z and the residuals, [3][rows][N], reduced for all rows at the end; the
  // scalar tails (tokens past the last whole vector) in tail [3][rows].
  float* HWY_RESTRICT red = sc.red.data();
  float* HWY_RESTRICT tail = sc.red_out.data() + 3 * rows;
  // Every row sees the whole block when the first query does (queries are in position order).
  const bool all_visible = Visible(a, 0, base, len) == G;
  for (size_t r = 0; r < rows; ++r) {
    const size_t vis = all_visible ? G : Visible(a, r, base, len);
    uint8_t* HWY_RESTRICT p8 = sc.p8.data() + r * G;
    if (vis < G) {
      std::memset(p8 + vis, 0, G - vis);
      if (parts == 2) std::memset(p8 + rows * G + vis, 0, G - vis);
    }
    float l = 0.0f, z = 0.0f, es = 0.0f;
    auto lsum = hn::Zero(df), zs = hn::Zero(df), e = hn::Zero(df);
    if (vis == 0) {
      sc.tm[r] = -INFINITY;
      sc.sp[r] = 0.0f;
    } else {
      const float* HWY_RESTRICT s = sc.S.data() + r * G;
      if (vis < G) sc.tm[r] = *std::max_element(s, s + vis);
      const float mx = sc.tm[r];
      const auto mv = hn::Set(df, mx);
      auto wmax = hn::Zero(df);
      size_t t = 0;
      for (; t + N <= vis; t += N) {
        const auto p = ExpNonPositive(df, hn::Sub(hn::LoadU(df, s + t), mv));
        lsum = hn::Add(lsum, p);
        zs = hn::MulAdd(p, hn::LoadU(df, zv + t), zs);
        const auto wv = hn::Mul(p, hn::LoadU(df, av + t));
        wmax = hn::Max(wmax, wv);
        hn::StoreU(wv, df, w + t);
      }
      float wm = hn::GetLane(hn::MaxOfLanes(df, wmax));
      for (; t < vis; ++t) {
        const float p = std::exp(s[t] - mx);
        l += p;
        z += p * zv[t];
        w[t] = p * av[t];
        wm = std::max(wm, w[t]);
      }
      // a_V >= 0 (a step times a positive scale), so w >= 0 and max w is its largest magnitude;
      // w * inv <= 255 (up to rounding), so the rounded bytes need no clamp.
      const float inv = wm > 0.0f ? kWeightLevels / wm : 0.0f;
      const float step = wm / kWeightLevels;
      const auto invv = hn::Set(df, inv), stepv = hn::Set(df, step);
      if (parts == 1) {
        for (t = 0; t + N <= vis; t += N) {
          const auto wv = hn::LoadU(df, w + t);
          const auto rw = RoundToBytes(df, hn::Mul(wv, invv), d8, p8 + t);
          e = hn::Add(e, hn::NegMulAdd(rw, stepv, wv));
        }
        for (; t < vis; ++t) {
          const int qi = std::min(int(std::nearbyint(w[t] * inv)), 255);
          es += w[t] - step * float(qi);
          p8[t] = uint8_t(qi);
        }
      } else {
        // hi = floor(w / step), lo = round(remainder * 255 / step) (>= 0 up to rounding).
        uint8_t* HWY_RESTRICT lo = p8 + rows * G;
        const auto inv2 = hn::Set(df, inv * kWeightLevels);
        const auto step2 = hn::Set(df, step / kWeightLevels);
        for (t = 0; t + N <= vis; t += N) {
          const auto wv = hn::LoadU(df, w + t);
          const auto hv = RoundToBytes(df, hn::Floor(hn::Mul(wv, invv)), d8, p8 + t);
          const auto rem = hn::NegMulAdd(hv, stepv, wv);
          const auto lv = RoundToBytes(df, hn::Max(hn::Mul(rem, inv2), hn::Zero(df)), d8, lo + t);
          e = hn::Add(e, hn::NegMulAdd(lv, step2, rem));
        }
        for (; t < vis; ++t) {
          const float hf = std::floor(w[t] * inv);
          const float rem = w[t] - step * hf;
          const float lf = std::nearbyint(std::max(rem * inv * kWeightLevels, 0.0f));
          es += rem - step / kWeightLevels * lf;
          p8[t] = uint8_t(hf);
          lo[t] = uint8_t(lf);
        }
      }
      sc.sp[r] = step;
    }
    hn::StoreU(lsum, df, red + r * N);
    hn::StoreU(zs, df, red + (rows + r) * N);
    hn::StoreU(e, df, red + (2 * rows + r) * N);
    tail[r] = l;
    tail[rows + r] = z;
    tail[2 * rows + r] = es;
  }
  float* sums = sc.red_out.data();  // [3][rows]
  SumRows(red, 3 * rows, sums);
  for (size_t r = 0; r < rows; ++r) {
    sc.tl[r] = sums[r] + tail[r];
    sc.zsum[r] = sums[rows + r] + tail[rows + r] + mid * (sums[2 * rows + r] + tail[2 * rows + r]);
  }
}

// Merges each row's tile (tm, tl, gamma * (sp * acc_i + zsum)) into its running state.
void MergeTile(const KernelArgs& a, KernelScratch& sc, const TileFields& f) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), rows = size_t(a.rows);
  const int parts = IntParts(a.v_bits);
  for (size_t r = 0; r < rows; ++r) {
    if (sc.tm[r] == -INFINITY) continue;  // the row sees no token of this tile
    SoftmaxRow& st = a.states[r];
    const float m_new = std::max(st.m, sc.tm[r]);
    const float alpha = std::exp(st.m - m_new);  // 0 when st.m == -inf
    const float beta = std::exp(sc.tm[r] - m_new);
    const auto av = hn::Set(df, alpha);
    const auto bs = hn::Set(df, beta * sc.sp[r]), bz = hn::Set(df, beta * sc.zsum[r]);
    float* acc = a.acc + r * D;
    const int32_t* ai = sc.acc_i.data() + r * D;
    if (parts == 1) {
      for (size_t d = 0; d < D; d += N) {
        const auto g = hn::LoadU(df, f.gamma + d);
        const auto t = hn::MulAdd(hn::ConvertTo(df, hn::LoadU(di, ai + d)), bs, bz);
        hn::StoreU(hn::MulAdd(g, t, hn::Mul(av, hn::LoadU(df, acc + d))), df, acc + d);
      }
    } else {
      const int32_t* al = ai + rows * D;
      const auto lo_scale = hn::Set(df, 1.0f / kWeightLevels);
      for (size_t d = 0; d < D; d += N) {
        const auto g = hn::LoadU(df, f.gamma + d);
        const auto sum = hn::MulAdd(hn::ConvertTo(df, hn::LoadU(di, al + d)), lo_scale,
                                    hn::ConvertTo(df, hn::LoadU(di, ai + d)));
        const auto t = hn::MulAdd(sum, bs, bz);
        hn::StoreU(hn::MulAdd(g, t, hn::Mul(av, hn::LoadU(df, acc + d))), df, acc + d);
      }
    }
    st.l = st.l * alpha + sc.tl[r] * beta;
    st.m = m_new;
  }
}

void RecordBlock(const KernelArgs& a, KernelScratch& sc, int b, size_t len) {
  const uint8_t* rec = a.view->Record(b, a.layer, a.kv_head);
  const TileFields f = LoadTile(a, sc, rec);
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const bool simd = a.kernel_layout && a.k_bits != 8 && a.v_bits != 8;
  PrepareQueries(a, sc, f);
  if (simd) {
    ScoreTile(a.k_bits, IntParts(a.v_bits), f.k_codes, D, G, sc.q8.data(), rows, sc.sq.data(),
              sc.c0.data(), f.tau, a.scale, sc.S.data(), G, sc.tm.data());
  } else {
    ScoreTileScalar(a, sc, f, rec);
  }
  TileSoftmax(a, sc, f, b * a.G, len);
  if (simd) {
    ValueTile(a.v_bits, IntParts(a.v_bits), f.v_codes, D, G, sc.p8.data(), rows, sc.acc_i.data());
  } else {
    ValueTileScalar(a, sc);
  }
  MergeTile(a, sc, f);
}

// ------------------------------------------------------------------ the block loop
void AttendRangeT(const KernelArgs& a) {
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const SeqView& view = *a.view;
  KernelScratch& sc = *a.scratch;
  sc.S.resize(std::max(rows * G, D));
  sc.W.resize(rows * G);
  sc.kf.resize(kRowChunk * D);
  sc.q8.resize(2 * rows * D);
  sc.sq.resize(rows);
  sc.c0.resize(rows);
  sc.p8.resize(2 * rows * G);
  sc.tm.resize(rows);
  sc.tl.resize(rows);
  sc.sp.resize(rows);
  sc.zsum.resize(rows);
  sc.acc_i.resize(2 * rows * D);
  sc.tile.resize(3 * D + 3 * G);
  sc.red.resize(3 * rows * hn::Lanes(DF()));
  sc.red_out.resize(6 * rows);
  if (!a.kernel_layout || a.k_bits == 8 || a.v_bits == 8) {
    sc.kc.resize(D * G);
    sc.vc.resize(D * G);
  }
  float* S = sc.S.data();
  float* W = sc.W.data();

  for (int b = a.block_begin; b < a.block_end; ++b) {
    const size_t len = size_t(view.block_len(b));
    // The next record of this (layer, head) lives in another page: the hardware prefetcher
    // does not follow the jump, and a tile starts by reading its scale fields, far into the
    // record. Fetching the next record during this one hides the memory latency (one tile of
    // work is about the time its bytes take to stream).
    // fp16 and row blocks: the first lines of the next block's K and V rows (the kernels
    // prefetch ahead within a block themselves).
    if (b + 1 < a.block_end) {
      const auto ahead = [](const void* p, size_t bytes) {
        for (size_t off = 0; off < bytes; off += 64)
          hwy::Prefetch(static_cast<const uint8_t*>(p) + off);
      };
      switch (view.block(b + 1).kind) {
        case BlockKind::kRecord:
          ahead(view.Record(b + 1, a.layer, a.kv_head), a.layout.bytes());
          break;
        case BlockKind::kF16:
          ahead(view.F16K(b + 1, a.layer, a.kv_head), 2048);
          ahead(view.F16V(b + 1, a.layer, a.kv_head), 2048);
          break;
        case BlockKind::kRows:
          ahead(view.RowsK(b + 1, a.layer, a.kv_head), 2048);
          ahead(view.RowsV(b + 1, a.layer, a.kv_head), 2048);
          break;
      }
    }
    switch (view.block(b).kind) {
      case BlockKind::kRecord:
        RecordBlock(a, sc, b, len);
        break;
      case BlockKind::kF16:
        ScoresTokenMajor(view.F16K(b, a.layer, a.kv_head), len, D, a.q, rows, a.scale, S, G);
        SoftmaxBlock(a, b * a.G, len, S, W);
        AccumTokenMajor(view.F16V(b, a.layer, a.kv_head), len, D, W, G, rows, a.acc);
        break;
      case BlockKind::kRows:
        TokenRows(a, sc, b, len, /*values=*/false, S, W);
        SoftmaxBlock(a, b * a.G, len, S, W);
        TokenRows(a, sc, b, len, /*values=*/true, S, W);
        break;
    }
  }
}

void ScoreTileForTestT(int bits, int parts, const uint8_t* kc, int D, int G, const int8_t* q8,
                       int rows, float* S) {
  const std::vector<float> one(size_t(rows), 1.0f), zero(size_t(rows), 0.0f);
  const std::vector<float> tau(size_t(G), 1.0f);
  std::vector<float> smax(static_cast<size_t>(rows));
  ScoreTile(bits, parts, kc, size_t(D), size_t(G), q8, size_t(rows), one.data(), zero.data(),
            tau.data(), 1.0f, S, size_t(G), smax.data());
}

void ValueTileForTestT(int bits, int parts, const uint8_t* vc, int D, int G, const uint8_t* p8,
                       int rows, int32_t* out) {
  ValueTile(bits, parts, vc, size_t(D), size_t(G), p8, size_t(rows), out);
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::attn
#if HWY_TARGET == HWY_AVX3_DL
#pragma GCC pop_options
#endif
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn::attn {
HWY_EXPORT(AttendRangeT);
HWY_EXPORT(ScoreTileForTestT);
HWY_EXPORT(ValueTileForTestT);
void AttendRange(const KernelArgs& a) { HWY_DYNAMIC_DISPATCH(AttendRangeT)(a); }
void ScoreTileForTest(int bits, int parts, const uint8_t* kc, int D, int G, const int8_t* q8,
                      int rows, float* S) {
  HWY_DYNAMIC_DISPATCH(ScoreTileForTestT)(bits, parts, kc, D, G, q8, rows, S);
}
void ValueTileForTest(int bits, int parts, const uint8_t* vc, int D, int G, const uint8_t* p8,
                      int rows, int32_t* out) {
  HWY_DYNAMIC_DISPATCH(ValueTileForTestT)(bits, parts, vc, D, G, p8, rows, out);
}
}  // namespace kvarn::attn
#endif
