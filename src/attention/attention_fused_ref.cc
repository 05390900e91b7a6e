// AttendFusedReference: the arithmetic of the fused read path (Attend) as plain scalar loops, one
// query row at a time, blocks in order. Tile records go through the integer-domain path of
// int_path.h (int8 folded query, uint8 folded probabilities, int32 sums over the codes, read
// from the reference layout); fp16 blocks and per-token rows are attended in float. Each block
// contributes a local softmax (its max, sum and weighted values) merged into the row's running
// state, as the kernels do.
//
// It is the readable statement of what the SIMD kernels compute and what KVARN_FORCE_REFERENCE
// runs. The exact oracle (dequantize everything, attend in double) is AttendReference.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "attention/int_path.h"
#include "quant/ggml_blocks.h"
#include "quant/kernel_layout.h"

namespace kvarn {
namespace {

// One block's contribution to one row: local max, sum of exp(s - max), weighted values [D].
struct Partial {
  float m = -INFINITY;
  float l = 0.0f;
  std::vector<float> o;
};

// Running state of one row, merged block by block.
struct Running {
  float m = -INFINITY;
  float l = 0.0f;
  std::vector<float> acc;

  void Merge(const Partial& p) {
    if (p.m == -INFINITY) return;
    const float m_new = std::max(m, p.m);
    const float alpha = std::exp(m - m_new), beta = std::exp(p.m - m_new);
    for (size_t d = 0; d < acc.size(); ++d) acc[d] = alpha * acc[d] + beta * p.o[d];
    l = alpha * l + beta * p.l;
    m = m_new;
  }
};

// Float attention of query q (cache frame) over vis token-major K/V rows [len][D].
Partial FloatBlock(const float* q, const std::vector<float>& k, const std::vector<float>& v,
                   int vis, int D, float scale) {
  Partial p;
  p.o.assign(size_t(D), 0.0f);
  if (vis == 0) return p;
  std::vector<float> s(static_cast<size_t>(vis));
  for (int t = 0; t < vis; ++t) {
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += q[d] * k[size_t(t) * D + d];
    s[size_t(t)] = dot * scale;
    p.m = std::max(p.m, s[size_t(t)]);
  }
  for (int t = 0; t < vis; ++t) {
    const float e = std::exp(s[size_t(t)] - p.m);
    p.l += e;
    for (int d = 0; d < D; ++d) p.o[size_t(d)] += e * v[size_t(t) * D + d];
  }
  return p;
}

// Integer-domain attention of query q (rotated frame) over the first vis tokens of one tile
// record in the reference layout (int_path.h).
Partial RecordBlock(const float* q, const uint8_t* rec, const TileRecordLayout& L, int vis,
                    float scale) {
  const int D = L.head_dim, G = L.group;
  Partial p;
  p.o.assign(size_t(D), 0.0f);
  if (vis == 0) return p;
  std::vector<uint8_t> kc(size_t(D) * G), vc(size_t(G) * D);
  UnpackRecordCodes(L, rec, /*kernel=*/false, kc.data(), vc.data());
  const auto field = [&](size_t off, int i) {
    return F16ToF32(reinterpret_cast<const f16_t*>(rec + off)[i]);
  };

  // Folded query u = q * a_K, quantized to int8 with one scale; c0 = q . z_K plus the
  // rounding residuals times the middle code.
  std::vector<float> u(static_cast<size_t>(D));
  float amax = 0.0f, c0 = 0.0f;
  for (int d = 0; d < D; ++d) {
    u[size_t(d)] = q[d] * field(L.a_k(), d);
    amax = std::max(amax, std::fabs(u[size_t(d)]));
    c0 += q[d] * field(L.z_k(), d);
  }
  const float qinv = amax > 0.0f ? attn::kQueryLevels / amax : 0.0f;
  const float qstep = amax / attn::kQueryLevels;
  const bool two = attn::IntParts(L.v_bits) == 2;
  std::vector<int> q8(static_cast<size_t>(D)), q8lo(static_cast<size_t>(D), 0);
  float qres = 0.0f;
  for (int d = 0; d < D; ++d) {
    q8[size_t(d)] = int(std::nearbyint(u[size_t(d)] * qinv));
    float rem = u[size_t(d)] - qstep * float(q8[size_t(d)]);
    if (two) {  // second part in units of s_q / 254
      q8lo[size_t(d)] = int(std::nearbyint(rem * qinv * attn::kQueryLoLevels));
      rem -= qstep / attn::kQueryLoLevels * float(q8lo[size_t(d)]);
    }
    qres += rem;
  }
  c0 += attn::CodeMid(L.k_bits) * qres;

  // Scores from int32 dot products; local softmax.
  std::vector<float> s(static_cast<size_t>(vis));
  for (int t = 0; t < vis; ++t) {
    int32_t dot = 0, dot_lo = 0;
    for (int d = 0; d < D; ++d) {
      dot += q8[size_t(d)] * int32_t(kc[size_t(d) * G + t]);
      dot_lo += q8lo[size_t(d)] * int32_t(kc[size_t(d) * G + t]);
    }
    const float dq = float(dot) + float(dot_lo) / attn::kQueryLoLevels;
    s[size_t(t)] = scale * field(L.tau_k(), t) * (qstep * dq + c0);
    p.m = std::max(p.m, s[size_t(t)]);
  }
  // Folded probabilities w = p * a_V, quantized to uint8 with one scale; zsum = sum p * z_V
  // plus the rounding residuals times the middle code.
  std::vector<float> w(static_cast<size_t>(vis));
  float wmax = 0.0f, zsum = 0.0f;
  for (int t = 0; t < vis; ++t) {
    const float e = std::exp(s[size_t(t)] - p.m);
    p.l += e;
    zsum += e * field(L.z_v(), t);
    w[size_t(t)] = e * field(L.a_v(), t);
    wmax = std::max(wmax, w[size_t(t)]);
  }
  const float pinv = wmax > 0.0f ? attn::kWeightLevels / wmax : 0.0f;
  const float pstep = wmax / attn::kWeightLevels;
  std::vector<int> hi(static_cast<size_t>(vis)), lo(static_cast<size_t>(vis), 0);
  float pres = 0.0f;
  for (int t = 0; t < vis; ++t) {
    const float x = w[size_t(t)];
    if (!two) {  // one part: round(w / s_p)
      hi[size_t(t)] = std::min(int(std::nearbyint(x * pinv)), 255);
      pres += x - pstep * float(hi[size_t(t)]);
    } else {  // two parts: floor(w / s_p), then the remainder in units of s_p / 255
      hi[size_t(t)] = int(std::floor(x * pinv));
      const float rem = x - pstep * float(hi[size_t(t)]);
      lo[size_t(t)] = int(std::nearbyint(std::max(rem * pinv * attn::kWeightLevels, 0.0f)));
      pres += rem - pstep / attn::kWeightLevels * float(lo[size_t(t)]);
    }
  }
  zsum += attn::CodeMid(L.v_bits) * pres;

  // Values from int32 sums: o_d = gamma_d * (s_p * (sum_t hi_t codeV[t][d] + sum_t lo_t
  // codeV[t][d] / 255) + zsum).
  for (int d = 0; d < D; ++d) {
    int32_t sum_hi = 0, sum_lo = 0;
    for (int t = 0; t < vis; ++t) {
      sum_hi += hi[size_t(t)] * int32_t(vc[size_t(t) * D + d]);
      sum_lo += lo[size_t(t)] * int32_t(vc[size_t(t) * D + d]);
    }
    p.o[size_t(d)] = field(L.gamma_v(), d) *
                     (pstep * (float(sum_hi) + float(sum_lo) / attn::kWeightLevels) + zsum);
  }
  return p;
}

}  // namespace

Status AttendFusedReference(const KvCache& cache, const SeqView& view, int layer,
                            const AttentionParams& p, const float* q, int n_q, int pos0,
                            float* out) {
  const KvCacheConfig& cfg = cache.config();
  const int D = cfg.head_dim, Hk = cfg.n_kv_heads, H = p.n_heads, G = view.block_tokens();
  if (H < 1 || H % Hk != 0) return InvalidArgument("attention: heads not a multiple of KV heads");
  if (n_q < 1 || pos0 < 0 || pos0 + n_q > view.length())
    return OutOfRange("attention: queries up to position " + std::to_string(pos0 + n_q - 1) +
                      " beyond the " + std::to_string(view.length()) + " cached tokens");
  const TileRecordLayout L{D, cfg.codec.group, cfg.codec.k_bits, cfg.codec.v_bits};
  std::vector<uint8_t> rec(cache.RecordBytes());
  std::vector<float> k(size_t(G) * D), v(size_t(G) * D), qr(static_cast<size_t>(D));
  for (int kh = 0; kh < Hk; ++kh) {
    for (int h = kh * (H / Hk); h < (kh + 1) * (H / Hk); ++h) {
      for (int i = 0; i < n_q; ++i) {
        std::copy_n(q + (size_t(i) * H + h) * D, D, qr.begin());
        if (cache.rotated()) FwhtBatch(qr.data(), 1, D);
        Running run;
        run.acc.assign(size_t(D), 0.0f);
        for (int b = 0; b * G <= pos0 + i; ++b) {
          const int vis = std::min(view.block_len(b), pos0 + i + 1 - b * G);
          switch (view.block(b).kind) {
            case BlockKind::kRecord:
              view.ReferenceRecord(b, layer, kh, rec.data());
              run.Merge(RecordBlock(qr.data(), rec.data(), L, vis, p.scale));
              break;
            case BlockKind::kF16: {
              const f16_t* ks = view.F16K(b, layer, kh);
              const f16_t* vs = view.F16V(b, layer, kh);
              for (size_t e = 0; e < size_t(vis) * D; ++e) {
                k[e] = F16ToF32(ks[e]);
                v[e] = F16ToF32(vs[e]);
              }
              run.Merge(FloatBlock(qr.data(), k, v, vis, D, p.scale));
              break;
            }
            case BlockKind::kRows: {
              const size_t rb = cache.RowBytes();
              for (int t = 0; t < vis; ++t) {
                DequantizeRowRef(cfg.codec.kind, view.RowsK(b, layer, kh) + size_t(t) * rb, D,
                                 k.data() + size_t(t) * D);
                DequantizeRowRef(cfg.codec.kind, view.RowsV(b, layer, kh) + size_t(t) * rb, D,
                                 v.data() + size_t(t) * D);
              }
              run.Merge(FloatBlock(qr.data(), k, v, vis, D, p.scale));
              break;
            }
          }
        }
        float* o = out + (size_t(i) * H + h) * D;
        const float inv = run.l > 0.0f ? 1.0f / run.l : 0.0f;
        for (int d = 0; d < D; ++d) o[d] = run.acc[size_t(d)] * inv;
        if (cache.rotated()) FwhtBatch(o, 1, D);
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvarn
