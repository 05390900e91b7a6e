// Highway kernels of fused attention over one (layer, KV head) and a range of cache blocks.
// Dispatched once per Attend call chunk (attention.cc). Every block kind has one scoring and one
// value-accumulation routine; the online softmax between them is shared.
//
// Rows: the queries served together are the g = H/Hk heads of the KV head times the n_q queries
// of the chunk; row r = i * g + j (query i, head j of the group).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attention/attention_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention/attention_kernel.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "quant/ggml_blocks.h"

HWY_BEFORE_NAMESPACE();
namespace kvarn::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 8>;  // lengths (D >= 64, G % 8 == 0) are whole vectors
using D8 = hn::CappedTag<uint8_t, 16>;

// ------------------------------------------------------------------ code unpacking
// Unpacks n codes of `bits` bits (little-endian within bytes) into one byte each.
void UnpackCodes(const uint8_t* HWY_RESTRICT in, int bits, size_t n, uint8_t* HWY_RESTRICT out) {
#if HWY_TARGET != HWY_SCALAR
  const D8 d8;
  if (hn::Lanes(d8) == 16 && bits == 4 && n % 32 == 0) {
    const hn::Repartition<uint16_t, D8> d16;
    (void)d16;
    const auto mask = hn::Set(d8, 0x0F);
    for (size_t i = 0; i < n / 32; ++i) {
      const auto v = hn::LoadU(d8, in + 16 * i);
      const auto lo = hn::And(v, mask);
      const auto hi = hn::ShiftRight<4>(v);
      hn::StoreU(hn::InterleaveLower(d8, lo, hi), d8, out + 32 * i);
      hn::StoreU(hn::InterleaveUpper(d8, lo, hi), d8, out + 32 * i + 16);
    }
    return;
  }
  if (hn::Lanes(d8) == 16 && bits == 2 && n % 64 == 0) {
    const hn::Repartition<uint16_t, D8> d16;
    const auto mask = hn::Set(d8, 0x03);
    for (size_t i = 0; i < n / 64; ++i) {
      const auto v = hn::LoadU(d8, in + 16 * i);
      const auto c0 = hn::And(v, mask);
      const auto c1 = hn::And(hn::ShiftRight<2>(v), mask);
      const auto c2 = hn::And(hn::ShiftRight<4>(v), mask);
      const auto c3 = hn::ShiftRight<6>(v);
      const auto a_lo = hn::BitCast(d16, hn::InterleaveLower(d8, c0, c1));
      const auto b_lo = hn::BitCast(d16, hn::InterleaveLower(d8, c2, c3));
      const auto a_hi = hn::BitCast(d16, hn::InterleaveUpper(d8, c0, c1));
      const auto b_hi = hn::BitCast(d16, hn::InterleaveUpper(d8, c2, c3));
      hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d16, a_lo, b_lo)), d8, out + 64 * i);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d16, a_lo, b_lo)), d8, out + 64 * i + 16);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d16, a_hi, b_hi)), d8, out + 64 * i + 32);
      hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d16, a_hi, b_hi)), d8, out + 64 * i + 48);
    }
    return;
  }
#endif
  const size_t per = size_t(8 / bits);
  const unsigned m = (1u << bits) - 1;
  for (size_t i = 0; i < n; ++i)
    out[i] = uint8_t((in[i / per] >> ((i % per) * size_t(bits))) & m);
}

HWY_INLINE hn::Vec<DF> LoadCodes(DF df, const uint8_t* p) {
  const hn::Rebind<uint8_t, DF> d8;
  const hn::Rebind<int32_t, DF> di;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, p)));
}

HWY_INLINE hn::Vec<DF> LoadF16(DF df, const f16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// ------------------------------------------------------------------ scores
// S[r][t] = sum_d u[r][d] * C[d][t] for t < G (channel-major float/codes C, t vectorized).
// Used for records (C = K codes, u = rotated query times a_K).
void ScoresChannelMajor(const uint8_t* codes /*[D][G]*/, size_t D, size_t G, const float* u,
                        size_t rows, float* S /*[rows][G]*/) {
  const DF df;
  const size_t N = hn::Lanes(df);
  std::fill(S, S + rows * G, 0.0f);
  for (size_t d = 0; d < D; ++d) {
    const uint8_t* c = codes + d * G;
    for (size_t t = 0; t < G; t += N) {
      const auto cv = LoadCodes(df, c + t);
      for (size_t r = 0; r < rows; ++r) {
        float* s = S + r * G + t;
        hn::StoreU(hn::MulAdd(hn::Set(df, u[r * D + d]), cv, hn::LoadU(df, s)), df, s);
      }
    }
  }
}

// S[r][t] = sum_d q[r][d] * K[t][d] for token-major float K [len][D] (dot per token).
void ScoresTokenMajor(const float* K, size_t len, size_t D, const float* q, size_t rows,
                      float* S /*[rows][G]*/, size_t G) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t t = 0; t < len; ++t) {
    const float* k = K + t * D;
    for (size_t r = 0; r < rows; ++r) {
      const float* qr = q + r * D;
      auto a0 = hn::Zero(df), a1 = hn::Zero(df);
      for (size_t d = 0; d < D; d += 2 * N) {
        a0 = hn::MulAdd(hn::LoadU(df, qr + d), hn::LoadU(df, k + d), a0);
        a1 = hn::MulAdd(hn::LoadU(df, qr + d + N), hn::LoadU(df, k + d + N), a1);
      }
      S[r * G + t] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
    }
  }
}

