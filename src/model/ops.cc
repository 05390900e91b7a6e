#include "model/ops.h"

namespace kvarn {

void RmsNorm(const float* x, const float* w, int n, int E, float eps, float* y) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * E;
    float* yr = y + size_t(t) * E;
    double ss = 0;
    for (int i = 0; i < E; ++i) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / E + double(eps)));
    for (int i = 0; i < E; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

Rope::Rope(const ModelConfig& c) : style(c.rope), head_dim(c.head_dim), rope_dim(c.rope_dim) {
  inv_freq.resize(static_cast<size_t>(rope_dim / 2));
  for (int i = 0; i < rope_dim / 2; ++i)
    inv_freq[size_t(i)] = std::pow(double(c.rope_base), -2.0 * i / rope_dim);
}

void Rope::Apply(float* x, int n, int heads, int pos0) const {
  const int half = rope_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int t = 0; t < n; ++t) {
    const double pos = double(pos0 + t);
    for (int i = 0; i < half; ++i) {
      const double a = pos * inv_freq[size_t(i)];
      cs[size_t(i)] = float(std::cos(a));
      sn[size_t(i)] = float(std::sin(a));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + (size_t(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        // NORM pairs (2i, 2i+1); NEOX pairs (i, i + rope_dim/2).
        const int a = style == RopeStyle::kNorm ? 2 * i : i;
        const int b = style == RopeStyle::kNorm ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[size_t(i)] - x1 * sn[size_t(i)];
        v[b] = x0 * sn[size_t(i)] + x1 * cs[size_t(i)];
      }
    }
  }
}

void SwiGlu(const float* g, const float* u, size_t count, float* h) {
  for (size_t i = 0; i < count; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace kvarn
