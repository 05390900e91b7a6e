#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "attention/attention.h"
#include "model/ops.h"
#include "weights/matmul.h"

namespace kvarn {
namespace {

// Finds the first non-finite value of x [n][width]; returns false if all are finite.
bool FindNonFinite(const float* x, int n, int width, int* token, int* index) {
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < width; ++i)
      if (!std::isfinite(x[size_t(t) * width + i])) {
        *token = t;
        *index = i;
        return true;
      }
  return false;
}

void AddBias(float* x, const float* b, int n, int width) {
  if (b == nullptr) return;
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < width; ++i) x[size_t(t) * width + i] += b[i];
}

}  // namespace

Status Model::Load(const std::string& path, std::unique_ptr<Model>* out) {
  std::unique_ptr<Model> m(new Model());
  KVARN_RETURN_IF_ERROR(GgufFile::Open(path, &m->file_));
  KVARN_RETURN_IF_ERROR(ReadModelConfig(*m->file_, &m->config_));
  KVARN_RETURN_IF_ERROR(BindWeights(*m->file_, m->config_, &m->weights_));
  *out = std::move(m);
  return Status::Ok();
}

Status Model::CreateCache(const CodecSpec& codec, int max_tokens, size_t byte_budget,
                          std::unique_ptr<KvCache>* out) const {
  KvCacheConfig c;
  c.n_layers = config_.n_layers;
  c.n_kv_heads = config_.n_kv_heads;
  c.head_dim = config_.head_dim;
  c.codec = codec;
  c.max_tokens = max_tokens;
  c.byte_budget = byte_budget;
  return KvCache::Create(c, out);
}

Status Model::Forward(KvCache& cache, int seq, const int32_t* tokens, int n,
                      const ForwardOptions& opt, ForwardOutput* out) const {
  if (n < 1) return InvalidArgument("forward: " + std::to_string(n) + " tokens");
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= config_.n_vocab)
      return InvalidArgument("forward: token id " + std::to_string(tokens[i]) + " at index " +
                             std::to_string(i) + " outside the vocabulary of " +
                             std::to_string(config_.n_vocab));
  const int pos0 = cache.Length(seq);
  KVARN_RETURN_IF_ERROR(cache.BeginStep(seq, n));
  const Status st = ForwardChunk(cache, seq, tokens, n, pos0, opt, out);
  if (!st.ok()) {
    (void)cache.AbortStep(seq);
    return st;
  }
  return cache.EndStep(seq);
}

// Shared by ForwardChunk and DecodeBatch. x [n][E] -> xn = RmsNorm(x), and the biased
// projections q [n][H*D], k, v [n][Hk*D] (before RoPE).
Status Model::AttentionInputs(const LayerWeights& L, const float* x, int n, int T,
                              MatMulRoute route, float* xn, float* q, float* k, float* v) const {
  const ModelConfig& c = config_;
  RmsNorm(x, L.attn_norm, n, c.n_embd, c.rms_eps, xn);
  KVARN_RETURN_IF_ERROR(MatMul(L.wq, xn, n, q, T, route));
  KVARN_RETURN_IF_ERROR(MatMul(L.wk, xn, n, k, T, route));
  KVARN_RETURN_IF_ERROR(MatMul(L.wv, xn, n, v, T, route));
  AddBias(q, L.bq, n, c.n_heads * c.head_dim);
  AddBias(k, L.bk, n, c.n_kv_heads * c.head_dim);
  AddBias(v, L.bv, n, c.n_kv_heads * c.head_dim);
  return Status::Ok();
}

// The rest of a layer: x += Wo att; x += FFN(RmsNorm(x)). Scratch: xn, y [n][E]; g, u [n][F].
Status Model::LayerOutput(const LayerWeights& L, const float* att, int n, int T, MatMulRoute route,
                          float* x, float* xn, float* g, float* u, float* y) const {
  const ModelConfig& c = config_;
  const size_t nx = size_t(n) * size_t(c.n_embd);
  KVARN_RETURN_IF_ERROR(MatMul(L.wo, att, n, y, T, route));
  for (size_t i = 0; i < nx; ++i) x[i] += y[i];
  RmsNorm(x, L.ffn_norm, n, c.n_embd, c.rms_eps, xn);
  KVARN_RETURN_IF_ERROR(MatMul(L.w_gate, xn, n, g, T, route));
  KVARN_RETURN_IF_ERROR(MatMul(L.w_up, xn, n, u, T, route));
  SwiGlu(g, u, size_t(n) * size_t(c.n_ff), g);
  KVARN_RETURN_IF_ERROR(MatMul(L.w_down, g, n, y, T, route));
  for (size_t i = 0; i < nx; ++i) x[i] += y[i];
  return Status::Ok();
}

