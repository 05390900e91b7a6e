#include "cache/kv_cache.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "quant/kernel_layout.h"

namespace kvarn {
namespace {

std::string Num(size_t v) { return std::to_string(v); }

}  // namespace

// ------------------------------------------------------------------ SeqView

const f16_t* SeqView::F16K(int b, int layer, int head) const {
  const auto& c = cache_->config_;
  const size_t off = (size_t(layer) * c.n_kv_heads + head) * size_t(G_) * c.head_dim;
  return reinterpret_cast<const f16_t*>(blocks_[size_t(b)].data) + off;
}
const f16_t* SeqView::F16V(int b, int layer, int head) const {
  const auto& c = cache_->config_;
  const size_t plane = size_t(c.n_layers) * c.n_kv_heads * G_ * c.head_dim;
  return F16K(b, layer, head) + plane;
}
const uint8_t* SeqView::Record(int b, int layer, int head) const {
  const auto& c = cache_->config_;
  return blocks_[size_t(b)].data + (size_t(layer) * c.n_kv_heads + head) * cache_->record_bytes_;
}
void SeqView::ReferenceRecord(int b, int layer, int head, uint8_t* out) const {
  const uint8_t* rec = Record(b, layer, head);
  if (cache_->kernel_layout_) {
    FromKernelLayout(cache_->shape_.layout(), rec, out);
  } else {
    std::memcpy(out, rec, cache_->record_bytes_);
  }
}
const uint8_t* SeqView::RowsK(int b, int layer, int head) const {
  const auto& c = cache_->config_;
  return blocks_[size_t(b)].data +
         (size_t(layer) * c.n_kv_heads + head) * size_t(G_) * cache_->row_bytes_;
}
const uint8_t* SeqView::RowsV(int b, int layer, int head) const {
  const auto& c = cache_->config_;
  const size_t plane = size_t(c.n_layers) * c.n_kv_heads * G_ * cache_->row_bytes_;
  return RowsK(b, layer, head) + plane;
}

// ------------------------------------------------------------------ KvCache

KvCache::KvCache(const KvCacheConfig& config) : config_(config) {}

KvCache::~KvCache() {
  for (Sequence& s : seqs_)
    for (Block& b : s.blocks) std::free(b.data);
}

Status KvCache::Create(const KvCacheConfig& config, std::unique_ptr<KvCache>* out) {
  if (config.n_layers < 1 || config.n_kv_heads < 1)
    return InvalidArgument("KV cache: layers " + std::to_string(config.n_layers) + ", KV heads " +
                           std::to_string(config.n_kv_heads) + " must be positive");
  if (config.max_tokens < 1)
    return InvalidArgument("KV cache: max_tokens " + std::to_string(config.max_tokens));
  std::unique_ptr<KvCache> c(new KvCache(config));
  KVARN_RETURN_IF_ERROR(Codec::Create(config.codec, config.head_dim, &c->codec_)
                            .WithContext("KV cache"));
  const CodecSpec& spec = config.codec;
  if (spec.is_tile()) {
    c->G_ = spec.group;
    c->shape_ = TileShape{config.head_dim, spec.group, spec.k_bits, spec.v_bits,
                          spec.effective_iters(), spec.rotate};
    c->record_bytes_ = c->codec_->RecordBytes(spec.group);
    c->kernel_layout_ = KernelLayoutSupported(c->shape_.layout());
    if (c->kernel_layout_) c->encode_scratch_.resize(c->record_bytes_);
  } else {
    if (config.per_token_block < 1 || config.per_token_block > 4096)
      return InvalidArgument("KV cache: per_token_block " +
                             std::to_string(config.per_token_block));
    c->G_ = config.per_token_block;
    c->row_bytes_ = c->codec_->RecordBytes(1) / 2;
  }
  *out = std::move(c);
  return Status::Ok();
}

size_t KvCache::PageBytes(BlockKind kind) const {
  const size_t lh = size_t(config_.n_layers) * config_.n_kv_heads;
  switch (kind) {
    case BlockKind::kF16: return 2 * lh * G_ * config_.head_dim * sizeof(f16_t);
    case BlockKind::kRecord: return lh * record_bytes_;
    case BlockKind::kRows: return 2 * lh * G_ * row_bytes_;
  }
  return 0;
}

BlockKind KvCache::EncodedKind() const {
  return config_.codec.is_tile() ? BlockKind::kRecord : BlockKind::kRows;
}

uint8_t* KvCache::Allocate(BlockKind kind) {
  const size_t bytes = PageBytes(kind);
  if (used_bytes_ + bytes > config_.byte_budget) return nullptr;
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) return nullptr;
  used_bytes_ += bytes;
  return static_cast<uint8_t*>(p);
}

