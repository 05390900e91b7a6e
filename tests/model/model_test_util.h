// Shared helpers of the model tests: where the fetched models live (tests skip when absent).
#pragma once

#include <cstdlib>
#include <string>
#include <sys/stat.h>

namespace kvarn::testing {

inline std::string CacheDir() {
  if (const char* c = std::getenv("KVARN_CACHE")) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/kvarn";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/kvarn";
}

inline std::string ModelPath(const std::string& file) { return CacheDir() + "/" + file; }

inline bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline const char* kSmolLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline const char* kQwen = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

}  // namespace kvarn::testing
