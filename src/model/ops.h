// Elementwise and row operations of the forward pass (RMSNorm, RoPE, SwiGLU). Scalar code the
// compiler vectorizes; the matrix products (weights/matmul.h) and attention dominate the time.
#pragma once

#include <cmath>
#include <vector>

#include "model/config.h"

namespace kvarn {

// y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for n rows of E values.
void RmsNorm(const float* x, const float* w, int n, int E, float eps, float* y);

// Precomputed rotary angles: cos/sin [max_pos][rope_dim / 2] would be large for long contexts,
// so inv_freq [rope_dim / 2] is kept and angles are formed per position (in double, then
// rounded, so every position gets an accurate angle).
struct Rope {
  RopeStyle style = RopeStyle::kNorm;
  int head_dim = 0;
  int rope_dim = 0;
  std::vector<double> inv_freq;  // base^(-2i/rope_dim)

  Rope(const ModelConfig& c);
  // Rotates x [n][heads][head_dim] in place; token t is at position pos0 + t.
  void Apply(float* x, int n, int heads, int pos0) const;
};

// h[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u, for count values.
void SwiGlu(const float* g, const float* u, size_t count, float* h);

}  // namespace kvarn