void KvCache::Release(BlockKind kind, uint8_t* page) {
  used_bytes_ -= PageBytes(kind);
  std::free(page);
}

Status KvCache::CheckSeq(int seq) const {
  if (seq < 0 || size_t(seq) >= seqs_.size() || !seqs_[size_t(seq)].live)
    return InvalidArgument("KV cache: no live sequence " + std::to_string(seq));
  return Status::Ok();
}

Status KvCache::AddSequence(int* seq) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    if (!seqs_[i].live) {
      seqs_[i] = Sequence();
      seqs_[i].live = true;
      *seq = int(i);
      return Status::Ok();
    }
  }
  seqs_.emplace_back();
  seqs_.back().live = true;
  *seq = int(seqs_.size() - 1);
  return Status::Ok();
}

Status KvCache::RemoveSequence(int seq) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  for (Block& b : s.blocks) Release(b.kind, b.data);
  s = Sequence();
  return Status::Ok();
}

Status KvCache::CopySequence(int src, int* dst) {
  KVARN_RETURN_IF_ERROR(CheckSeq(src));
  if (seqs_[size_t(src)].step_begin >= 0)
    return InvalidArgument("KV cache: CopySequence of sequence " + std::to_string(src) +
                           " inside an open step");
  size_t need = 0;
  for (const Block& b : seqs_[size_t(src)].blocks) need += PageBytes(b.kind);
  if (used_bytes_ + need > config_.byte_budget)
    return OutOfMemory("KV cache: copying sequence " + std::to_string(src) + " needs " +
                             Num(need) + " bytes, " + Num(config_.byte_budget - used_bytes_) +
                             " left of the budget of " + Num(config_.byte_budget));
  std::vector<Block> pages;
  for (const Block& b : seqs_[size_t(src)].blocks) {
    uint8_t* p = Allocate(b.kind);
    if (p == nullptr) {
      for (Block& q : pages) Release(q.kind, q.data);
      return OutOfMemory("KV cache: allocation of " + Num(PageBytes(b.kind)) + " bytes failed");
    }
    std::memcpy(p, b.data, PageBytes(b.kind));
    pages.push_back(Block{b.kind, p});
  }
  int id = 0;
  KVARN_RETURN_IF_ERROR(AddSequence(&id));  // may grow seqs_: index, never hold a reference
  Sequence& d = seqs_[size_t(id)];
  const Sequence& s = seqs_[size_t(src)];
  d.length = s.length;
  d.committed = s.committed;
  d.encoded_blocks = s.encoded_blocks;
  d.blocks = std::move(pages);
  *dst = id;
  return Status::Ok();
}

Status KvCache::EncodeBlock(Sequence& s, int b) {
  uint8_t* rec = Allocate(BlockKind::kRecord);
  if (rec == nullptr)
    return OutOfMemory("KV cache byte budget exhausted encoding block " + std::to_string(b) +
                       ": need " + Num(PageBytes(BlockKind::kRecord)) + " more bytes, " +
                       Num(used_bytes_) + " of " + Num(config_.byte_budget) + " in use");
  const Block& src = s.blocks[size_t(b)];
  const int L = config_.n_layers, H = config_.n_kv_heads, D = config_.head_dim;
  const size_t tile = size_t(G_) * D;
  const f16_t* k = reinterpret_cast<const f16_t*>(src.data);
  const f16_t* v = k + size_t(L) * H * tile;
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      const size_t i = size_t(l) * H + h;
      if (kernel_layout_) {
        EncodeTile(shape_, k + i * tile, v + i * tile, encode_scratch_.data(), nullptr);
        ToKernelLayout(shape_.layout(), encode_scratch_.data(), rec + i * record_bytes_);
      } else {
        EncodeTile(shape_, k + i * tile, v + i * tile, rec + i * record_bytes_, nullptr);
      }
    }
  }
  Release(BlockKind::kF16, src.data);
  s.blocks[size_t(b)] = Block{BlockKind::kRecord, rec};
  return Status::Ok();
}