Status Model::ForwardChunk(KvCache& cache, int seq, const int32_t* tokens, int n, int pos0,
                           const ForwardOptions& opt, ForwardOutput* out) const {
  const ModelConfig& c = config_;
  const int E = c.n_embd, F = c.n_ff, H = c.n_heads, Hk = c.n_kv_heads, D = c.head_dim;
  const int QD = H * D, KD = Hk * D;
  const int T = std::max(1, opt.n_threads);
  const Rope rope(c);

  std::vector<float> x(size_t(n) * E), xn(size_t(n) * E);       // [n][E]
  std::vector<float> q(size_t(n) * QD), att(size_t(n) * QD);     // [n][H*D]
  std::vector<float> k(size_t(n) * KD), v(size_t(n) * KD);       // [n][Hk*D]
  std::vector<float> g(size_t(n) * F), u(size_t(n) * F);         // [n][F]
  std::vector<float> y(size_t(n) * E);                           // [n][E]

  for (int t = 0; t < n; ++t)
    KVARN_RETURN_IF_ERROR(GetWeightRow(weights_.token_embd, tokens[t], x.data() + size_t(t) * E));

  SeqView view;
  KVARN_RETURN_IF_ERROR(cache.View(seq, &view));  // blocks do not move within a step
  AttentionParams ap;
  ap.n_heads = H;
  ap.scale = float(1.0 / std::sqrt(double(D)));
  ap.n_threads = T;

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[size_t(l)];
    KVARN_RETURN_IF_ERROR(AttentionInputs(L, x.data(), n, T, MatMulRoute::kAuto, xn.data(),
                                          q.data(), k.data(), v.data()));
    rope.Apply(q.data(), n, H, pos0);
    rope.Apply(k.data(), n, Hk, pos0);
    // The cache rejects non-finite K/V naming layer and position; queries are checked here.
    int bt = 0, bi = 0;
    if (FindNonFinite(q.data(), n, QD, &bt, &bi))
      return NonFinite("layer " + std::to_string(l) + ", position " + std::to_string(pos0 + bt) +
                       ": non-finite query value " + std::to_string(q[size_t(bt) * QD + bi]));
    if (opt.on_q) opt.on_q(l, q.data(), n);
    if (opt.on_kv) opt.on_kv(l, k.data(), v.data(), n);
    KVARN_RETURN_IF_ERROR(cache.Write(seq, l, pos0, n, k.data(), v.data()));
    KVARN_RETURN_IF_ERROR(Attend(cache, view, l, ap, q.data(), n, pos0, att.data()));
    if (opt.on_attention) opt.on_attention(l, att.data(), n);
    KVARN_RETURN_IF_ERROR(LayerOutput(L, att.data(), n, T, MatMulRoute::kAuto, x.data(), xn.data(),
                                      g.data(), u.data(), y.data()));
    if (FindNonFinite(x.data(), n, E, &bt, &bi))
      return NonFinite("layer " + std::to_string(l) + ", position " + std::to_string(pos0 + bt) +
                       ": non-finite activation (hidden channel " + std::to_string(bi) + ")");
  }
  if (opt.all_hidden) {
    out->hidden.resize(size_t(n) * E);
    RmsNorm(x.data(), weights_.output_norm, n, E, c.rms_eps, out->hidden.data());
  }
  RmsNorm(x.data() + size_t(n - 1) * E, weights_.output_norm, 1, E, c.rms_eps, xn.data());
  out->logits.resize(size_t(c.n_vocab));
  return MatVec(weights_.output, xn.data(), out->logits.data(), T);
}

