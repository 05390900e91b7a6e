// GGUF reader on synthetic files: valid v2/v3 files parse with every value type, and each
// kind of malformed file gives a Status naming the field and value (never a crash; the
// sanitizer build checks that part).
#include "model/gguf.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "gguf_writer.h"

namespace kvarn {
namespace {

using gguftest::Bytes;
using gguftest::GgufWriter;
using gguftest::Put;
using gguftest::PutStr;

constexpr uint64_t kHuge = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kF32 = 0, kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12;

std::string TempPath(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "kvarn_gguf_" + info->name() + "_" + tag + ".gguf";
}

Status OpenBytes(const Bytes& b, std::unique_ptr<GgufFile>* f, const std::string& tag = "x") {
  const std::string path = TempPath(tag);
  if (!gguftest::WriteFile(path, b)) return IoError("test: cannot write " + path);
  Status s = GgufFile::Open(path, f);
  std::remove(path.c_str());
  return s;
}

// Opens bytes that must fail; returns the Status.
Status OpenFails(const Bytes& b) {
  std::unique_ptr<GgufFile> f;
  Status s = OpenBytes(b, &f);
  EXPECT_FALSE(s.ok()) << "expected a failure";
  EXPECT_EQ(f, nullptr);
  return s;
}

#define EXPECT_MSG(status, text) \
  EXPECT_NE((status).message().find(text), std::string::npos) << (status).message()

// A small valid file with every metadata type and three tensor types.
GgufWriter ValidWriter(uint32_t version) {
  GgufWriter w(version);
  w.KvString("general.architecture", "llama");
  w.Kv<uint8_t>("t.u8", GgufType::kUint8, 200);
  w.Kv<int8_t>("t.i8", GgufType::kInt8, -5);
  w.Kv<uint16_t>("t.u16", GgufType::kUint16, 60000);
  w.Kv<int16_t>("t.i16", GgufType::kInt16, -3000);
  w.KvU32("llama.block_count", 2);
  w.Kv<int32_t>("t.i32", GgufType::kInt32, -7);
  w.Kv<float>("t.f32", GgufType::kFloat32, 1.5f);
  w.Kv<uint8_t>("t.bool", GgufType::kBool, 1);
  w.Kv<uint64_t>("t.u64", GgufType::kUint64, uint64_t{1} << 40);
  w.Kv<int64_t>("t.i64", GgufType::kInt64, -(int64_t{1} << 40));
  w.Kv<double>("t.f64", GgufType::kFloat64, 0.25);
  w.KvStringArray("tokenizer.ggml.tokens", {"<s>", "", "hello"});
  w.KvArray<int32_t>("tokenizer.ggml.token_type", GgufType::kInt32, {1, 3, -2});
  w.KvArray<float>("tokenizer.ggml.scores", GgufType::kFloat32, {0.5f, -1.0f});
  w.KvArray<uint8_t>("t.bools", GgufType::kBool, {0, 1});
  w.Tensor("tok.weight", {4, 2}, kF32, 4 * 2 * 4);
  w.Tensor("blk.0.w", {64, 3}, kQ4_0, 2 * 3 * 18);
  w.Tensor("blk.1.w", {256, 1, 1, 2}, kQ4_K, 2 * 144);
  return w;
}

void CheckValid(const GgufFile& f, uint32_t version) {
  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.metadata().size(), 16u);
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");

