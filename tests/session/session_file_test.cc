// Session files on synthetic caches: the checksums against their standard test vectors, a
// save/load round trip, the prefix a prompt reuses, refusal of another model, codec, shape or
// version, and a named error for every truncation and for corruption anywhere in a file, with
// the cache left unchanged.
#include "session/session_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "session/checksum.h"

namespace kvarn {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/kvarn_session_test_" +
         std::to_string(::getpid()) + "_" + name;
}

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

ModelIdentity FakeModel(int L, int H, int D) {
  ModelIdentity m;
  m.file_size = 123456789;
  for (size_t i = 0; i < 32; ++i) m.fingerprint[i] = uint8_t(i * 7 + 1);
  m.arch = "llama";
  m.name = "synthetic";
  m.n_layers = L;
  m.n_kv_heads = H;
  m.head_dim = D;
  m.n_vocab = 1000;
  return m;
}

std::unique_ptr<KvCache> MakeCache(const char* codec, int L, int H, int D, int max_tokens = 1024) {
  KvCacheConfig c;
  c.n_layers = L;
  c.n_kv_heads = H;
  c.head_dim = D;
  EXPECT_TRUE(ParseCodecSpec(codec, &c.codec).ok());
  c.max_tokens = max_tokens;
  std::unique_ptr<KvCache> out;
  EXPECT_TRUE(KvCache::Create(c, &out).ok());
  return out;
}

void Step(KvCache& c, int seq, int n) {
  const int L = c.config().n_layers, H = c.config().n_kv_heads, D = c.config().head_dim;
  const int pos = c.Length(seq);
  ASSERT_TRUE(c.BeginStep(seq, n).ok());
  for (int l = 0; l < L; ++l) {
    std::vector<float> k(size_t(n) * H * D), v(k.size());
    for (int t = 0; t < n; ++t) {
      Rng rng(uint64_t(pos + t) * 7919 + uint64_t(l));
      for (size_t i = 0; i < size_t(H) * D; ++i) {
        k[size_t(t) * H * D + i] = float(rng.Normal());
        v[size_t(t) * H * D + i] = float(rng.Normal());
      }
    }
    ASSERT_TRUE(c.Write(seq, l, pos, n, k.data(), v.data()).ok());
  }
  ASSERT_TRUE(c.EndStep(seq).ok());
}

std::vector<int32_t> Tokens(int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = (i * 37 + 11) % 1000;
  return t;
}

// The block images of a sequence, to compare two caches byte for byte.
std::vector<std::vector<uint8_t>> Images(const KvCache& c, int seq) {
  std::vector<KvCache::BlockImage> blocks;
  EXPECT_TRUE(c.ExportBlocks(seq, &blocks).ok());
  std::vector<std::vector<uint8_t>> out;
  for (size_t b = 0; b < blocks.size(); ++b) {
    out.emplace_back(c.BlockImageBytes(blocks[b]));
    EXPECT_TRUE(c.ExportBlock(seq, int(b), out.back().data(), out.back().size()).ok());
  }
  return out;
}

// A saved sequence of n tokens of `codec` (G = 32 for tile codecs), with logits.
struct Saved {
  std::unique_ptr<KvCache> cache;
  int seq = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  std::string path;
};

Saved SaveOne(const char* codec, int n, const std::string& name, bool logits = true) {
  Saved s;
  s.cache = MakeCache(codec, 2, 2, 64);
  EXPECT_TRUE(s.cache->AddSequence(&s.seq).ok());
  Step(*s.cache, s.seq, std::min(n, 70));
  for (int i = std::min(n, 70); i < n; ++i) Step(*s.cache, s.seq, 1);
  s.tokens = Tokens(n);
  for (int i = 0; i < 1000; ++i) s.logits.push_back(float(i % 17) * 0.25f - 2.0f);
  s.path = TempPath(name);
  const Status st = WriteSession(s.path, FakeModel(2, 2, 64), *s.cache, s.seq, s.tokens,
                                 logits ? s.logits.data() : nullptr);
  EXPECT_TRUE(st.ok()) << st.message();
  return s;
}

