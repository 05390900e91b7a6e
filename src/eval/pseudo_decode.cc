#include "eval/pseudo_decode.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "model/sampler.h"
#include "quant/distortion.h"
#include "quant/ggml_blocks.h"

namespace kvarn::eval {
namespace {

constexpr size_t kCacheBudget = size_t(8) << 30;

// Per-case state that lives across chunks.
struct CaseState {
  std::unique_ptr<KvCache> cache;
  int seq = 0;
  std::vector<float> written_k;  // [L][chunk][Hk*D] the K this case wrote for the last chunk
  int written_pos0 = -1;
};

// Compares the keys of positions [pos0, pos0 + n) as stored in `cache` (decoded to the model
// frame) with the keys that were written, appending E_M and E_D per (layer, head, token).
Status KeySplit(const KvCache& cache, int seq, const std::vector<float>& written, int pos0, int n,
                CaseResult* r) {
  SeqView view;
  KVARN_RETURN_IF_ERROR(cache.View(seq, &view));
  const KvCacheConfig& c = cache.config();
  const int L = c.n_layers, H = c.n_kv_heads, D = c.head_dim, G = view.block_tokens();
  const Codec& codec = cache.codec();
  std::vector<float> kb(size_t(G) * D), vb(size_t(G) * D), ref(size_t(G) * D), got(size_t(G) * D);
  std::vector<double> em(static_cast<size_t>(G)), ed(static_cast<size_t>(G));
  for (int b = pos0 / G; b * G < pos0 + n; ++b) {
    const BlockRef& blk = view.block(b);
    if (blk.kind == BlockKind::kF16) continue;  // sink or not yet encoded: no quantization
    const int t0 = std::max(pos0, b * G), t1 = std::min(pos0 + n, b * G + view.block_len(b));
    for (int l = 0; l < L; ++l) {
      for (int h = 0; h < H; ++h) {
        if (blk.kind == BlockKind::kRecord) {
          KVARN_RETURN_IF_ERROR(codec.Decode(view.Record(b, l, h), cache.RecordBytes(), G,
                                             kb.data(), vb.data(), Frame::kModel));
        } else {
          for (int t = t0; t < t1; ++t)
            DequantizeRow(codec.spec().kind, view.RowsK(b, l, h) + size_t(t - b * G) * cache.RowBytes(),
                          D, kb.data() + size_t(t - b * G) * D);
        }
        int m = 0;
        for (int t = t0; t < t1; ++t, ++m) {
          std::copy_n(written.begin() + ptrdiff_t(((size_t(l) * n + (t - pos0)) * H + h) * D), D,
                      ref.begin() + ptrdiff_t(m) * D);
          std::copy_n(kb.begin() + ptrdiff_t(t - b * G) * D, D, got.begin() + ptrdiff_t(m) * D);
        }
        KeyErrorSplit(ref.data(), got.data(), m, D, em.data(), ed.data());
        r->key_e_m.insert(r->key_e_m.end(), em.begin(), em.begin() + m);
        r->key_e_d.insert(r->key_e_d.end(), ed.begin(), ed.begin() + m);
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Status RunPseudoDecode(const Model& model, const std::vector<int32_t>& tokens,
                       const std::vector<EvalCase>& cases, const PseudoDecodeOptions& opt,
                       const std::function<void(int, int)>& progress,
                       std::vector<CaseResult>* results) {
  const ModelConfig& mc = model.config();
  const int L = mc.n_layers, V = mc.n_vocab;
  const int KD = mc.n_kv_heads * mc.head_dim, QD = mc.n_heads * mc.head_dim;
  const int n_tokens = int(tokens.size());
  const int n_chunks = (n_tokens + opt.chunk - 1) / opt.chunk;
  CodecSpec f32;
  KVARN_RETURN_IF_ERROR(ParseCodecSpec("f32", &f32));
  std::unique_ptr<KvCache> exact;
  KVARN_RETURN_IF_ERROR(model.CreateCache(f32, n_tokens + 1, kCacheBudget, &exact));
  int exact_seq = 0;
  KVARN_RETURN_IF_ERROR(exact->AddSequence(&exact_seq));

  std::vector<CaseState> st(cases.size());
  results->assign(cases.size(), CaseResult());
  for (size_t i = 0; i < cases.size(); ++i) {
    (*results)[i].config = cases[i];
    (*results)[i].positions = PositionBuckets(opt.bucket);
    KVARN_RETURN_IF_ERROR(model.CreateCache(cases[i].codec, n_tokens + 1, kCacheBudget, &st[i].cache)
                              .WithContext(cases[i].Label()));
    KVARN_RETURN_IF_ERROR(st[i].cache->AddSequence(&st[i].seq));
  }

  std::vector<float> exact_k, exact_v, exact_att, exact_logits, test_logits, keys;
  for (int c = 0; c < n_chunks; ++c) {
    const int pos0 = c * opt.chunk;
    const int n = std::min(opt.chunk, n_tokens - pos0);
    const int32_t* ids = tokens.data() + pos0;
    exact_k.assign(size_t(L) * n * KD, 0.0f);
    exact_v.assign(size_t(L) * n * KD, 0.0f);
    exact_att.assign(size_t(L) * n * QD, 0.0f);
    ForwardOptions fo;
    fo.n_threads = opt.n_threads;
    fo.all_hidden = true;
    fo.on_kv = [&](int l, float* k, float* v, int m) {
      std::copy_n(k, size_t(m) * KD, exact_k.begin() + ptrdiff_t(size_t(l) * n * KD));
      std::copy_n(v, size_t(m) * KD, exact_v.begin() + ptrdiff_t(size_t(l) * n * KD));
    };
    fo.on_attention = [&](int l, const float* a, int m) {
      std::copy_n(a, size_t(m) * QD, exact_att.begin() + ptrdiff_t(size_t(l) * n * QD));
    };
    ForwardOutput out;
    KVARN_RETURN_IF_ERROR(model.Forward(*exact, exact_seq, ids, n, fo, &out).WithContext("exact run"));
    exact_logits.resize(size_t(n) * V);
    KVARN_RETURN_IF_ERROR(model.Logits(out.hidden.data(), n, exact_logits.data(), opt.n_threads));

    for (size_t i = 0; i < cases.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      CaseResult& r = (*results)[i];
      CaseState& s = st[i];
      if (r.attn_abs_err.size() * size_t(opt.bucket) < size_t(pos0 + n)) {
        const size_t nb = size_t((pos0 + n + opt.bucket - 1) / opt.bucket);
        r.attn_abs_err.resize(nb, std::vector<double>(size_t(L), 0.0));
        r.attn_count.resize(nb, 0);
      }
      keys.assign(size_t(L) * n * KD, 0.0f);
      ForwardOptions to;
      to.n_threads = opt.n_threads;
      to.all_hidden = true;
      const bool stat = cases[i].static_schedule;
      to.on_kv = [&](int l, float* k, float* v, int m) {
        if (stat) {  // the exact model's K/V go into the cache under test
          std::copy_n(exact_k.begin() + ptrdiff_t(size_t(l) * n * KD), size_t(m) * KD, k);
          std::copy_n(exact_v.begin() + ptrdiff_t(size_t(l) * n * KD), size_t(m) * KD, v);
        }
        std::copy_n(k, size_t(m) * KD, keys.begin() + ptrdiff_t(size_t(l) * n * KD));
      };
      to.on_attention = [&](int l, const float* a, int m) {
        const float* e = exact_att.data() + size_t(l) * n * QD;
        for (int t = 0; t < m; ++t) {
          double sum = 0;
          for (int j = 0; j < QD; ++j) sum += std::fabs(double(a[size_t(t) * QD + j]) - e[size_t(t) * QD + j]);
          const size_t b = size_t((pos0 + t) / opt.bucket);
          r.attn_abs_err[b][size_t(l)] += sum;
          if (l == 0) r.attn_count[b] += QD;
        }
      };
      KVARN_RETURN_IF_ERROR(model.Forward(*s.cache, s.seq, ids, n, to, &out).WithContext(cases[i].Label()));
      test_logits.resize(size_t(n) * V);
      KVARN_RETURN_IF_ERROR(model.Logits(out.hidden.data(), n, test_logits.data(), opt.n_threads));
      for (int t = 0; t < n; ++t) {
        const int next = pos0 + t + 1 < n_tokens ? tokens[size_t(pos0 + t + 1)] : -1;
        r.positions.Add(pos0 + t, exact_logits.data() + size_t(t) * V,
                        test_logits.data() + size_t(t) * V, V, next);
      }
      // The previous chunk's blocks were encoded by this step's commit: measure their keys.
      if (s.written_pos0 >= opt.chunk)
        KVARN_RETURN_IF_ERROR(KeySplit(*s.cache, s.seq, s.written_k, s.written_pos0, opt.chunk, &r));
      s.written_k.swap(keys);
      s.written_pos0 = pos0;
      r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (progress) progress(c + 1, n_chunks);
  }
  return Status::Ok();
}

Status RunGeneration(const Model& model, const std::vector<int32_t>& prompt, int n_steps,
                     const CodecSpec& codec, int n_threads, const std::vector<int32_t>* exact_ids,
                     GenerationResult* out) {
  auto generate = [&](const CodecSpec& spec, std::vector<int32_t>* ids) -> Status {
    std::unique_ptr<KvCache> cache;
    KVARN_RETURN_IF_ERROR(model.CreateCache(spec, int(prompt.size()) + n_steps + 1, kCacheBudget, &cache));
    int seq = 0;
    KVARN_RETURN_IF_ERROR(cache->AddSequence(&seq));
    ForwardOptions fo;
    fo.n_threads = n_threads;
    ForwardOutput o;
    for (size_t i = 0; i < prompt.size(); i += 256) {
      const int n = int(std::min<size_t>(256, prompt.size() - i));
      KVARN_RETURN_IF_ERROR(model.Forward(*cache, seq, prompt.data() + i, n, fo, &o));
    }
    ids->clear();
    for (int s = 0; s < n_steps; ++s) {
      const int32_t next = int32_t(Argmax(o.logits.data(), int(o.logits.size())));
      ids->push_back(next);
      KVARN_RETURN_IF_ERROR(model.Forward(*cache, seq, &next, 1, fo, &o));
    }
    return Status::Ok();
  };
  out->codec = codec.Name();
  if (exact_ids != nullptr) {
    out->exact = *exact_ids;
  } else {
    CodecSpec f32;
    KVARN_RETURN_IF_ERROR(ParseCodecSpec("f32", &f32));
    KVARN_RETURN_IF_ERROR(generate(f32, &out->exact));
  }
  KVARN_RETURN_IF_ERROR(generate(codec, &out->test));
  int agree = 0;
  out->first_divergence = -1;
  for (int s = 0; s < n_steps; ++s) {
    if (out->exact[size_t(s)] == out->test[size_t(s)]) ++agree;
    else if (out->first_divergence < 0) out->first_divergence = s;
  }
  out->agreement = double(agree) / std::max(n_steps, 1);
  return Status::Ok();
}

}  // namespace kvarn::eval