  std::string_view arch;
  ASSERT_TRUE(f.GetString("general.architecture", &arch).ok());
  EXPECT_EQ(arch, "llama");
  uint32_t u32 = 0;
  ASSERT_TRUE(f.GetU32("llama.block_count", &u32).ok());
  EXPECT_EQ(u32, 2u);
  ASSERT_TRUE(f.GetU32("t.u8", &u32).ok());  // uint8 widens losslessly
  EXPECT_EQ(u32, 200u);
  ASSERT_TRUE(f.GetU32("t.u16", &u32).ok());
  EXPECT_EQ(u32, 60000u);
  int64_t i64 = 0;
  ASSERT_TRUE(f.GetI64("t.i8", &i64).ok());
  EXPECT_EQ(i64, -5);
  ASSERT_TRUE(f.GetI64("t.i16", &i64).ok());
  EXPECT_EQ(i64, -3000);
  ASSERT_TRUE(f.GetI64("t.i32", &i64).ok());
  EXPECT_EQ(i64, -7);
  ASSERT_TRUE(f.GetI64("t.i64", &i64).ok());
  EXPECT_EQ(i64, -(int64_t{1} << 40));
  ASSERT_TRUE(f.GetI64("t.u64", &i64).ok());
  EXPECT_EQ(i64, int64_t{1} << 40);
  uint64_t u64 = 0;
  ASSERT_TRUE(f.GetU64("t.u64", &u64).ok());
  EXPECT_EQ(u64, uint64_t{1} << 40);
  float f32 = 0;
  ASSERT_TRUE(f.GetF32("t.f32", &f32).ok());
  EXPECT_EQ(f32, 1.5f);
  ASSERT_TRUE(f.GetF32("t.f64", &f32).ok());
  EXPECT_EQ(f32, 0.25f);
  bool b = false;
  ASSERT_TRUE(f.GetBool("t.bool", &b).ok());
  EXPECT_TRUE(b);

  std::vector<std::string_view> tokens;
  ASSERT_TRUE(f.GetStringArray("tokenizer.ggml.tokens", &tokens).ok());
  EXPECT_EQ(tokens, (std::vector<std::string_view>{"<s>", "", "hello"}));
  std::vector<int32_t> types;
  ASSERT_TRUE(f.GetArrayI32("tokenizer.ggml.token_type", &types).ok());
  EXPECT_EQ(types, (std::vector<int32_t>{1, 3, -2}));
  std::vector<float> scores;
  ASSERT_TRUE(f.GetArrayF32("tokenizer.ggml.scores", &scores).ok());
  EXPECT_EQ(scores, (std::vector<float>{0.5f, -1.0f}));
  const GgufValue* bools = f.Find("t.bools");
  ASSERT_NE(bools, nullptr);
  EXPECT_EQ(bools->type, GgufType::kArray);
  EXPECT_EQ(bools->elem_type, GgufType::kBool);
  EXPECT_EQ(bools->count, 2u);
  EXPECT_EQ(f.Find("no.such.key"), nullptr);