TEST(Checksum, StandardVectors) {
  const std::string check = "123456789";
  EXPECT_EQ(Crc32(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xCBF43926u);
  // Chained calls equal one call.
  const uint32_t a = Crc32(reinterpret_cast<const uint8_t*>(check.data()), 5);
  EXPECT_EQ(Crc32(reinterpret_cast<const uint8_t*>(check.data()) + 5, 4, a), 0xCBF43926u);
  auto hex = [](const std::array<uint8_t, 32>& d) {
    char buf[65];
    for (size_t i = 0; i < 32; ++i) std::snprintf(buf + 2 * i, 3, "%02x", d[i]);
    return std::string(buf);
  };
  Sha256 h;
  h.Update(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_EQ(hex(h.Finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // FIPS 180-4's two-block message, fed in awkward pieces.
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 g;
  for (size_t i = 0; i < two.size(); i += 7)
    g.Update(reinterpret_cast<const uint8_t*>(two.data()) + i, std::min<size_t>(7, two.size() - i));
  EXPECT_EQ(hex(g.Finish()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 e;
  EXPECT_EQ(hex(e.Finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(SessionFile, RoundTripRestoresTheSameBytesAndLogits) {
  for (const char* codec : {"kvarn_k4v2_g32", "f16", "q8_0"}) {
    Saved s = SaveOne(codec, 100, std::string("rt_") + codec);
    SessionHeader h;
    std::unique_ptr<ByteSource> src;
    ASSERT_TRUE(OpenFileSource(s.path, &src).ok());
    ASSERT_TRUE(ReadSessionHeader(*src, &h).ok());
    EXPECT_EQ(h.tokens, s.tokens);
    EXPECT_EQ(h.logits, s.logits);
    EXPECT_EQ(h.codec_name, s.cache->config().codec.Name());
    EXPECT_EQ(h.model.name, "synthetic");

    auto c = MakeCache(codec, 2, 2, 64);
    RestoredSession r;
    const Status st = LoadSessionFile(s.path, FakeModel(2, 2, 64), *c, nullptr, 0, &r);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(r.reused, 100);
    EXPECT_EQ(r.tokens, s.tokens);
    EXPECT_EQ(r.logits, s.logits);
    EXPECT_EQ(c->Length(r.seq), 100);
    EXPECT_EQ(c->EncodedTokens(r.seq), s.cache->EncodedTokens(s.seq)) << codec;
    EXPECT_EQ(Images(*c, r.seq), Images(*s.cache, s.seq)) << codec;
    // The file is exactly the header plus the images: unused rows of the tail are not stored.
    size_t image_bytes = 0;
    for (const auto& im : Images(*s.cache, s.seq)) image_bytes += im.size();
    EXPECT_EQ(ReadAll(s.path).size(), h.header_bytes + image_bytes);
    std::remove(s.path.c_str());
  }
}

TEST(SessionFile, PromptReusesTheLongestRestorablePrefix) {
  // kvarn G = 32, 100 tokens saved after a 70-token prefill and 30 single steps: blocks
  // 0 (sink, fp16), 1 and 2 records (encoded by the decode steps), 3 fp16 (96..99).
  Saved s = SaveOne("kvarn_k4v2_g32", 100, "prefix");
  SessionHeader h;
  std::unique_ptr<ByteSource> src;
  ASSERT_TRUE(OpenFileSource(s.path, &src).ok());
  ASSERT_TRUE(ReadSessionHeader(*src, &h).ok());
  ASSERT_EQ(h.blocks[2].image.kind, BlockKind::kRecord);
  ASSERT_EQ(h.blocks[3].image.kind, BlockKind::kF16);
  std::vector<int32_t> p = s.tokens;
  EXPECT_EQ(ReusablePrefix(h, p.data(), 100), 100);  // whole, logits in the file
  EXPECT_EQ(ReusablePrefix(h, nullptr, 0), 100);
  EXPECT_EQ(ReusablePrefix(h, p.data(), 99), 98);  // last token re-evaluated: 98 (fp16 tail)
  p.push_back(5);
  EXPECT_EQ(ReusablePrefix(h, p.data(), 101), 100);  // a longer prompt reuses everything
  p = s.tokens;
  p[80] = (p[80] + 1) % 1000;  // differs inside record block 2 (64..95)
  EXPECT_EQ(ReusablePrefix(h, p.data(), 100), 64);
  p = s.tokens;
  p[10] = (p[10] + 1) % 1000;  // inside the fp16 sink
  EXPECT_EQ(ReusablePrefix(h, p.data(), 100), 10);
  p[0] = (p[0] + 1) % 1000;
  EXPECT_EQ(ReusablePrefix(h, p.data(), 100), 0);
  EXPECT_EQ(ReusablePrefix(h, p.data(), 0), 0);

  // Restoring a prefix: the kept blocks hold the original's bytes; no logits come back.
  p = s.tokens;
  p[80] = (p[80] + 1) % 1000;
  auto c = MakeCache("kvarn_k4v2_g32", 2, 2, 64);
  RestoredSession r;
  ASSERT_TRUE(LoadSessionFile(s.path, FakeModel(2, 2, 64), *c, p.data(), 100, &r).ok());
  EXPECT_EQ(r.reused, 64);
  EXPECT_TRUE(r.logits.empty());
  const auto a = Images(*c, r.seq), b = Images(*s.cache, s.seq);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);

  // Without stored logits an identical prompt re-evaluates its last token.
  Saved n = SaveOne("f16", 50, "nologits", /*logits=*/false);
  SessionHeader hn;
  ASSERT_TRUE(OpenFileSource(n.path, &src).ok());
  ASSERT_TRUE(ReadSessionHeader(*src, &hn).ok());
  EXPECT_TRUE(hn.logits.empty());
  EXPECT_EQ(ReusablePrefix(hn, n.tokens.data(), 50), 49);
  std::remove(s.path.c_str());
  std::remove(n.path.c_str());
}

TEST(SessionFile, AnotherModelCodecOrShapeIsRefusedByName) {
  Saved s = SaveOne("kvarn_k4v2_g32", 60, "mismatch");
  auto expect_refused = [&](const ModelIdentity& m, KvCache& c, const char* text) {
    const size_t before = c.Stats().total();
    RestoredSession r;
    const Status st = LoadSessionFile(s.path, m, c, nullptr, 0, &r);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
    EXPECT_EQ(c.Stats().total(), before);
  };
  auto same = MakeCache("kvarn_k4v2_g32", 2, 2, 64);
  ModelIdentity other = FakeModel(2, 2, 64);
  other.fingerprint[5] ^= 1;
  expect_refused(other, *same, "saved for another model");
  other = FakeModel(2, 2, 64);
  other.file_size += 1;
  expect_refused(other, *same, "saved for another model");
  auto f16 = MakeCache("f16", 2, 2, 64);
  expect_refused(FakeModel(2, 2, 64), *f16, "holds a kvarn_k4v2_g32 cache, this cache is f16");
  auto g64 = MakeCache("kvarn_k4v2_g64", 2, 2, 64);
  expect_refused(FakeModel(2, 2, 64), *g64, "kvarn_k4v2_g32 cache, this cache is kvarn_k4v2_g64");
  auto k2 = MakeCache("kvarn_k2v2_g32", 2, 2, 64);
  expect_refused(FakeModel(2, 2, 64), *k2, "this cache is kvarn_k2v2_g32");
  auto shape = MakeCache("kvarn_k4v2_g32", 2, 1, 64);
  expect_refused(FakeModel(2, 2, 64), *shape, "KV heads 2 in the file, 1 here");
  std::remove(s.path.c_str());
}

// Every proper prefix of a file is refused with "truncated"; a flipped bit anywhere is refused
// (the header by its checksum, an image by its own); neither allocates anything.
TEST(SessionFile, TruncatedAndCorruptedFilesGetNamedErrors) {
  Saved s = SaveOne("kvarn_k4v2_g32", 100, "damaged");
  const std::vector<uint8_t> file = ReadAll(s.path);
  SessionHeader h;
  std::unique_ptr<ByteSource> src = MemorySource(file.data(), file.size(), "good");
  ASSERT_TRUE(ReadSessionHeader(*src, &h).ok());
  auto c = MakeCache("kvarn_k4v2_g32", 2, 2, 64);
  const size_t before = c->Stats().total();
  const ModelIdentity m = FakeModel(2, 2, 64);
  auto load = [&](const std::vector<uint8_t>& bytes) {
    std::unique_ptr<ByteSource> in = MemorySource(bytes.data(), bytes.size(), "damaged.kvs");
    RestoredSession r;
    return LoadSession(*in, m, *c, nullptr, 0, &r);
  };
  // Cut points: every byte of the header's fixed start, a stride through the rest, and the
  // last bytes of the file.
  std::vector<size_t> cuts;
  for (size_t i = 0; i < 40; ++i) cuts.push_back(i);
  for (size_t i = 40; i < file.size(); i += 97) cuts.push_back(i);
  for (size_t i = 1; i <= 8; ++i) cuts.push_back(file.size() - i);
  for (size_t cut : cuts) {
    const Status st = load(std::vector<uint8_t>(file.begin(), file.begin() + ptrdiff_t(cut)));
    EXPECT_EQ(st.code(), StatusCode::kCorruptData) << cut << ": " << st.message();
    EXPECT_NE(st.message().find("truncated"), std::string::npos) << cut << ": " << st.message();
    EXPECT_EQ(c->Stats().total(), before);
  }
  std::vector<uint8_t> longer = file;
  longer.push_back(0);
  EXPECT_NE(load(longer).message().find("1 bytes after the last block image"), std::string::npos);

  Rng rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    // Half the flips land in the header, half in the images.
    const bool header = trial % 2 == 0;
    const size_t lo = header ? 8 : h.header_bytes;
    const size_t hi = header ? h.header_bytes : file.size();
    const size_t at = lo + size_t(rng.Next() % (hi - lo));
    std::vector<uint8_t> bad = file;
    bad[at] ^= uint8_t(1u << (rng.Next() % 8));
    const Status st = load(bad);
    ASSERT_FALSE(st.ok()) << "flip at " << at;
    EXPECT_EQ(c->Stats().total(), before);
    // A flip in the version or page-layout field is named as such; anywhere else the header
    // checksum, the header's own consistency checks or an image checksum name it.
    const std::string& msg = st.message();
    const bool named = msg.find("checksum mismatch") != std::string::npos ||
                       msg.find("version") != std::string::npos ||
                       msg.find("flags") != std::string::npos ||
                       msg.find("truncated") != std::string::npos ||
                       msg.find("header size") != std::string::npos ||
                       msg.find("after the last block image") != std::string::npos;
    EXPECT_TRUE(named) << "flip at " << at << ": " << msg;
    if (!header) {
      EXPECT_NE(msg.find("block"), std::string::npos) << msg;
      EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
    }
  }
  std::vector<uint8_t> magic = file;
  magic[0] = 'X';
  EXPECT_NE(load(magic).message().find("not a kvarn session file"), std::string::npos);
  std::vector<uint8_t> version = file;
  version[8] = 2;
  const Status vs = load(version);
  EXPECT_EQ(vs.code(), StatusCode::kUnsupported);
  EXPECT_NE(vs.message().find("session format version 2"), std::string::npos) << vs.message();
  std::vector<uint8_t> layout = file;
  layout[12] = 9;
  const Status ls = load(layout);
  EXPECT_EQ(ls.code(), StatusCode::kUnsupported);
  EXPECT_NE(ls.message().find("page layout version 9"), std::string::npos) << ls.message();
  std::remove(s.path.c_str());
}

TEST(SessionFile, WriteIsAtomicAndChecksItsInputs) {
  Saved s = SaveOne("f16", 20, "atomic");
  const std::vector<uint8_t> before = ReadAll(s.path);
  // A token list that does not match the sequence: refused, the old file is untouched.
  std::vector<int32_t> wrong = Tokens(19);
  EXPECT_EQ(WriteSession(s.path, FakeModel(2, 2, 64), *s.cache, s.seq, wrong, nullptr).code(),
            StatusCode::kInvalidArgument);
  std::vector<int32_t> oov = s.tokens;
  oov[3] = 1000;
  EXPECT_EQ(WriteSession(s.path, FakeModel(2, 2, 64), *s.cache, s.seq, oov, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSession(s.path, FakeModel(2, 1, 64), *s.cache, s.seq, s.tokens, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadAll(s.path), before);
  EXPECT_EQ(WriteSession("/nonexistent-dir/x.kvs", FakeModel(2, 2, 64), *s.cache, s.seq, s.tokens,
                         nullptr)
                .code(),
            StatusCode::kIoError);
  std::remove(s.path.c_str());
}

}  // namespace
}  // namespace kvarn
