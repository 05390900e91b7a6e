#include "quant/codec_spec.h"

#include <charconv>
#include <string>

namespace kvarn {
namespace {

// Reads an unsigned decimal at the front of s; advances s.
bool ReadInt(std::string_view& s, int* v) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(b, e, *v);
  if (ec != std::errc() || p == b) return false;
  s.remove_prefix(static_cast<size_t>(p - b));
  return true;
}

Status Bad(std::string_view text, const std::string& why) {
  return InvalidArgument("codec '" + std::string(text) + "': " + why +
                         " (try kvarn_k4v2_g128, kivi_k2v2_g128, hadamard, varn, q8_0, q4_0, "
                         "q4_1, f16, f32)");
}

}  // namespace

std::string CodecSpec::Name() const {
  switch (kind) {
    case CodecKind::kF32: return "f32";
    case CodecKind::kF16: return "f16";
    case CodecKind::kQ8_0: return "q8_0";
    case CodecKind::kQ4_0: return "q4_0";
    case CodecKind::kQ4_1: return "q4_1";
    case CodecKind::kTile: break;
  }
  const char* family = rotate ? (varn ? "kvarn" : "hadamard") : (varn ? "varn" : "kivi");
  std::string s = std::string(family) + "_k" + std::to_string(k_bits) + "v" +
                  std::to_string(v_bits) + "_g" + std::to_string(group);
  if (varn && iters != 8) s += "_i" + std::to_string(iters);
  return s;
}

Status ParseCodecSpec(std::string_view text, CodecSpec* out) {
  CodecSpec spec;
  if (text == "f32") spec.kind = CodecKind::kF32;
  else if (text == "f16") spec.kind = CodecKind::kF16;
  else if (text == "q8_0") spec.kind = CodecKind::kQ8_0;
  else if (text == "q4_0") spec.kind = CodecKind::kQ4_0;
  else if (text == "q4_1") spec.kind = CodecKind::kQ4_1;
  if (!spec.is_tile()) {
    *out = spec;
    return Status::Ok();
  }
  std::string_view s = text;
  struct Family { std::string_view name; bool rotate, varn; int kb, vb; };
  static constexpr Family kFamilies[] = {
      {"kvarn", true, true, 4, 2}, {"hadamard", true, false, 2, 2},
      {"varn", false, true, 2, 2}, {"kivi", false, false, 2, 2}};
  bool found = false;
  for (const Family& f : kFamilies) {
    if (s.substr(0, f.name.size()) == f.name &&
        (s.size() == f.name.size() || s[f.name.size()] == '_')) {
      spec.rotate = f.rotate;
      spec.varn = f.varn;
      spec.k_bits = f.kb;
      spec.v_bits = f.vb;
      s.remove_prefix(f.name.size());
      found = true;
      break;
    }
  }
  if (!found) return Bad(text, "unknown codec family");
  while (!s.empty()) {
    if (s[0] != '_') return Bad(text, "expected '_' before '" + std::string(s) + "'");
    s.remove_prefix(1);
    if (s.empty()) return Bad(text, "trailing '_'");
    const char tag = s[0];
    s.remove_prefix(1);
    if (tag == 'k') {
      if (!ReadInt(s, &spec.k_bits) || s.empty() || s[0] != 'v')
        return Bad(text, "expected k<bits>v<bits>");
      s.remove_prefix(1);
      if (!ReadInt(s, &spec.v_bits)) return Bad(text, "expected v<bits>");
    } else if (tag == 'g') {
      if (!ReadInt(s, &spec.group)) return Bad(text, "expected g<tokens>");
    } else if (tag == 'i') {
      if (!ReadInt(s, &spec.iters)) return Bad(text, "expected i<iterations>");
      if (!spec.varn) return Bad(text, "iterations given for a codec without normalization");
    } else {
      return Bad(text, std::string("unknown parameter '") + tag + "'");
    }
  }
  auto bits_ok = [](int b) { return b == 2 || b == 4 || b == 8; };
  if (!bits_ok(spec.k_bits)) return Bad(text, "K bits " + std::to_string(spec.k_bits) + " not in {2,4,8}");
  if (!bits_ok(spec.v_bits)) return Bad(text, "V bits " + std::to_string(spec.v_bits) + " not in {2,4,8}");
  if (spec.group < 8 || spec.group > 1024 || spec.group % 8 != 0)
    return Bad(text, "G " + std::to_string(spec.group) + " must be a multiple of 8 in [8, 1024]");
  if (spec.iters < 0 || spec.iters > 1000)
    return Bad(text, "iterations " + std::to_string(spec.iters) + " not in [0, 1000]");
  *out = spec;
  return Status::Ok();
}

Status ValidateCodec(const CodecSpec& spec, int head_dim) {
  if (spec.is_tile()) {
    if (head_dim != 64 && head_dim != 128 && head_dim != 256 && head_dim != 512)
      return Unsupported("codec " + spec.Name() + ": head_dim " + std::to_string(head_dim) +
                         " unsupported (Hadamard tile codecs need 64, 128, 256 or 512)");
    // G must hold whole packed bytes for the smallest bit width (G*2/8 integral): G % 8 == 0.
    // A spec built in code (not parsed) reaches here unchecked, so the parser's ranges are
    // enforced again: G = 0 would divide by zero in the cache, odd bit widths overrun records.
    if (spec.group < 8 || spec.group > 1024 || spec.group % 8 != 0)
      return Unsupported("codec " + spec.Name() + ": G " + std::to_string(spec.group) +
                         " is not a multiple of 8 in [8, 1024]");
    auto bits_ok = [](int b) { return b == 2 || b == 4 || b == 8; };
    if (!bits_ok(spec.k_bits) || !bits_ok(spec.v_bits))
      return Unsupported("codec " + spec.Name() + ": K bits " + std::to_string(spec.k_bits) +
                         ", V bits " + std::to_string(spec.v_bits) + " not in {2,4,8}");
    if (spec.iters < 0 || spec.iters > 1000)
      return InvalidArgument("codec " + spec.Name() + ": iterations " +
                             std::to_string(spec.iters) + " not in [0, 1000]");
    return Status::Ok();
  }
  if (head_dim <= 0 || head_dim > 4096)
    return InvalidArgument("codec " + spec.Name() + ": head_dim " + std::to_string(head_dim) +
                           " out of range");
  if ((spec.kind == CodecKind::kQ8_0 || spec.kind == CodecKind::kQ4_0 ||
       spec.kind == CodecKind::kQ4_1) && head_dim % 32 != 0)
    return Unsupported("codec " + spec.Name() + ": head_dim " + std::to_string(head_dim) +
                       " is not a multiple of the 32-channel block");
  return Status::Ok();
}

std::vector<std::string> KnownCodecNames() {
  return {"kvarn_k4v2_g128", "kvarn_k4v4_g128", "kvarn_k2v2_g128", "kvarn_k4v2_g64",
          "kvarn_k4v4_g64", "kivi_k2v2_g128", "hadamard_k2v2_g128", "varn_k2v2_g128",
          "q8_0", "q4_0", "q4_1", "f16", "f32"};
}

}  // namespace kvarn