  ASSERT_EQ(f.tensors().size(), 3u);
  const GgufTensorInfo* t = f.FindTensor("blk.0.w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->n_dims, 2u);
  EXPECT_EQ(t->ne, (std::array<int64_t, 4>{64, 3, 1, 1}));
  EXPECT_EQ(t->type, GgmlType::kQ4_0);
  EXPECT_EQ(t->n_elements, 192u);
  EXPECT_EQ(t->n_bytes, 108u);
  EXPECT_EQ(t->offset, 32u);  // after 32 bytes of F32 data, aligned to 32
  // The writer fills data byte j of the section with j * 7 + 1.
  EXPECT_EQ(f.TensorData(*t)[0], static_cast<uint8_t>(32 * 7 + 1));
  EXPECT_EQ(f.TensorData(*t) - f.TensorData(f.tensors()[0]), 32);
  const GgufTensorInfo* k = f.FindTensor("blk.1.w");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->n_dims, 4u);
  EXPECT_EQ(k->ne, (std::array<int64_t, 4>{256, 1, 1, 2}));
  EXPECT_EQ(k->n_bytes, 288u);
  EXPECT_EQ(k->offset % 32, 0u);
  EXPECT_LE(f.data_offset() + k->offset + k->n_bytes, f.file_size());
  EXPECT_EQ(f.FindTensor("missing"), nullptr);
}

TEST(GgufTest, ParsesValidV3) {
  std::unique_ptr<GgufFile> f;
  Status s = OpenBytes(ValidWriter(3).Build(), &f);
  ASSERT_TRUE(s.ok()) << s.message();
  CheckValid(*f, 3);
}

TEST(GgufTest, ParsesValidV2) {
  std::unique_ptr<GgufFile> f;
  Status s = OpenBytes(ValidWriter(2).Build(), &f);
  ASSERT_TRUE(s.ok()) << s.message();
  CheckValid(*f, 2);
}

TEST(GgufTest, EmptyHeaderParses) {
  std::unique_ptr<GgufFile> f;
  Status s = OpenBytes(GgufWriter().Build(), &f);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GgufTest, HonoursAlignment) {
  GgufWriter w;
  w.SetLayoutAlignment(256);
  w.KvU32("general.alignment", 256);
  w.Tensor("a", {3}, kF32, 12);
  w.Tensor("b", {32}, kQ8_0, 34);
  std::unique_ptr<GgufFile> f;
  Status s = OpenBytes(w.Build(), &f);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(f->alignment(), 256u);
  EXPECT_EQ(f->data_offset() % 256, 0u);
  EXPECT_EQ(f->tensors()[1].offset, 256u);
}

TEST(GgufTest, TruncatedAtEveryByteFails) {
  const Bytes full = ValidWriter(3).Build();
  const std::string path = TempPath("trunc");
  for (size_t len = 0; len < full.size(); ++len) {
    ASSERT_TRUE(gguftest::WriteFile(path, Bytes(full.begin(), full.begin() + len)));
    std::unique_ptr<GgufFile> f;
    Status s = GgufFile::Open(path, &f);
    ASSERT_FALSE(s.ok()) << "length " << len << " of " << full.size() << " parsed";
    EXPECT_EQ(s.code(), StatusCode::kCorruptData) << s.message();
    EXPECT_EQ(s.message().rfind(path, 0), 0u) << s.message();  // names the file first
    const bool says_why = s.message().find("truncated") != std::string::npos ||
                          s.message().find("exceeds") != std::string::npos;
    EXPECT_TRUE(says_why) << "length " << len << ": " << s.message();
  }
  std::remove(path.c_str());
}

TEST(GgufTest, TruncationNamesTheField) {
  const Bytes full = ValidWriter(3).Build();
  Status s = OpenFails(Bytes(full.begin(), full.begin() + 2));
  EXPECT_MSG(s, "magic");
  s = OpenFails(Bytes(full.begin(), full.begin() + 6));
  EXPECT_MSG(s, "version");
  s = OpenFails(Bytes(full.begin(), full.begin() + 12));
  EXPECT_MSG(s, "tensor count");
  s = OpenFails(Bytes(full.begin(), full.begin() + 20));
  EXPECT_MSG(s, "metadata count");
  s = OpenFails(Bytes(full.begin(), full.begin() + 30));
  EXPECT_MSG(s, "metadata #0");
  s = OpenFails(Bytes(full.end() - 1 - 288, full.end()));  // nonsense start: bad magic
  EXPECT_MSG(s, "magic");
  s = OpenFails(Bytes(full.begin(), full.end() - 1));  // one data byte short
  EXPECT_MSG(s, "'blk.1.w'");
  EXPECT_MSG(s, "exceeds the data section");
}

TEST(GgufTest, RejectsWrongMagic) {
  GgufWriter w;
  w.SetMagic(0x4C4D4747u);  // "GGML"
  Status s = OpenFails(w.Build());
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_MSG(s, "bad magic 'GGML'");
}

TEST(GgufTest, RejectsUnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
    Status s = OpenFails(GgufWriter(v).Build());
    EXPECT_EQ(s.code(), StatusCode::kUnsupported);
    EXPECT_MSG(s, "GGUF version " + std::to_string(v) + " not supported");
  }
  Status s = OpenFails(GgufWriter(0x03000000u).Build());
  EXPECT_MSG(s, "big-endian");
}