// acc[r][d] += sum_t w[r][t] * V[t][d] over t < len, V token-major float [len][D].
void AccumTokenMajor(const float* V, size_t len, size_t D, const float* w, size_t G, size_t rows,
                     float* acc) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t t = 0; t < len; ++t) {
    const float* v = V + t * D;
    for (size_t r = 0; r < rows; ++r) {
      const float p = w[r * G + t];
      if (p == 0.0f) continue;  // masked (causal) or underflowed
      const auto pv = hn::Set(df, p);
      float* a = acc + r * D;
      for (size_t d = 0; d < D; d += N)
        hn::StoreU(hn::MulAdd(pv, hn::LoadU(df, v + d), hn::LoadU(df, a + d)), df, a + d);
    }
  }
}

// Same with V as codes [len][D] (one byte each).
void AccumCodes(const uint8_t* V, size_t len, size_t D, const float* w, size_t G, size_t rows,
                float* acc) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (size_t t = 0; t < len; ++t) {
    const uint8_t* v = V + t * D;
    for (size_t d = 0; d < D; d += N) {
      const auto cv = LoadCodes(df, v + d);
      for (size_t r = 0; r < rows; ++r) {
        const float p = w[r * G + t];
        float* a = acc + r * D + d;
        hn::StoreU(hn::MulAdd(hn::Set(df, p), cv, hn::LoadU(df, a)), df, a);
      }
    }
  }
}

