// Reference attention: dequantize the whole context of one (layer, KV head) into floats in the
// model frame with the codec's own decoder, then attend with a plain two-pass softmax in T.
#include <cmath>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "quant/ggml_blocks.h"

namespace kvarn {
namespace {

// K and V of every token of (layer, head), model frame: [length][D] each.
Status GatherContext(const KvCache& cache, const SeqView& view, int layer, int head,
                     std::vector<float>* k, std::vector<float>* v) {
  const int D = cache.config().head_dim;
  const int G = view.block_tokens();
  const Codec& codec = cache.codec();
  k->assign(size_t(view.length()) * D, 0.0f);
  v->assign(size_t(view.length()) * D, 0.0f);
  std::vector<float> kb(size_t(G) * D), vb(size_t(G) * D);
  std::vector<uint8_t> rec(cache.RecordBytes());
  for (int b = 0; b < view.n_blocks(); ++b) {
    const int len = view.block_len(b);
    const size_t off = size_t(b) * G * D;
    switch (view.block(b).kind) {
      case BlockKind::kF16: {
        const f16_t* ks = view.F16K(b, layer, head);
        const f16_t* vs = view.F16V(b, layer, head);
        for (size_t i = 0; i < size_t(len) * D; ++i) {
          kb[i] = F16ToF32(ks[i]);
          vb[i] = F16ToF32(vs[i]);
        }
        if (cache.rotated()) {  // H is its own inverse
          FwhtBatch(kb.data(), len, D);
          FwhtBatch(vb.data(), len, D);
        }
        break;
      }
      case BlockKind::kRecord: {
        view.ReferenceRecord(b, layer, head, rec.data());
        KVARN_RETURN_IF_ERROR(
            codec.Decode(rec.data(), rec.size(), G, kb.data(), vb.data(), Frame::kModel));
        break;
      }
      case BlockKind::kRows: {
        const size_t rb = cache.RowBytes();
        for (int t = 0; t < len; ++t) {
          DequantizeRowRef(codec.spec().kind, view.RowsK(b, layer, head) + size_t(t) * rb, D,
                           kb.data() + size_t(t) * D);
          DequantizeRowRef(codec.spec().kind, view.RowsV(b, layer, head) + size_t(t) * rb, D,
                           vb.data() + size_t(t) * D);
        }
        break;
      }
    }
    std::copy(kb.begin(), kb.begin() + ptrdiff_t(len) * D, k->begin() + ptrdiff_t(off));
    std::copy(vb.begin(), vb.begin() + ptrdiff_t(len) * D, v->begin() + ptrdiff_t(off));
  }
  return Status::Ok();
}

}  // namespace

template <typename T>
Status AttendReference(const KvCache& cache, const SeqView& view, int layer,
                       const AttentionParams& p, const float* q, int n_q, int pos0, float* out) {
  const int D = cache.config().head_dim;
  const int Hk = cache.config().n_kv_heads;
  const int H = p.n_heads;
  if (H % Hk != 0) return InvalidArgument("attention: heads not a multiple of KV heads");
  if (pos0 + n_q > view.length())
    return OutOfRange("attention: queries up to position " + std::to_string(pos0 + n_q - 1) +
                      " beyond the " + std::to_string(view.length()) + " cached tokens");
  std::vector<float> k, v;
  std::vector<T> s(size_t(view.length()));
  for (int kh = 0; kh < Hk; ++kh) {
    KVARN_RETURN_IF_ERROR(GatherContext(cache, view, layer, kh, &k, &v));
    for (int h = kh * (H / Hk); h < (kh + 1) * (H / Hk); ++h) {
      for (int i = 0; i < n_q; ++i) {
        const float* qi = q + (size_t(i) * H + h) * D;
        const int n_keys = pos0 + i + 1;
        T mx = -INFINITY;
        for (int t = 0; t < n_keys; ++t) {
          T dot = 0;
          for (int d = 0; d < D; ++d) dot += T(qi[d]) * T(k[size_t(t) * D + d]);
          s[size_t(t)] = dot * T(p.scale);
          mx = std::max(mx, s[size_t(t)]);
        }
        T den = 0;
        for (int t = 0; t < n_keys; ++t) den += (s[size_t(t)] = std::exp(s[size_t(t)] - mx));
        float* o = out + (size_t(i) * H + h) * D;
        for (int d = 0; d < D; ++d) {
          T acc = 0;
          for (int t = 0; t < n_keys; ++t) acc += s[size_t(t)] * T(v[size_t(t) * D + d]);
          o[d] = float(acc / den);
        }
      }
    }
  }
  return Status::Ok();
}

template Status AttendReference<float>(const KvCache&, const SeqView&, int, const AttentionParams&,
                                       const float*, int, int, float*);
template Status AttendReference<double>(const KvCache&, const SeqView&, int, const AttentionParams&,
                                        const float*, int, int, float*);

}  // namespace kvarn
