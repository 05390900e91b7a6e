// Checksums of session files: CRC-32 for integrity of each part of a file, SHA-256 for the
// identity of the model a session belongs to. Both are the standard algorithms (zlib's crc32,
// FIPS 180-4), so any tool (Python's zlib and hashlib) can check a file independently.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace kvarn {

// CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as zlib.crc32). Chain calls by passing
// the previous result as crc; start with 0.
uint32_t Crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

class Sha256 {
 public:
  Sha256();
  void Update(const uint8_t* data, size_t n);
  std::array<uint8_t, 32> Finish();  // the digest; the object must not be updated afterwards

 private:
  void Block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

}  // namespace kvarn
