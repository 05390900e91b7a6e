#include "eval/pseudo_decode.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "common/parallel.h"
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
  std::vector<uint8_t> rec(cache.RecordBytes());
  for (int b = pos0 / G; b * G < pos0 + n; ++b) {
    const BlockRef& blk = view.block(b);
    if (blk.kind == BlockKind::kF16) continue;  // sink or not yet encoded: no quantization
    const int t0 = std::max(pos0, b * G), t1 = std::min(pos0 + n, b * G + view.block_len(b));
    for (int l = 0; l < L; ++l) {
      for (int h = 0; h < H; ++h) {
        if (blk.kind == BlockKind::kRecord) {
          view.ReferenceRecord(b, l, h, rec.data());
          KVARN_RETURN_IF_ERROR(codec.Decode(rec.data(), rec.size(), G, kb.data(), vb.data(),
                                             Frame::kModel));
        } else {
          for (int t = t0; t < t1; ++t)
            DequantizeRow(codec.spec().kind,
                          view.RowsK(b, l, h) + size_t(t - b * G) * cache.RowBytes(), D,
                          kb.data() + size_t(t - b * G) * D);
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

// First divergence and agreement of g->test against g->exact (same length).
void ScoreGeneration(GenerationResult* g) {
  const size_t n = std::min(g->exact.size(), g->test.size());
  size_t agree = 0;
  g->first_divergence = -1;
  for (size_t s = 0; s < n; ++s) {
    if (g->exact[s] == g->test[s])
      ++agree;
    else if (g->first_divergence < 0)
      g->first_divergence = int(s);
  }
  g->agreement = double(agree) / double(std::max<size_t>(n, 1));
}

// A cache of `spec` (room for the prompt and n_steps tokens) with one sequence holding the
// prompt, fed in steps of 256 tokens; *first: the greedy token after it. Both generation paths
// start here, so their steps, commits and logits are the same.
Status StartGeneration(const Model& model, const CodecSpec& spec,
                       const std::vector<int32_t>& prompt, int n_steps, int n_threads,
                       std::unique_ptr<KvCache>* cache, int* seq, int32_t* first) {
  if (prompt.empty()) return InvalidArgument("empty generation prompt");
  KVARN_RETURN_IF_ERROR(
      model.CreateCache(spec, int(prompt.size()) + n_steps + 1, kCacheBudget, cache));
  KVARN_RETURN_IF_ERROR((*cache)->AddSequence(seq));
  ForwardOptions fo;
  fo.n_threads = n_threads;
  ForwardOutput o;
  for (size_t i = 0; i < prompt.size(); i += 256) {
    const int n = int(std::min<size_t>(256, prompt.size() - i));
    KVARN_RETURN_IF_ERROR(model.Forward(**cache, *seq, prompt.data() + i, n, fo, &o));
  }
  *first = int32_t(Argmax(o.logits.data(), int(o.logits.size())));
  return Status::Ok();
}

}  // namespace

Status RunPseudoDecode(const Model& model, const std::vector<int32_t>& tokens,
                       const std::vector<EvalCase>& cases, const PseudoDecodeOptions& opt,
                       const std::function<void(int, int)>& progress,
                       std::vector<CaseResult>* results) {
  if (opt.chunk < 1 || opt.bucket < 1)
    return InvalidArgument("chunk " + std::to_string(opt.chunk) + " and bucket " +
                           std::to_string(opt.bucket) + " must be positive");
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
    KVARN_RETURN_IF_ERROR(
        model.CreateCache(cases[i].codec, n_tokens + 1, kCacheBudget, &st[i].cache)
            .WithContext(cases[i].Label()));
    KVARN_RETURN_IF_ERROR(st[i].cache->AddSequence(&st[i].seq));
    const KvCache& kc = *st[i].cache;
    (*results)[i].bytes_per_token_head =
        double(kc.PageBytes(kc.EncodedKind())) /
        (double(mc.n_layers) * mc.n_kv_heads * double(kc.block_tokens()));
  }

  std::vector<float> exact_k, exact_v, exact_att, exact_logits, test_logits, keys;
  // The exact distributions of a chunk's positions, prepared once for all cases: [chunk]
  std::vector<ReferenceDistribution> refs(size_t(opt.chunk));
  std::vector<PositionComparison> cmp(size_t(opt.chunk));
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
    KVARN_RETURN_IF_ERROR(
        model.Forward(*exact, exact_seq, ids, n, fo, &out).WithContext("exact run"));
    exact_logits.resize(size_t(n) * V);
    KVARN_RETURN_IF_ERROR(model.Logits(out.hidden.data(), n, exact_logits.data(), opt.n_threads));
    ParallelFor(opt.n_threads, n, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) refs[size_t(t)].Set(exact_logits.data() + size_t(t) * V, V);
    });

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
          for (int j = 0; j < QD; ++j)
            sum += std::fabs(double(a[size_t(t) * QD + j]) - e[size_t(t) * QD + j]);
          const size_t b = size_t((pos0 + t) / opt.bucket);
          r.attn_abs_err[b][size_t(l)] += sum;
          if (l == 0) r.attn_count[b] += QD;
        }
      };
      KVARN_RETURN_IF_ERROR(
          model.Forward(*s.cache, s.seq, ids, n, to, &out).WithContext(cases[i].Label()));
      test_logits.resize(size_t(n) * V);
      KVARN_RETURN_IF_ERROR(model.Logits(out.hidden.data(), n, test_logits.data(), opt.n_threads));
      ParallelFor(opt.n_threads, n, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t next_pos = pos0 + t + 1;
          const int next = next_pos < n_tokens ? tokens[size_t(next_pos)] : -1;
          cmp[size_t(t)] = refs[size_t(t)].Compare(test_logits.data() + size_t(t) * V, next);
        }
      });
      for (int t = 0; t < n; ++t) r.positions.Add(pos0 + t, cmp[size_t(t)]);
      // The previous chunk's blocks were encoded by this step's commit: measure their keys.
      if (s.written_pos0 >= opt.chunk)
        KVARN_RETURN_IF_ERROR(
            KeySplit(*s.cache, s.seq, s.written_k, s.written_pos0, opt.chunk, &r));
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
    int seq = 0;
    int32_t next = 0;
    KVARN_RETURN_IF_ERROR(
        StartGeneration(model, spec, prompt, n_steps, n_threads, &cache, &seq, &next));
    ForwardOptions fo;
    fo.n_threads = n_threads;
    ForwardOutput o;
    ids->clear();
    for (int s = 0; s < n_steps; ++s) {
      ids->push_back(next);
      if (s + 1 == n_steps) break;  // the last token's successor is never used
      KVARN_RETURN_IF_ERROR(model.Forward(*cache, seq, &next, 1, fo, &o));
      next = int32_t(Argmax(o.logits.data(), int(o.logits.size())));
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
  ScoreGeneration(out);
  return Status::Ok();
}

