// libFuzzer target: the session-file loader (LoadSession: header parsing and validation,
// matching against a model identity and a cache, prefix reuse, block import) on arbitrary bytes.
//
// Input: byte 0 holds flags, the rest is the file.
//   bit 0: patch the header's CRC-32 (at header_bytes - 4, when that lies inside the input) to
//          the CRC of the bytes before it, so mutations of header fields get past the checksum
//          and reach the field validation behind it;
//   bit 1: also patch every block's CRC in the block table (found by parsing the header), so
//          image bytes are imported;
//   bit 2: restore a prefix: the prompt is the file's own tokens cut at byte 1 of the input,
//          with one token changed after the cut;
//   bits 3-4: which cache restores it (kvarn_k4v2_g16, f16, q4_0, and kvarn_k4v2_g16 again
//          with a byte budget of 3 pages).
// Invariants checked, beyond the sanitizers: a failed load leaves the cache's byte count as it
// was; a successful one gives a sequence of exactly `reused` tokens whose blocks, exported,
// are byte for byte the file's images (for every block kept whole).
//
// KVARN_SESSION_FUZZ_SEEDS=DIR writes the seed corpus (valid files of every cache here) to DIR
// and exits: fuzz/corpus/session_fuzz was made that way.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "common/rng.h"
#include "session/checksum.h"
#include "session/session_file.h"

namespace {

using kvarn::KvCache;

// The identity every seed was written with (a model that does not exist; 64 token ids).
kvarn::ModelIdentity Identity() {
  kvarn::ModelIdentity m;
  m.file_size = 1000;
  for (size_t i = 0; i < 32; ++i) m.fingerprint[i] = uint8_t(i);
  m.arch = "llama";
  m.name = "fuzz";
  m.n_layers = 2;
  m.n_kv_heads = 1;
  m.head_dim = 64;
  m.n_vocab = 64;
  return m;
}

std::unique_ptr<KvCache> MakeCache(int which) {
  static const char* codecs[] = {"kvarn_k4v2_g16", "f16", "q4_0", "kvarn_k4v2_g16"};
  kvarn::KvCacheConfig c;
  c.n_layers = 2;
  c.n_kv_heads = 1;
  c.head_dim = 64;
  c.max_tokens = 200;
  c.per_token_block = 16;
  (void)kvarn::ParseCodecSpec(codecs[which], &c.codec);
  std::unique_ptr<KvCache> out;
  if (which == 3) {
    std::unique_ptr<KvCache> probe;
    (void)KvCache::Create(c, &probe);
    c.byte_budget = 3 * probe->PageBytes(kvarn::BlockKind::kF16);
  }
  if (!KvCache::Create(c, &out).ok()) std::abort();
  return out;
}

void PutU32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
}

uint64_t GetU64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(b[at + size_t(i)]) << (8 * i);
  return v;
}

