// Status: the error type of every fallible kvarn call. No exceptions cross layer boundaries;
// a failing call returns a Status whose message names the problem (file, field, value).
#pragma once

#include <string>
#include <utility>

namespace kvarn {

// Mirrors kvarn_status in include/kvarn/kvarn.h value for value (checked in capi).
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // a parameter is out of range or inconsistent
  kUnsupported = 2,      // valid request kvarn does not implement (e.g. head_dim 96)
  kNonFinite = 3,        // NaN or Inf in an input that must be finite
  kBufferTooSmall = 4,   // caller's buffer is smaller than required
  kCorruptData = 5,      // malformed file or record
  kOutOfMemory = 6,      // an allocation or byte budget is exhausted
  kIoError = 7,          // a file could not be opened/read/mapped
  kOutOfRange = 8,       // a position/length beyond a limit (context, cache)
  kInternal = 9,         // a kvarn bug: an invariant did not hold
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("layer 3: ") to the message, keeping the code.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status NonFinite(std::string m) { return {StatusCode::kNonFinite, std::move(m)}; }
inline Status BufferTooSmall(std::string m) { return {StatusCode::kBufferTooSmall, std::move(m)}; }
inline Status CorruptData(std::string m) { return {StatusCode::kCorruptData, std::move(m)}; }
inline Status OutOfMemory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

const char* StatusCodeName(StatusCode code);

}  // namespace kvarn

#define KVARN_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::kvarn::Status kvarn_status_ = (expr);  \
    if (!kvarn_status_.ok()) return kvarn_status_; \
  } while (0)