Status RunGenerations(const Model& model, const std::vector<int32_t>& prompt, int n_steps,
                      const std::vector<CodecSpec>& codecs, int n_threads,
                      std::vector<GenerationResult>* results) {
  // Sequence 0 is the exact run (f32 cache), 1..k the cache types; each in its own cache.
  std::vector<CodecSpec> specs(1);
  KVARN_RETURN_IF_ERROR(ParseCodecSpec("f32", &specs[0]));
  specs.insert(specs.end(), codecs.begin(), codecs.end());
  const size_t k = specs.size();
  const int V = model.config().n_vocab;
  std::vector<std::unique_ptr<KvCache>> caches(k);
  std::vector<int> seqs(k, 0);
  std::vector<std::vector<int32_t>> ids(k);
  std::vector<int32_t> next(k);
  for (size_t i = 0; i < k; ++i) {
    KVARN_RETURN_IF_ERROR(
        StartGeneration(model, specs[i], prompt, n_steps, n_threads, &caches[i], &seqs[i], &next[i])
            .WithContext(specs[i].Name()));
  }
  // Greedy steps of every sequence in lockstep, one DecodeBatch call per step (the weights are
  // read once per call; each item's logits are bit-identical to a lone Forward).
  std::vector<float> logits;
  std::vector<KvCache*> cs;
  for (size_t i = 0; i < k; ++i) cs.push_back(caches[i].get());
  for (int s = 0; s < n_steps; ++s) {
    for (size_t i = 0; i < k; ++i) ids[i].push_back(next[i]);
    if (s + 1 == n_steps) break;  // the last token's successor is never used
    KVARN_RETURN_IF_ERROR(model.DecodeBatch(cs, seqs, next, n_threads, &logits));
    for (size_t i = 0; i < k; ++i) next[i] = int32_t(Argmax(logits.data() + i * size_t(V), V));
  }
  results->assign(codecs.size(), GenerationResult());
  for (size_t c = 0; c < codecs.size(); ++c) {
    GenerationResult& g = (*results)[c];
    g.codec = codecs[c].Name();
    g.exact = ids[0];
    g.test = ids[c + 1];
    ScoreGeneration(&g);
  }
  return Status::Ok();
}

}  // namespace kvarn::eval
