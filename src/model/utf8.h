// UTF-8 decoding and encoding for the tokenizer. Strict (RFC 3629): no overlong forms, no
// surrogates, nothing above U+10FFFF. Decoding reports, instead of guessing, whether bytes are a
// character, definitely invalid, or a valid prefix cut short by the end of the input: the
// streaming detokenizer must hold the last kind back until more bytes arrive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvarn::utf8 {

enum class Decoded {
  kChar,        // a complete, valid character
  kInvalid,     // bytes no valid UTF-8 can start with (replace them with U+FFFD)
  kIncomplete,  // a valid prefix that the input ends inside
};

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Decodes the character starting at s[pos] (pos < s.size()). Sets *cp (kChar only) and *len:
// the character's length; for kInvalid the length of the maximal invalid subpart (the bytes that
// one U+FFFD replaces, as WHATWG and Python's "replace" count them, at least 1); for kIncomplete
// the bytes left in s.
inline Decoded Decode(std::string_view s, size_t pos, char32_t* cp, size_t* len) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) {
    *cp = b0;
    *len = 1;
    return Decoded::kChar;
  }
  size_t need;
  char32_t value;
  // The second byte's range depends on the lead: it is what excludes overlong forms (E0, F0),
  // surrogates (ED) and values past U+10FFFF (F4).
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    value = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    value = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    value = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *len = 1;  // a continuation byte, C0, C1 or F5..FF cannot start a character
    return Decoded::kInvalid;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) {
      *len = s.size() - pos;
      return Decoded::kIncomplete;
    }
    const uint8_t b = byte(pos + k);
    if (b < lo || b > hi) {
      *len = k;
      return Decoded::kInvalid;
    }
    lo = 0x80;
    hi = 0xBF;
    value = (value << 6) | (b & 0x3Fu);
  }
  *cp = value;
  *len = need + 1;
  return Decoded::kChar;
}

// Appends the UTF-8 encoding of cp (a scalar value: <= U+10FFFF, not a surrogate).
inline void Append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// True when s is entirely valid UTF-8.
inline bool IsValid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    size_t len;
    if (Decode(s, pos, &cp, &len) != Decoded::kChar) return false;
    pos += len;
  }
  return true;
}

}  // namespace kvarn::utf8
