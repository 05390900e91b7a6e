// Attention driver: validates, rotates queries, splits (KV head x block range) work across
// threads, merges the partial softmax states and un-rotates the output.
#include "attention/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "attention/attention_kernel.h"
#include "common/dispatch.h"
#include "common/parallel.h"
#include "quant/tile_codec.h"

namespace kvarn {

Status Attend(const KvCache& cache, const SeqView& view, int layer, const AttentionParams& p,
              const float* q, int n_q, int pos0, float* out) {
  const KvCacheConfig& cfg = cache.config();
  const int D = cfg.head_dim, Hk = cfg.n_kv_heads, H = p.n_heads;
  if (H < 1 || H % Hk != 0)
    return InvalidArgument("attention: " + std::to_string(H) +
                           " query heads is not a multiple of " + std::to_string(Hk) + " KV heads");
  if (layer < 0 || layer >= cfg.n_layers)
    return InvalidArgument("attention: layer " + std::to_string(layer) + " out of range");
  if (n_q < 1 || pos0 < 0 || pos0 + n_q > view.length())
    return OutOfRange("attention: queries at positions [" + std::to_string(pos0) + ", " +
                      std::to_string(pos0 + n_q) + ") but the cache holds " +
                      std::to_string(view.length()) + " tokens");
  if (ForceReference()) return AttendFusedReference(cache, view, layer, p, q, n_q, pos0, out);

  const int g = H / Hk;
  const int rows = n_q * g;
  const int G = view.block_tokens();
  const int n_blocks = (pos0 + n_q + G - 1) / G;
  // Buffers of this thread's previous call are reused: one decode step calls Attend once per
  // layer, and allocating and zeroing fresh vectors each time is a measurable share of a
  // short-context call.
  thread_local std::vector<float> qr, acc, o;
  thread_local std::vector<attn::SoftmaxRow> states;
  // Queries per KV head, row r = i * g + j, in the cache's frame.
  qr.resize(size_t(Hk) * rows * D);
  for (int i = 0; i < n_q; ++i)
    for (int kh = 0; kh < Hk; ++kh)
      for (int j = 0; j < g; ++j)
        std::copy_n(q + (size_t(i) * H + kh * g + j) * D, D,
                    qr.begin() + ptrdiff_t((size_t(kh) * rows + size_t(i) * g + j) * D));
  if (cache.rotated()) FwhtBatch(qr.data(), Hk * rows, D);

  // Split each KV head's blocks into chunks so every thread has work (flash-decoding).
  const int threads = std::max(1, p.n_threads);
  // The split depends on the context only, never on the thread count, so results are
  // bit-identical for any number of threads (threads only pick up different items): one split
  // per kKvBlocksPerSplit blocks, at least 2 per KV head once there are 2 blocks so that two
  // threads have work for decoding at moderate contexts.
  constexpr int kKvBlocksPerSplit = 8;
  const int splits = std::clamp((n_blocks + kKvBlocksPerSplit - 1) / kKvBlocksPerSplit,
                                std::min(2, n_blocks), n_blocks);
  const int items = Hk * splits;
  states.assign(size_t(items) * rows, attn::SoftmaxRow{});
  acc.assign(size_t(items) * rows * D, 0.0f);

  const CodecSpec& spec = cfg.codec;
  attn::KernelArgs base{};
  base.view = &view;
  base.layer = layer;
  base.D = D;
  base.G = G;
  base.rows = rows;
  base.group = g;
  base.pos0 = pos0;
  base.scale = p.scale;
  base.layout = TileRecordLayout{D, spec.group, spec.k_bits, spec.v_bits};
  base.k_bits = spec.k_bits;
  base.v_bits = spec.v_bits;
  base.kernel_layout = cache.kernel_layout();
  base.kind = spec.kind;
  base.row_bytes = cache.RowBytes();

  // The thread_local vectors are named through pointers: workers must use this thread's.
  const float* qp = qr.data();
  attn::SoftmaxRow* sp_states = states.data();
  float* accp = acc.data();
  ParallelFor(threads, items, [&](int64_t begin, int64_t end) {
    thread_local attn::KernelScratch scratch;
    for (int64_t it = begin; it < end; ++it) {
      attn::KernelArgs a = base;
      const int kh = int(it) / splits, sp = int(it) % splits;
      a.kv_head = kh;
      a.q = qp + size_t(kh) * rows * D;
      a.block_begin = int(int64_t(n_blocks) * sp / splits);
      a.block_end = int(int64_t(n_blocks) * (sp + 1) / splits);
      a.states = sp_states + size_t(it) * rows;
      a.acc = accp + size_t(it) * rows * D;
      a.scratch = &scratch;
      attn::AttendRange(a);
    }
  });

  // Merge the splits of each row with one log-sum-exp (SoftmaxState::Merge's rule applied to
  // all splits at once; deterministic for a given split), normalize, un-rotate, scatter back to
  // [n_q][H][D].
  o.resize(size_t(rows) * D);
  for (int kh = 0; kh < Hk; ++kh) {
    for (int r = 0; r < rows; ++r) {
      float m = -INFINITY;
      for (int sp = 0; sp < splits; ++sp)
        m = std::max(m, states[(size_t(kh) * splits + sp) * rows + r].m);
      float* out_r = o.data() + size_t(r) * D;
      std::fill(out_r, out_r + D, 0.0f);
      float l = 0.0f;
      if (m != -INFINITY) {  // else no key: the output is zeros rather than 0/0
        for (int sp = 0; sp < splits; ++sp) {
          const size_t it = size_t(kh) * splits + sp;
          const attn::SoftmaxRow& st = states[it * rows + r];
          if (st.m == -INFINITY) continue;  // empty split
          const float f = std::exp(st.m - m);
          l += st.l * f;
          const float* a = acc.data() + (it * rows + r) * D;
          for (int d = 0; d < D; ++d) out_r[d] += a[d] * f;
        }
      }
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      for (int d = 0; d < D; ++d) out_r[d] *= inv;
    }
    if (cache.rotated()) FwhtBatch(o.data(), rows, D);
    for (int r = 0; r < rows; ++r) {
      const int i = r / g, j = r % g;
      std::copy_n(o.begin() + ptrdiff_t(r) * D, D, out + (size_t(i) * H + kh * g + j) * D);
    }
  }
  return Status::Ok();
}

}  // namespace kvarn
