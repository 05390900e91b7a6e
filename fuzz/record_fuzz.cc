// libFuzzer target: Codec::Decode of arbitrary bytes, for every codec kvarn knows.
//
// Input: byte 0 selects the codec (Codecs() below);
// byte 1 the token count of per-token codecs (1..4) and, with bit 7, the scalar reference
// decoder instead of the SIMD one; the rest is the record. Decode runs twice: on the
// bytes as given (usually a BufferTooSmall Status, which must be returned, not crashed on), and
// on them zero-padded to exactly RecordBytes(n) (a full decode of hostile bytes, in both
// frames).
//
// Records carry no checksum, so any bytes of the right length decode: fp16 scales and zeros
// may be NaN, Inf or huge, and the decoded K/V may then be non-finite or meaningless. That is
// documented behavior (docs/fuzzing.md), not a failure; what must never happen is a crash, an
// out-of-bounds access or undefined behavior (a float-to-int conversion of a NaN, say).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/dispatch.h"
#include "quant/codec.h"
#include "quant/codec_spec.h"

namespace {

struct Entry {
  std::unique_ptr<kvarn::Codec> codec;
};

// Every preset and baseline at head_dim 64, plus the other bit widths, G down to 8 (tile
// decoding is the same code at every G, and small tiles keep each run to well under a
// millisecond under the sanitizers: a 256x128 tile took seconds with libFuzzer's comparison
// tracing) and the other head_dims.
const std::vector<Entry>& Codecs() {
  static const std::vector<Entry>* all = [] {
    std::vector<std::pair<std::string, int>> specs;
    for (const std::string& name : kvarn::KnownCodecNames()) specs.emplace_back(name, 64);
    for (const char* name : {"kvarn_k8v8_g8", "kvarn_k2v4_g16", "kivi_k4v4_g8", "kivi_k8v2_g16",
                             "hadamard_k4v8_g8", "varn_k2v2_g8_i3", "kvarn_k4v2_g8_i0"})
      specs.emplace_back(name, 64);
    for (int d : {128, 256, 512}) specs.emplace_back("kvarn_k4v2_g8", d);
    for (int d : {32, 96, 128}) {
      for (const char* name : {"q8_0", "q4_0", "q4_1", "f16", "f32"}) specs.emplace_back(name, d);
    }
    auto* v = new std::vector<Entry>;
    for (const auto& [name, head_dim] : specs) {
      kvarn::CodecSpec spec;
      std::unique_ptr<kvarn::Codec> c;
      if (!kvarn::ParseCodecSpec(name, &spec).ok()) __builtin_trap();
      if (!kvarn::Codec::Create(spec, head_dim, &c).ok()) __builtin_trap();
      v->push_back(Entry{std::move(c)});
    }
    return v;
  }();
  return *all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto& codecs = Codecs();
  const kvarn::Codec& codec = *codecs[data[0] % codecs.size()].codec;
  const int n = codec.spec().is_tile() ? codec.spec().group : 1 + data[1] % 4;
  const int D = codec.head_dim();
  const uint8_t* record = data + 2;
  const size_t record_size = size - 2;

  kvarn::SetForceReference((data[1] & 0x80) != 0);
  std::vector<float> k(size_t(n) * D), v(size_t(n) * D);
  // As given: a short record must be refused with a Status.
  std::vector<uint8_t> exact(record, record + record_size);
  (void)codec.Decode(exact.data(), exact.size(), n, k.data(), v.data(), kvarn::Frame::kModel);

  // Zero-padded (or cut) to the exact size: a full decode of hostile bytes.
  const size_t need = codec.RecordBytes(n);
  std::vector<uint8_t> padded(need, 0);
  std::memcpy(padded.data(), record, std::min(need, record_size));
  for (kvarn::Frame frame : {kvarn::Frame::kModel, kvarn::Frame::kRotated}) {
    const kvarn::Status s = codec.Decode(padded.data(), padded.size(), n, k.data(), v.data(), frame);
    if (!s.ok()) __builtin_trap();  // a record of the right size always decodes
  }
  // Read every output so MSan/ASan see uninitialized or unwritten values if there are any.
  float sum = 0;
  for (float x : k) sum += x;
  for (float x : v) sum += x;
  volatile float sink = sum;
  (void)sink;
  return 0;
}