TEST(GgufTest, RejectsHugeCounts) {
  for (uint64_t n : {kHuge, kHuge - 1, uint64_t{1} << 63, GgufFile::kMaxTensorCount}) {
    GgufWriter w;
    w.SetTensorCount(n);
    Status s = OpenFails(w.Build());
    EXPECT_MSG(s, "tensor count " + std::to_string(n) + " exceeds the limit");
    GgufWriter m;
    m.SetKvCount(n);
    s = OpenFails(m.Build());
    EXPECT_MSG(s, "metadata count " + std::to_string(n) + " exceeds the limit");
  }
  // Below the cap but more than the file holds: the read of the missing pair fails.
  GgufWriter w;
  w.KvU32("a", 1);
  w.SetKvCount(GgufFile::kMaxMetadataCount - 1);
  Status s = OpenFails(w.Build());
  EXPECT_MSG(s, "metadata #1");
  EXPECT_MSG(s, "truncated");
  GgufWriter t;
  t.SetTensorCount(1000);
  s = OpenFails(t.Build());
  EXPECT_MSG(s, "tensor #0");
}

TEST(GgufTest, RejectsHugeStringLengths) {
  for (uint64_t len : {kHuge, kHuge - 7, uint64_t{1} << 40}) {
    // In a key.
    GgufWriter k;
    Bytes raw;
    Put<uint64_t>(&raw, len);
    raw.resize(raw.size() + 64, 'a');
    k.KvBytes(raw, 1);
    Status s = OpenFails(k.Build());
    EXPECT_EQ(s.code(), StatusCode::kCorruptData);
    EXPECT_MSG(s, "metadata #0: string length " + std::to_string(len));
    // In a string value.
    GgufWriter v;
    Bytes val;
    Put<uint64_t>(&val, len);
    val.resize(val.size() + 64, 'b');
    v.KvRaw("general.name", static_cast<uint32_t>(GgufType::kString), val);
    s = OpenFails(v.Build());
    EXPECT_MSG(s, "'general.name': string length " + std::to_string(len));
    // In a tensor name.
    GgufWriter t;
    Bytes info;
    Put<uint64_t>(&info, len);
    info.resize(info.size() + 64, 'c');
    t.TensorBytes(info, 1);
    s = OpenFails(t.Build());
    EXPECT_MSG(s, "tensor #0: string length " + std::to_string(len));
  }
}

TEST(GgufTest, RejectsHugeArrayLengths) {
  const std::vector<std::pair<GgufType, uint64_t>> cases = {
      {GgufType::kUint8, kHuge},
      {GgufType::kUint32, kHuge},
      {GgufType::kUint32, kHuge / 4 + 1},  // count * 4 wraps to a small number
      {GgufType::kFloat64, uint64_t{1} << 61},
      {GgufType::kString, kHuge},
      {GgufType::kString, uint64_t{1} << 60},
      {GgufType::kInt16, 100}};
  for (const auto& [elem, count] : cases) {
    GgufWriter w;
    Bytes val;
    Put<uint32_t>(&val, static_cast<uint32_t>(elem));
    Put<uint64_t>(&val, count);
    val.resize(val.size() + 16, 0);
    w.KvRaw("tokenizer.ggml.tokens", static_cast<uint32_t>(GgufType::kArray), val);
    Status s = OpenFails(w.Build());
    EXPECT_EQ(s.code(), StatusCode::kCorruptData);
    EXPECT_MSG(s, "'tokenizer.ggml.tokens': array length " + std::to_string(count));
  }
}

TEST(GgufTest, RejectsBadArrayElements) {
  // A string element whose length runs past the end names the element.
  GgufWriter w;
  Bytes val;
  Put<uint32_t>(&val, static_cast<uint32_t>(GgufType::kString));
  Put<uint64_t>(&val, 2);
  PutStr(&val, "ok");
  Put<uint64_t>(&val, 1000);
  w.KvRaw("tokenizer.ggml.merges", static_cast<uint32_t>(GgufType::kArray), val);
  Status s = OpenFails(w.Build());
  EXPECT_MSG(s, "'tokenizer.ggml.merges': array element 1: string length 1000");
  // Nested arrays.
  GgufWriter n;
  Bytes nested;
  Put<uint32_t>(&nested, static_cast<uint32_t>(GgufType::kArray));
  Put<uint64_t>(&nested, 1);
  n.KvRaw("t.nested", static_cast<uint32_t>(GgufType::kArray), nested);
  s = OpenFails(n.Build());
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_MSG(s, "'t.nested': arrays of arrays");
  // Unknown element type.
  GgufWriter u;
  Bytes unk;
  Put<uint32_t>(&unk, 77);
  Put<uint64_t>(&unk, 1);
  u.KvRaw("t.unk", static_cast<uint32_t>(GgufType::kArray), unk);
  s = OpenFails(u.Build());
  EXPECT_MSG(s, "'t.unk': unknown value type 77");
}

