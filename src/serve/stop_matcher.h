// StopMatcher: finds the request's stop strings in generated text as it streams, and holds back
// any tail that could still become one, so no byte of a stop string is ever sent.
//
// Input is valid UTF-8 (StreamDecoder's output) and so are the stop strings (the request
// validator checks), so every cut falls on a character boundary: a held-back tail and a match
// both begin with a stop string's first byte, which starts a character.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvarn::serve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends text and returns what can be released. Once a stop string is complete, returns
  // the text before it and matched() turns true; later calls return "".
  std::string Push(std::string_view text);
  // The end of generation: releases what was held back (nothing after a match).
  std::string Flush();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  std::string held_;
  bool matched_ = false;
};

}  // namespace kvarn::serve
