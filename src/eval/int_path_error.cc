#include "eval/int_path_error.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "attention/attention.h"

namespace kvarn::eval {
namespace {

// Exact attention (double) of one query position's heads q [H][D] over the original K/V of
// tokens [0, n): k, v [n][Hk][D].
void ExactAttention(const float* q, const float* k, const float* v, int n, int H, int Hk, int D,
                    double scale, std::vector<double>* out) {
  const int g = H / Hk;
  out->assign(size_t(H) * D, 0.0);
  std::vector<double> s(static_cast<size_t>(n));
  for (int h = 0; h < H; ++h) {
    const int kh = h / g;
    double mx = -INFINITY;
    for (int t = 0; t < n; ++t) {
      double dot = 0;
      const float* kt = k + (size_t(t) * Hk + kh) * D;
      for (int d = 0; d < D; ++d) dot += double(q[size_t(h) * D + d]) * kt[d];
      s[size_t(t)] = dot * scale;
      mx = std::max(mx, s[size_t(t)]);
    }
    double den = 0;
    for (int t = 0; t < n; ++t) den += (s[size_t(t)] = std::exp(s[size_t(t)] - mx));
    for (int t = 0; t < n; ++t) {
      const float* vt = v + (size_t(t) * Hk + kh) * D;
      const double w = s[size_t(t)] / den;
      for (int d = 0; d < D; ++d) (*out)[size_t(h) * D + d] += w * vt[d];
    }
  }
}

}  // namespace

Status MeasureIntPathError(const Model& model, const std::vector<int32_t>& tokens,
                           const std::vector<CodecSpec>& codecs, const IntPathErrorOptions& opt,
                           std::vector<IntPathErrorResult>* out) {
  const ModelConfig& c = model.config();
  const int L = c.n_layers, H = c.n_heads, Hk = c.n_kv_heads, D = c.head_dim;
  const int n = int(tokens.size());
  if (n <= opt.first_position)
    return InvalidArgument("int path error: " + std::to_string(n) +
                           " tokens, need more than the first sampled position " +
                           std::to_string(opt.first_position));
  if (opt.stride < 1)
    return InvalidArgument("int path error: stride " + std::to_string(opt.stride));

  // Exact prefill, recording Q, K, V of every layer: [L][n][H*D], [L][n][Hk*D].
  std::vector<float> Q(size_t(L) * n * H * D), K(size_t(L) * n * Hk * D), V(K.size());
  {
    CodecSpec f32;
    KVARN_RETURN_IF_ERROR(ParseCodecSpec("f32", &f32));
    std::unique_ptr<KvCache> cache;
    KVARN_RETURN_IF_ERROR(model.CreateCache(f32, n, size_t(16) << 30, &cache));
    int seq = 0;
    KVARN_RETURN_IF_ERROR(cache->AddSequence(&seq));
    ForwardOptions fo;
    fo.n_threads = opt.n_threads;
    int pos0 = 0;
    fo.on_q = [&](int l, const float* q, int m) {
      std::copy_n(q, size_t(m) * H * D, Q.begin() + ptrdiff_t((size_t(l) * n + pos0) * H * D));
    };
    fo.on_kv = [&](int l, float* k, float* v, int m) {
      const size_t off = (size_t(l) * n + pos0) * Hk * D;
      std::copy_n(k, size_t(m) * Hk * D, K.begin() + ptrdiff_t(off));
      std::copy_n(v, size_t(m) * Hk * D, V.begin() + ptrdiff_t(off));
    };
    ForwardOutput fout;
    for (; pos0 < n; pos0 += 256) {
      const int m = std::min(256, n - pos0);
      KVARN_RETURN_IF_ERROR(model.Forward(*cache, seq, tokens.data() + pos0, m, fo, &fout));
    }
  }

  const double scale = 1.0 / std::sqrt(double(D));
  AttentionParams p;
  p.n_heads = H;
  p.scale = float(scale);
  p.n_threads = opt.n_threads;
  out->clear();
  std::vector<float> deq(size_t(H) * D), fused(deq.size());
  std::vector<double> exact;
  for (const CodecSpec& spec : codecs) {
    IntPathErrorResult r;
    r.codec = spec.Name();
    double codec_sq = 0, int_sq = 0;
    for (int l = 0; l < L; ++l) {
      KvCacheConfig cfg;
      cfg.n_layers = 1;
      cfg.n_kv_heads = Hk;
      cfg.head_dim = D;
      cfg.codec = spec;
      cfg.max_tokens = n;
      std::unique_ptr<KvCache> cache;
      KVARN_RETURN_IF_ERROR(KvCache::Create(cfg, &cache));
      int seq = 0;
      KVARN_RETURN_IF_ERROR(cache->AddSequence(&seq));
      double layer_codec = 0, layer_int = 0;
      const float* kl = K.data() + size_t(l) * n * Hk * D;
      const float* vl = V.data() + size_t(l) * n * Hk * D;
      for (int t = 0; t < n; ++t) {
        KVARN_RETURN_IF_ERROR(cache->BeginStep(seq, 1));
        KVARN_RETURN_IF_ERROR(
            cache->Write(seq, 0, t, 1, kl + size_t(t) * Hk * D, vl + size_t(t) * Hk * D));
        KVARN_RETURN_IF_ERROR(cache->EndStep(seq));
        if (t < opt.first_position || (t - opt.first_position) % opt.stride != 0) continue;
        SeqView view;
        KVARN_RETURN_IF_ERROR(cache->View(seq, &view));
        const float* q = Q.data() + (size_t(l) * n + t) * H * D;
        KVARN_RETURN_IF_ERROR(AttendReference<double>(*cache, view, 0, p, q, 1, t, deq.data()));
        KVARN_RETURN_IF_ERROR(Attend(*cache, view, 0, p, q, 1, t, fused.data()));
        ExactAttention(q, kl, vl, t + 1, H, Hk, D, scale, &exact);
        for (size_t e = 0; e < deq.size(); ++e) {
          const double ce = double(deq[e]) - exact[e], ie = double(fused[e]) - double(deq[e]);
          layer_codec += ce * ce;
          layer_int += ie * ie;
        }
        r.samples += int64_t(deq.size());
      }
      codec_sq += layer_codec;
      int_sq += layer_int;
      const double ratio = layer_codec > 0 ? std::sqrt(layer_int / layer_codec) : 0.0;
      if (ratio > r.worst_layer_ratio) {
        r.worst_layer_ratio = ratio;
        r.worst_layer = l;
      }
    }
    if (r.samples > 0) {
      r.codec_rms = std::sqrt(codec_sq / double(r.samples));
      r.int_rms = std::sqrt(int_sq / double(r.samples));
    }
    out->push_back(r);
  }
  return Status::Ok();
}

}  // namespace kvarn::eval
