// Sampler: picks the next token from logits. Greedy at temperature 0; otherwise temperature,
// then top-k, top-p (nucleus) and min-p filters in llama.cpp's order, then a draw from a
// seeded generator (deterministic for a given seed).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/rng.h"
#include "common/status.h"

namespace kvarn {

struct SamplerParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  static Status Create(const SamplerParams& p, std::unique_ptr<Sampler>* out);
  // logits [n_vocab]; returns a token id.
  int32_t Sample(const float* logits, int n_vocab);

 private:
  explicit Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}
  SamplerParams p_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // (logit or prob, id)
};

}  // namespace kvarn