TEST(GgufTest, RejectsBadScalars) {
  GgufWriter w;
  w.Kv<uint32_t>("t.x", static_cast<GgufType>(13), 0);
  Status s = OpenFails(w.Build());
  EXPECT_MSG(s, "metadata #0 't.x': unknown value type 13");
  GgufWriter b;
  b.Kv<uint8_t>("t.flag", GgufType::kBool, 2);
  s = OpenFails(b.Build());
  EXPECT_MSG(s, "'t.flag': bool value 2");
  GgufWriter d;
  d.KvU32("t.a", 1);
  d.KvU32("t.a", 2);
  s = OpenFails(d.Build());
  EXPECT_MSG(s, "duplicate key 't.a'");
}

TEST(GgufTest, RejectsTensorOffsetPastEnd) {
  for (uint64_t off : {uint64_t{4096}, kHuge - 31, uint64_t{1} << 62}) {
    GgufWriter w;
    w.Tensor("a", {8}, kF32, 32);
    w.Tensor("b", {8}, kF32, 0, off);
    Status s = OpenFails(w.Build());
    EXPECT_EQ(s.code(), StatusCode::kCorruptData);
    EXPECT_MSG(s, "tensor 'b': offset " + std::to_string(off));
    EXPECT_MSG(s, "exceeds the data section");
  }
}

TEST(GgufTest, RejectsMisalignedOffset) {
  GgufWriter w;
  w.Tensor("a", {8}, kF32, 32);
  w.Tensor("b", {8}, kF32, 32, 36);
  Status s = OpenFails(w.Build());
  EXPECT_MSG(s, "tensor #1 'b': offset 36 is not a multiple of the alignment 32");
}

TEST(GgufTest, RejectsOverlappingTensors) {
  GgufWriter w;
  w.Tensor("a", {16}, kF32, 64, 0);
  w.Tensor("b", {16}, kF32, 64, 32);
  Status s = OpenFails(w.Build());
  EXPECT_MSG(s, "tensor 'b' [32, 96) overlaps tensor 'a' [0, 64)");
  GgufWriter same;  // same offset, listed in reverse
  same.Tensor("x", {8}, kF32, 32, 64);
  same.Tensor("y", {8}, kF32, 32, 64);
  same.Tensor("z", {8}, kF32, 32, 0);
  s = OpenFails(same.Build());
  EXPECT_MSG(s, "overlaps");
}

TEST(GgufTest, RejectsTensorTypes) {
  GgufWriter u;
  u.Tensor("a", {8}, 99, 32);
  Status s = OpenFails(u.Build());
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_MSG(s, "tensor #0 'a': unknown ggml type id 99");
  GgufWriter k;
  k.Tensor("a", {256}, 10, 84);
  s = OpenFails(k.Build());
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_MSG(s, "type Q2_K (10) not supported");
  GgufWriter b;
  b.Tensor("a", {100}, kQ4_K, 144);
  s = OpenFails(b.Build());
  EXPECT_MSG(s, "ne[0] = 100 is not a multiple of the Q4_K block size 256");
}