void WriteSeeds(const std::string& dir) {
  const kvarn::ModelIdentity id = Identity();
  struct Seed {
    int cache;
    std::vector<int> steps;
    bool logits;
  };
  const Seed seeds[] = {{0, {40, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, true},
                        {0, {10}, false},
                        {0, {16, 16, 16}, true},
                        {1, {20, 1, 1, 1}, true},
                        {2, {35}, false},
                        {1, {}, false}};
  int i = 0;
  for (const Seed& s : seeds) {
    auto cache = MakeCache(s.cache);
    int seq = 0;
    (void)cache->AddSequence(&seq);
    kvarn::Rng rng(uint64_t(i) + 1);
    std::vector<int32_t> tokens;
    for (int n : s.steps) {
      const int pos = cache->Length(seq);
      if (!cache->BeginStep(seq, n).ok()) std::abort();
      for (int l = 0; l < 2; ++l) {
        std::vector<float> k(size_t(n) * 64), v(k.size());
        for (size_t j = 0; j < k.size(); ++j)
          k[j] = float(rng.Normal()), v[j] = float(rng.Normal());
        if (!cache->Write(seq, l, pos, n, k.data(), v.data()).ok()) std::abort();
      }
      if (!cache->EndStep(seq).ok()) std::abort();
      for (int t = 0; t < n; ++t) tokens.push_back(int32_t(rng.Next() % 64));
    }
    std::vector<float> logits(64);
    for (float& x : logits) x = float(rng.Normal());
    const std::string path = dir + "/seed_" + std::to_string(i++);
    const kvarn::Status st =
        kvarn::WriteSession(path, id, *cache, seq, tokens, s.logits ? logits.data() : nullptr);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      std::abort();
    }
    // The corpus holds the flags byte in front of the file.
    std::FILE* f = std::fopen(path.c_str(), "rb");
    std::vector<uint8_t> bytes(1, uint8_t(s.cache << 3));
    int c;
    while ((c = std::fgetc(f)) != EOF) bytes.push_back(uint8_t(c));
    std::fclose(f);
    f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("KVARN_SESSION_FUZZ_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> file(data + 1, data + size);
  // Header CRC patch: the prefix is magic (8), version, layout, flags (4 each), header bytes (8).
  const bool have_prefix = file.size() >= 28;
  const uint64_t header_bytes = have_prefix ? GetU64(file, 20) : 0;
  const bool header_inside = have_prefix && header_bytes >= 32 && header_bytes <= file.size();
  if ((flags & 2) && header_inside) {
    // Block CRCs: parse with the loader's own reader on a header-patched copy, then patch the
    // table entries (each 24 bytes, CRC at +16) found just before the logits and header CRC.
    std::vector<uint8_t> tmp = file;
    PutU32(tmp, header_bytes - 4, kvarn::Crc32(tmp.data(), header_bytes - 4));
    auto src = kvarn::MemorySource(tmp.data(), tmp.size(), "fuzz");
    kvarn::SessionHeader h;
    if (kvarn::ReadSessionHeader(*src, &h).ok()) {
      const size_t logits = h.logits.size() * 4;
      size_t table = header_bytes - 4 - logits - h.blocks.size() * 24;
      uint64_t off = header_bytes;
      for (size_t b = 0; b < h.blocks.size(); ++b, table += 24) {
        PutU32(file, table + 16, kvarn::Crc32(file.data() + off, h.blocks[b].bytes));
        off += h.blocks[b].bytes;
      }
    }
  }
  if ((flags & 3) && header_inside)
    PutU32(file, header_bytes - 4, kvarn::Crc32(file.data(), header_bytes - 4));

  auto cache = MakeCache((flags >> 3) & 3);
  const size_t before = cache->Stats().total();
  std::vector<int32_t> prompt;
  const int32_t* p = nullptr;
  if (flags & 4) {
    auto src = kvarn::MemorySource(file.data(), file.size(), "fuzz");
    kvarn::SessionHeader h;
    if (kvarn::ReadSessionHeader(*src, &h).ok() && size >= 2) {
      prompt = h.tokens;
      const size_t cut = prompt.empty() ? 0 : data[1] % prompt.size();
      prompt.resize(cut + 1);
      prompt[cut] = (prompt[cut] + 1) % 64;
    }
    p = prompt.data();
  }
  auto src = kvarn::MemorySource(file.data(), file.size(), "fuzz");
  kvarn::RestoredSession r;
  const kvarn::Status st = kvarn::LoadSession(*src, Identity(), *cache, p, int(prompt.size()), &r);
  if (!st.ok()) {
    if (cache->Stats().total() != before) std::abort();  // a failed load allocated something
    return 0;
  }
  if (cache->Length(r.seq) != r.reused || r.reused > int(r.tokens.size())) std::abort();
  // Blocks kept whole hold the file's image bytes.
  kvarn::SessionHeader h;
  auto again = kvarn::MemorySource(file.data(), file.size(), "fuzz");
  if (!kvarn::ReadSessionHeader(*again, &h).ok()) std::abort();
  std::vector<KvCache::BlockImage> blocks;
  if (!cache->ExportBlocks(r.seq, &blocks).ok()) std::abort();
  uint64_t off = h.header_bytes;
  std::vector<uint8_t> image;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const size_t n = cache->BlockImageBytes(blocks[b]);
    if (blocks[b].tokens == h.blocks[b].image.tokens) {
      image.resize(n);
      if (n != h.blocks[b].bytes || !cache->ExportBlock(r.seq, int(b), image.data(), n).ok() ||
          std::memcmp(image.data(), file.data() + off, n) != 0)
        std::abort();
    }
    off += h.blocks[b].bytes;
  }
  return 0;
}