Status KvCache::BeginStep(int seq, int n_new) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin >= 0)
    return InvalidArgument("KV cache: sequence " + std::to_string(seq) +
                           " already has an open step (EndStep missing)");
  if (n_new < 1) return InvalidArgument("KV cache: step of " + std::to_string(n_new) + " tokens");
  if (s.length + n_new > config_.max_tokens)
    return OutOfRange("context full: sequence " + std::to_string(seq) + " holds " +
                      std::to_string(s.length) + " tokens, a step of " + std::to_string(n_new) +
                      " would exceed the context of " + std::to_string(config_.max_tokens));
  // Commit rule (spec §2.6): encode every full non-sink block whose tokens all came from
  // earlier steps. Each encode frees more (fp16 page) than it allocates (record page).
  if (config_.codec.is_tile()) {
    const int complete = s.committed / G_;
    for (int b = std::max(s.encoded_blocks, 1); b < complete; ++b) {
      KVARN_RETURN_IF_ERROR(EncodeBlock(s, b));
      s.encoded_blocks = b + 1;
    }
  }
  // Reserve pages for the new positions, all or nothing.
  const int need_blocks = (s.length + n_new + G_ - 1) / G_ - int(s.blocks.size());
  const BlockKind kind = config_.codec.is_tile() ? BlockKind::kF16 : BlockKind::kRows;
  const size_t need = size_t(std::max(need_blocks, 0)) * PageBytes(kind);
  if (used_bytes_ + need > config_.byte_budget)
    return OutOfMemory("KV cache byte budget exhausted: sequence " + std::to_string(seq) +
                       " needs " + Num(need) + " more bytes for a step of " +
                       std::to_string(n_new) + " tokens; " + Num(used_bytes_) + " of " +
                       Num(config_.byte_budget) + " bytes in use");
  for (int i = 0; i < need_blocks; ++i) {
    uint8_t* page = Allocate(kind);
    if (page == nullptr) {  // the OS refused memory the budget allowed: undo this step's pages
      for (int j = 0; j < i; ++j) {
        Release(kind, s.blocks.back().data);
        s.blocks.pop_back();
      }
      return OutOfMemory("KV cache: allocation of " + Num(PageBytes(kind)) + " bytes failed");
    }
    s.blocks.push_back(Block{kind, page});
  }
  s.step_begin = s.length;
  s.length += n_new;
  return Status::Ok();
}

Status KvCache::Write(int seq, int layer, int pos, int n, const float* k, const float* v) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin < 0)
    return InvalidArgument("KV cache: Write outside a step (BeginStep missing)");
  if (layer < 0 || layer >= config_.n_layers)
    return InvalidArgument("KV cache: layer " + std::to_string(layer) + " out of range");
  if (n < 1 || pos < s.step_begin || pos + n > s.length)
    return InvalidArgument("KV cache: write of positions [" + std::to_string(pos) + ", " +
                           std::to_string(pos + n) + ") outside this step's [" +
                           std::to_string(s.step_begin) + ", " + std::to_string(s.length) + ")");
  const int H = config_.n_kv_heads, D = config_.head_dim;
  const size_t vec = size_t(H) * D;
  auto where = [&](int t, int h, const char* what, const Status& st) {
    return Status(st.code(), "layer " + std::to_string(layer) + ", position " +
                                 std::to_string(pos + t) + ", KV head " + std::to_string(h) +
                                 ", " + what + ": " + st.message());
  };
  if (config_.codec.is_tile()) {
    // Stage everything first so a bad value leaves the cache untouched.
    stage_f16_.resize(std::max(stage_f16_.size(), 2 * size_t(n) * vec));
    f16_t* kp = stage_f16_.data();
    f16_t* vp = kp + size_t(n) * vec;
    for (int t = 0; t < n; ++t) {
      for (int h = 0; h < H; ++h) {
        const size_t i = size_t(t) * vec + size_t(h) * D;
        Status st = PrepareTokens(shape_, k + i, 1, kp + i);
        if (!st.ok()) return where(t, h, "K", st);
        st = PrepareTokens(shape_, v + i, 1, vp + i);
        if (!st.ok()) return where(t, h, "V", st);
      }
    }
    const size_t tile = size_t(G_) * D;
    const size_t plane = size_t(config_.n_layers) * H * tile;
    for (int t = 0; t < n; ++t) {
      const int p = pos + t;
      f16_t* page = reinterpret_cast<f16_t*>(s.blocks[size_t(p / G_)].data);
      for (int h = 0; h < H; ++h) {
        f16_t* dst = page + (size_t(layer) * H + h) * tile + size_t(p % G_) * D;
        std::memcpy(dst, kp + size_t(t) * vec + size_t(h) * D, D * sizeof(f16_t));
        std::memcpy(dst + plane, vp + size_t(t) * vec + size_t(h) * D, D * sizeof(f16_t));
      }
    }
    return Status::Ok();
  }
  stage_rows_.resize(std::max(stage_rows_.size(), size_t(n) * H * 2 * row_bytes_));
  uint8_t* staged = stage_rows_.data();
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < H; ++h) {
      const size_t i = size_t(t) * vec + size_t(h) * D;
      const Status st = codec_->Encode(k + i, v + i, 1,
                                       staged + (size_t(t) * H + h) * 2 * row_bytes_,
                                       2 * row_bytes_);
      if (!st.ok()) return where(t, h, "K/V", st);
    }
  }
  const size_t plane = size_t(config_.n_layers) * H * G_ * row_bytes_;
  for (int t = 0; t < n; ++t) {
    const int p = pos + t;
    uint8_t* page = s.blocks[size_t(p / G_)].data;
    for (int h = 0; h < H; ++h) {
      uint8_t* dst = page + ((size_t(layer) * H + h) * G_ + size_t(p % G_)) * row_bytes_;
      const uint8_t* src = staged + (size_t(t) * H + h) * 2 * row_bytes_;
      std::memcpy(dst, src, row_bytes_);
      std::memcpy(dst + plane, src + row_bytes_, row_bytes_);
    }
  }
  return Status::Ok();
}