TEST(GgufTest, RejectsBadShapes) {
  GgufWriter o;  // 2^32 * 2^32 = 2^64
  o.Tensor("a", {uint64_t{1} << 32, uint64_t{1} << 32}, kF32, 32);
  Status s = OpenFails(o.Build());
  EXPECT_MSG(s, "tensor #0 'a': shape product overflows 64 bits at ne[1]");
  GgufWriter big;  // fits 64 bits but not int64
  big.Tensor("a", {uint64_t{1} << 32, uint64_t{1} << 31}, kF32, 32);
  s = OpenFails(big.Build());
  EXPECT_MSG(s, "overflows");
  GgufWriter neg;  // a "negative" int64 dimension
  neg.Tensor("a", {kHuge}, kF32, 32);
  s = OpenFails(neg.Build());
  EXPECT_MSG(s, "ne[0] = " + std::to_string(kHuge) + " exceeds int64");
  GgufWriter bytes;  // 2^62 F32 elements fit int64 but 2^64 bytes do not
  bytes.Tensor("a", {uint64_t{1} << 62}, kF32, 32);
  s = OpenFails(bytes.Build());
  EXPECT_MSG(s, "byte size");
  GgufWriter dims;
  dims.Tensor("a", {1, 1, 1, 1, 8}, kF32, 32);
  s = OpenFails(dims.Build());
  EXPECT_MSG(s, "tensor #0 'a': n_dims 5 exceeds 4");
  GgufWriter dup;
  dup.Tensor("a", {8}, kF32, 32);
  dup.Tensor("a", {8}, kF32, 32);
  s = OpenFails(dup.Build());
  EXPECT_MSG(s, "duplicate name 'a'");
}

TEST(GgufTest, RejectsBadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 0x80000001u}) {
    GgufWriter w;
    w.KvU32("general.alignment", a);
    Status s = OpenFails(w.Build());
    EXPECT_MSG(s, "'general.alignment' is " + std::to_string(a) + ", not a power of two");
  }
  GgufWriter t;
  t.Kv<uint64_t>("general.alignment", GgufType::kUint64, 64);
  Status s = OpenFails(t.Build());
  EXPECT_MSG(s, "'general.alignment' is uint64 64, expected uint32");
  // A huge power of two puts the data section past the end of the file.
  GgufWriter h;
  h.KvU32("general.alignment", 0x80000000u);
  h.Tensor("a", {8}, kF32, 32, 0);
  s = OpenFails(h.Build());
  EXPECT_MSG(s, "data section starts at offset 2147483648");
}

TEST(GgufTest, AccessorTypeErrorsNameKeyAndType) {
  GgufWriter w;
  w.KvString("general.architecture", "qwen2");
  w.Kv<int32_t>("t.neg", GgufType::kInt32, -1);
  w.Kv<uint64_t>("t.big", GgufType::kUint64, uint64_t{1} << 40);
  w.Kv<uint64_t>("t.huge", GgufType::kUint64, kHuge);
  w.Kv<float>("t.f", GgufType::kFloat32, 2.0f);
  w.KvArray<int64_t>("t.wide", GgufType::kInt64, {1, int64_t{1} << 33});
  w.KvArray<uint16_t>("t.u16s", GgufType::kUint16, {7, 65535});
  std::unique_ptr<GgufFile> f;
  ASSERT_TRUE(OpenBytes(w.Build(), &f).ok());

  uint32_t u32 = 0;
  Status s = f->GetU32("general.architecture", &u32);
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_MSG(s, "'general.architecture' is string 'qwen2', expected an integer");
  EXPECT_MSG(s, f->path());
  s = f->GetU32("t.neg", &u32);
  EXPECT_MSG(s, "'t.neg' is int32 -1, expected an integer that fits uint32");
  s = f->GetU32("t.big", &u32);
  EXPECT_MSG(s, "'t.big' is uint64 1099511627776");
  int64_t i64 = 0;
  s = f->GetI64("t.huge", &i64);
  EXPECT_MSG(s, "fits int64");
  uint64_t u64 = 0;
  s = f->GetU64("t.neg", &u64);
  EXPECT_MSG(s, "fits uint64");
  float fl = 0;
  s = f->GetF32("t.big", &fl);
  EXPECT_MSG(s, "'t.big' is uint64 1099511627776, expected float32");
  s = f->GetU32("t.f", &u32);
  EXPECT_MSG(s, "is float32 2");
  std::string_view str;
  s = f->GetString("t.f", &str);
  EXPECT_MSG(s, "expected string");
  bool b = false;
  s = f->GetBool("t.neg", &b);
  EXPECT_MSG(s, "expected bool");
  s = f->GetU32("llama.block_count", &u32);
  EXPECT_MSG(s, "metadata key 'llama.block_count' not found");
  std::vector<int32_t> ints;
  s = f->GetArrayI32("t.wide", &ints);
  EXPECT_MSG(s, "'t.wide' element 1 is int64 8589934592, which does not fit int32");
  ASSERT_TRUE(f->GetArrayI32("t.u16s", &ints).ok());
  EXPECT_EQ(ints, (std::vector<int32_t>{7, 65535}));
  s = f->GetArrayI32("general.architecture", &ints);
  EXPECT_MSG(s, "expected array of integers");
  std::vector<float> floats;
  s = f->GetArrayF32("t.u16s", &floats);
  EXPECT_MSG(s, "'t.u16s' is array of 2 uint16, expected array of float32");
  std::vector<std::string_view> strs;
  s = f->GetStringArray("t.wide", &strs);
  EXPECT_MSG(s, "expected array of string");
}