Status Model::DecodeBatch(const std::vector<KvCache*>& caches, const std::vector<int>& seqs,
                          const std::vector<int32_t>& tokens, int n_threads,
                          std::vector<float>* logits) const {
  const int n = int(tokens.size());
  if (n < 1 || caches.size() != tokens.size() || seqs.size() != tokens.size())
    return InvalidArgument("decode batch: " + std::to_string(n) + " tokens, " +
                           std::to_string(caches.size()) + " caches, " +
                           std::to_string(seqs.size()) +
                           " sequences (one of each per item, at least one item)");
  for (int i = 0; i < n; ++i) {
    if (caches[size_t(i)] == nullptr) return InvalidArgument("decode batch: null cache");
    if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= config_.n_vocab)
      return InvalidArgument("decode batch: token id " + std::to_string(tokens[size_t(i)]) +
                             " of item " + std::to_string(i) + " outside the vocabulary of " +
                             std::to_string(config_.n_vocab));
    for (int j = 0; j < i; ++j)
      if (caches[size_t(j)] == caches[size_t(i)] && seqs[size_t(j)] == seqs[size_t(i)])
        return InvalidArgument("decode batch: items " + std::to_string(j) + " and " +
                               std::to_string(i) + " are the same sequence");
  }
  std::vector<int> pos(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    pos[size_t(i)] = caches[size_t(i)]->Length(seqs[size_t(i)]);
    const Status st = caches[size_t(i)]->BeginStep(seqs[size_t(i)], 1);
    if (!st.ok()) {
      for (int j = 0; j < i; ++j) (void)caches[size_t(j)]->AbortStep(seqs[size_t(j)]);
      return st;
    }
  }
  const auto abort_all = [&](const Status& st) {
    for (int i = 0; i < n; ++i) (void)caches[size_t(i)]->AbortStep(seqs[size_t(i)]);
    return st;
  };

  const ModelConfig& c = config_;
  const int E = c.n_embd, F = c.n_ff, H = c.n_heads, Hk = c.n_kv_heads, D = c.head_dim;
  const int QD = H * D, KD = Hk * D;
  const int T = std::max(1, n_threads);
  const Rope rope(c);
  std::vector<float> x(size_t(n) * E), xn(size_t(n) * E);       // [n][E]
  std::vector<float> q(size_t(n) * QD), att(size_t(n) * QD);     // [n][H*D]
  std::vector<float> k(size_t(n) * KD), v(size_t(n) * KD);       // [n][Hk*D]
  std::vector<float> g(size_t(n) * F), u(size_t(n) * F);         // [n][F]
  std::vector<float> y(size_t(n) * E);                           // [n][E]
  std::vector<SeqView> views(static_cast<size_t>(n));
  Status st;
  for (int i = 0; i < n; ++i) {
    if (!(st = GetWeightRow(weights_.token_embd, tokens[size_t(i)], x.data() + size_t(i) * E)).ok() ||
        !(st = caches[size_t(i)]->View(seqs[size_t(i)], &views[size_t(i)])).ok())
      return abort_all(st);
  }
  AttentionParams ap;
  ap.n_heads = H;
  ap.scale = float(1.0 / std::sqrt(double(D)));
  ap.n_threads = T;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[size_t(l)];
    // kPerToken: whatever the number of items, each one's products are those of a lone token.
    if (!(st = AttentionInputs(L, x.data(), n, T, MatMulRoute::kPerToken, xn.data(), q.data(),
                               k.data(), v.data()))
             .ok())
      return abort_all(st);
    for (int i = 0; i < n; ++i) {
      float* qi = q.data() + size_t(i) * QD;
      float* ki = k.data() + size_t(i) * KD;
      rope.Apply(qi, 1, H, pos[size_t(i)]);
      rope.Apply(ki, 1, Hk, pos[size_t(i)]);
      int bt = 0, bi = 0;
      if (FindNonFinite(qi, 1, QD, &bt, &bi))
        return abort_all(NonFinite("layer " + std::to_string(l) + ", position " +
                                   std::to_string(pos[size_t(i)]) + " of batch item " +
                                   std::to_string(i) + ": non-finite query value " +
                                   std::to_string(qi[bi])));
      KvCache& cache = *caches[size_t(i)];
      if (!(st = cache.Write(seqs[size_t(i)], l, pos[size_t(i)], 1, ki,
                             v.data() + size_t(i) * KD)).ok() ||
          !(st = Attend(cache, views[size_t(i)], l, ap, qi, 1, pos[size_t(i)],
                        att.data() + size_t(i) * QD)).ok())
        return abort_all(st);
    }
    if (!(st = LayerOutput(L, att.data(), n, T, MatMulRoute::kPerToken, x.data(), xn.data(),
                           g.data(), u.data(), y.data()))
             .ok())
      return abort_all(st);
    int bt = 0, bi = 0;
    if (FindNonFinite(x.data(), n, E, &bt, &bi))
      return abort_all(NonFinite("layer " + std::to_string(l) + ", position " +
                                 std::to_string(pos[size_t(bt)]) + " of batch item " +
                                 std::to_string(bt) + ": non-finite activation (hidden channel " +
                                 std::to_string(bi) + ")"));
  }
  RmsNorm(x.data(), weights_.output_norm, n, E, c.rms_eps, xn.data());
  logits->resize(size_t(n) * size_t(c.n_vocab));
  if (!(st = MatMul(weights_.output, xn.data(), n, logits->data(), T, MatMulRoute::kPerToken)).ok())
    return abort_all(st);
  for (int i = 0; i < n; ++i) {
    if (!(st = caches[size_t(i)]->EndStep(seqs[size_t(i)])).ok()) {
      for (int j = i + 1; j < n; ++j) (void)caches[size_t(j)]->AbortStep(seqs[size_t(j)]);
      return st;
    }
  }
  return Status::Ok();
}

Status Model::Logits(const float* hidden, int m, float* logits, int n_threads) const {
  return MatMul(weights_.output, hidden, m, logits, n_threads);
}

}  // namespace kvarn