Status KvCache::EndStep(int seq) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin < 0) return InvalidArgument("KV cache: EndStep without BeginStep");
  s.committed = s.length;
  s.step_begin = -1;
  return Status::Ok();
}

Status KvCache::AbortStep(int seq) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin < 0) return InvalidArgument("KV cache: AbortStep without BeginStep");
  s.length = s.step_begin;
  s.step_begin = -1;
  return Truncate(seq, s.length);
}

Status KvCache::Truncate(int seq, int new_length) {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  Sequence& s = seqs_[size_t(seq)];
  if (s.step_begin >= 0) return InvalidArgument("KV cache: Truncate inside an open step");
  if (new_length < 0 || new_length > s.length)
    return OutOfRange("KV cache: truncate sequence " + std::to_string(seq) + " of " +
                      std::to_string(s.length) + " tokens to " + std::to_string(new_length));
  const int limit = config_.codec.is_tile() && s.encoded_blocks > 1 ? s.encoded_blocks * G_ : 0;
  if (new_length < limit)
    return OutOfRange("KV cache: cannot roll sequence " + std::to_string(seq) + " back to " +
                      std::to_string(new_length) + " tokens: tokens below " +
                      std::to_string(limit) + " are encoded");
  const size_t keep = size_t((new_length + G_ - 1) / G_);
  while (s.blocks.size() > keep) {
    Release(s.blocks.back().kind, s.blocks.back().data);
    s.blocks.pop_back();
  }
  s.length = new_length;
  s.committed = std::min(s.committed, new_length);
  return Status::Ok();
}

int KvCache::Length(int seq) const {
  return CheckSeq(seq).ok() ? seqs_[size_t(seq)].length : 0;
}

int KvCache::EncodedTokens(int seq) const {
  if (!CheckSeq(seq).ok() || !config_.codec.is_tile()) return 0;
  return (seqs_[size_t(seq)].encoded_blocks - 1) * G_;
}

Status KvCache::View(int seq, SeqView* out) const {
  KVARN_RETURN_IF_ERROR(CheckSeq(seq));
  const Sequence& s = seqs_[size_t(seq)];
  out->cache_ = this;
  out->length_ = s.length;
  out->G_ = G_;
  out->blocks_.clear();
  for (const Block& b : s.blocks) out->blocks_.push_back(BlockRef{b.kind, b.data});
  return Status::Ok();
}

CacheStats KvCache::Stats() const {
  CacheStats st;
  st.budget = config_.byte_budget;
  st.scratch_bytes = stage_f16_.capacity() * sizeof(f16_t) + stage_rows_.capacity() +
                     encode_scratch_.capacity();
  for (const Sequence& s : seqs_) {
    if (!s.live) continue;
    st.tokens += s.length;
    for (size_t b = 0; b < s.blocks.size(); ++b) {
      const size_t bytes = PageBytes(s.blocks[b].kind);
      switch (s.blocks[b].kind) {
        case BlockKind::kRecord: st.record_bytes += bytes; break;
        case BlockKind::kRows: st.row_bytes += bytes; break;
        case BlockKind::kF16: (b == 0 ? st.sink_bytes : st.tail_bytes) += bytes; break;
      }
    }
  }
  return st;
}

}  // namespace kvarn