// ------------------------------------------------------------------ the block loop
void AttendRangeT(const KernelArgs& a) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t D = size_t(a.D), G = size_t(a.G), rows = size_t(a.rows);
  const SeqView& view = *a.view;
  KernelScratch& sc = *a.scratch;
  sc.S.resize(rows * G);
  sc.W.resize(rows * G);
  sc.u.resize(rows * D);
  sc.acc2.resize(rows * D);
  sc.kf.resize(G * D);
  sc.vf.resize(G * D);
  sc.kc.resize(G * D);
  sc.vc.resize(G * D);
  float* S = sc.S.data();
  float* W = sc.W.data();

  for (int b = a.block_begin; b < a.block_end; ++b) {
    const size_t len = size_t(view.block_len(b));
    const int base = b * a.G;
    // Visible tokens of this block per query (causal): rows of query i see positions
    // <= pos0 + i.
    const BlockRef& blk = view.block(b);
    bool record = false;
    const uint8_t* rec = nullptr;
    // ---- scores into S[r][t], scaled by the softmax scale
    if (blk.kind == BlockKind::kRecord) {
      record = true;
      rec = view.Record(b, a.layer, a.kv_head);
      const TileRecordLayout& L = a.layout;
      const f16_t* ak = reinterpret_cast<const f16_t*>(rec + L.a_k());
      const f16_t* zk = reinterpret_cast<const f16_t*>(rec + L.z_k());
      const f16_t* tk = reinterpret_cast<const f16_t*>(rec + L.tau_k());
      // u[r][d] = q[r][d] * a_K[d]; c0[r] = q[r] . z_K
      sc.c0.resize(rows);
      float* c0 = sc.c0.data();
      for (size_t r = 0; r < rows; ++r) {
        const float* q = a.q + r * D;
        auto z = hn::Zero(df);
        for (size_t d = 0; d < D; d += N) {
          const auto qv = hn::LoadU(df, q + d);
          hn::StoreU(hn::Mul(qv, LoadF16(df, ak + d)), df, sc.u.data() + r * D + d);
          z = hn::MulAdd(qv, LoadF16(df, zk + d), z);
        }
        c0[r] = hn::GetLane(hn::SumOfLanes(df, z));
      }
      for (size_t d = 0; d < D; ++d)
        UnpackCodes(rec + L.k_codes() + d * L.k_row_bytes(), a.k_bits, G, sc.kc.data() + d * G);
      ScoresChannelMajor(sc.kc.data(), D, G, sc.u.data(), rows, S);
      for (size_t r = 0; r < rows; ++r) {
        const auto c = hn::Set(df, c0[r]);
        const auto lam = hn::Set(df, a.scale);
        for (size_t t = 0; t < G; t += N) {
          float* s = S + r * G + t;
          hn::StoreU(hn::Mul(hn::Mul(hn::Add(hn::LoadU(df, s), c), LoadF16(df, tk + t)), lam), df,
                     s);
        }
      }
    } else {
      // fp16 block or per-token rows: dequantize K and V to floats [len][D].
      if (blk.kind == BlockKind::kF16) {
        const f16_t* ks = view.F16K(b, a.layer, a.kv_head);
        const f16_t* vs = view.F16V(b, a.layer, a.kv_head);
        for (size_t i = 0; i < len * D; i += N) {
          hn::StoreU(LoadF16(df, ks + i), df, sc.kf.data() + i);
          hn::StoreU(LoadF16(df, vs + i), df, sc.vf.data() + i);
        }
      } else {
        const uint8_t* kr = view.RowsK(b, a.layer, a.kv_head);
        const uint8_t* vr = view.RowsV(b, a.layer, a.kv_head);
        for (size_t t = 0; t < len; ++t) {
          DequantizeRow(a.kind, kr + t * a.row_bytes, a.D, sc.kf.data() + t * D);
          DequantizeRow(a.kind, vr + t * a.row_bytes, a.D, sc.vf.data() + t * D);
        }
      }
      ScoresTokenMajor(sc.kf.data(), len, D, a.q, rows, S, G);
      for (size_t i = 0; i < rows * G; ++i) S[i] *= a.scale;
    }

    // ---- online softmax per row over its visible tokens
    for (size_t r = 0; r < rows; ++r) {
      const int qpos = a.pos0 + int(r) / a.group;
      const size_t vis = size_t(std::clamp(qpos - base + 1, 0, int(len)));
      float* s = S + r * G;
      float* w = W + r * G;
      std::fill(w, w + G, 0.0f);
      if (vis == 0) continue;
      float mx = s[0];
      for (size_t t = 1; t < vis; ++t) mx = std::max(mx, s[t]);
      SoftmaxRow& st = a.states[r];
      const float m_new = std::max(st.m, mx);
      const float alpha = std::exp(st.m - m_new);  // 0 when st.m == -inf
      float* acc = a.acc + r * D;
      if (alpha != 1.0f) {
        const auto av = hn::Set(df, alpha);
        for (size_t d = 0; d < D; d += N)
          hn::StoreU(hn::Mul(av, hn::LoadU(df, acc + d)), df, acc + d);
        st.l *= alpha;
      }
      const auto mv = hn::Set(df, m_new);
      auto lsum = hn::Zero(df);
      size_t t = 0;
      for (; t + N <= vis; t += N) {
        const auto p = hn::Exp(df, hn::Sub(hn::LoadU(df, s + t), mv));
        hn::StoreU(p, df, w + t);
        lsum = hn::Add(lsum, p);
      }
      float l = hn::GetLane(hn::SumOfLanes(df, lsum));
      for (; t < vis; ++t) {
        w[t] = std::exp(s[t] - m_new);
        l += w[t];
      }
      st.l += l;
      st.m = m_new;
    }

    // ---- values
    if (record) {
      const TileRecordLayout& L = a.layout;
      const f16_t* av = reinterpret_cast<const f16_t*>(rec + L.a_v());
      const f16_t* zv = reinterpret_cast<const f16_t*>(rec + L.z_v());
      const f16_t* gv = reinterpret_cast<const f16_t*>(rec + L.gamma_v());
      // acc[r][d] += gamma[d] * (sum_t (w[r][t] a_V[t]) code[t][d] + sum_t w[r][t] z_V[t])
      sc.zsum.resize(rows);
      float* zsum = sc.zsum.data();
      for (size_t r = 0; r < rows; ++r) {
        float* w = W + r * G;
        auto z = hn::Zero(df);
        for (size_t t = 0; t < G; t += N) {
          const auto wv = hn::LoadU(df, w + t);
          z = hn::MulAdd(wv, LoadF16(df, zv + t), z);
          hn::StoreU(hn::Mul(wv, LoadF16(df, av + t)), df, w + t);
        }
        zsum[r] = hn::GetLane(hn::SumOfLanes(df, z));
      }
      for (size_t t = 0; t < G; ++t)
        UnpackCodes(rec + L.v_codes() + t * L.v_row_bytes(), a.v_bits, D, sc.vc.data() + t * D);
      std::fill(sc.acc2.begin(), sc.acc2.end(), 0.0f);
      AccumCodes(sc.vc.data(), len, D, W, G, rows, sc.acc2.data());
      for (size_t r = 0; r < rows; ++r) {
        float* acc = a.acc + r * D;
        const float* a2 = sc.acc2.data() + r * D;
        const auto zs = hn::Set(df, zsum[r]);
        for (size_t d = 0; d < D; d += N) {
          const auto inner = hn::Add(hn::LoadU(df, a2 + d), zs);
          hn::StoreU(hn::MulAdd(LoadF16(df, gv + d), inner, hn::LoadU(df, acc + d)), df, acc + d);
        }
      }
    } else {
      AccumTokenMajor(sc.vf.data(), len, D, W, G, rows, a.acc);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn::attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn::attn {
HWY_EXPORT(AttendRangeT);
void AttendRange(const KernelArgs& a) { HWY_DYNAMIC_DISPATCH(AttendRangeT)(a); }
}  // namespace kvarn::attn
#endif