TEST(GgufTest, FileErrors) {
  std::unique_ptr<GgufFile> f;
  Status s = GgufFile::Open("/nonexistent/kvarn/model.gguf", &f);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_MSG(s, "/nonexistent/kvarn/model.gguf: cannot open");
  s = GgufFile::Open(::testing::TempDir(), &f);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_MSG(s, "not a regular file");
}

TEST(GgufTest, TypeTables) {
  EXPECT_STREQ(GgufTypeName(GgufType::kFloat64), "float64");
  EXPECT_STREQ(GgufTypeName(static_cast<GgufType>(99)), "unknown");
  const GgmlTypeInfo* q6 = GgmlSupportedType(14);
  ASSERT_NE(q6, nullptr);
  EXPECT_EQ(q6->type, GgmlType::kQ6_K);
  EXPECT_EQ(q6->block_size, 256);
  EXPECT_EQ(q6->block_bytes, 210);
  EXPECT_EQ(GgmlSupportedType(30)->block_bytes, 2);  // BF16
  EXPECT_EQ(GgmlSupportedType(10), nullptr);
  EXPECT_STREQ(GgmlTypeName(10), "Q2_K");
  EXPECT_STREQ(GgmlTypeName(39), "MXFP4");
  EXPECT_EQ(GgmlTypeName(40), nullptr);
  for (uint32_t id = 0; id < 64; ++id) {
    const GgmlTypeInfo* t = GgmlSupportedType(id);
    if (t != nullptr) {  // the weights table spells names as ggml's C code ("q4_K")
      EXPECT_STRCASEEQ(t->name, GgmlTypeName(id));
    }
  }
}

// Random byte flips of a valid file: every outcome is a clean Status or a valid parse whose
// tensors lie inside the file. The sanitizer build turns any stray read into a failure.
TEST(GgufTest, RandomCorruptionNeverCrashes) {
  const Bytes full = ValidWriter(3).Build();
  const std::string path = TempPath("fuzz");
  Rng rng(20240601);
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes b = full;
    const int flips = 1 + static_cast<int>(rng.Next() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = static_cast<size_t>(rng.Next() % b.size());
      // Mostly bit flips; sometimes an all-ones byte, which makes lengths huge.
      const uint32_t flipped = b[at] ^ (1u << (rng.Next() % 8));
      b[at] = static_cast<uint8_t>(rng.Next() % 4 == 0 ? 0xFFu : flipped);
    }
    ASSERT_TRUE(gguftest::WriteFile(path, b));
    std::unique_ptr<GgufFile> f;
    Status s = GgufFile::Open(path, &f);
    if (!s.ok()) {
      EXPECT_FALSE(s.message().empty());
      continue;
    }
    ++parsed;
    for (const GgufTensorInfo& t : f->tensors()) {
      ASSERT_LE(f->data_offset() + t.offset + t.n_bytes, f->file_size()) << t.name;
    }
  }
  std::remove(path.c_str());
  EXPECT_GT(parsed, 0);  // flips in data bytes leave the file valid
}

}  // namespace
}  // namespace kvarn
