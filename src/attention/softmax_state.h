// Online-softmax state of one query head over a set of keys: running max m, denominator l and
// the (unnormalized) value accumulator acc [D]. Sink, encoded tiles and the tail each produce
// one; Merge combines partial states of disjoint key sets (flash-decoding), exactly.
#pragma once

#include <cmath>
#include <vector>

namespace kvarn {

struct SoftmaxState {
  float m = -INFINITY;     // max score seen; -inf: no key yet
  float l = 0.0f;          // sum of exp(score - m)
  std::vector<float> acc;  // [D] sum of exp(score - m) * v

  explicit SoftmaxState(int D = 0) : acc(size_t(D), 0.0f) {}

  void Reset() {
    m = -INFINITY;
    l = 0.0f;
    std::fill(acc.begin(), acc.end(), 0.0f);
  }

  // this <- this (+) other. An empty side contributes nothing (its m is -inf, and the
  // max() below never produces exp(-inf - -inf) = NaN because the empty side is skipped).
  void Merge(const SoftmaxState& o) {
    if (o.m == -INFINITY) return;
    if (m == -INFINITY) {
      *this = o;
      return;
    }
    const float mn = std::max(m, o.m);
    const float a = std::exp(m - mn), b = std::exp(o.m - mn);
    for (size_t d = 0; d < acc.size(); ++d) acc[d] = acc[d] * a + o.acc[d] * b;
    l = l * a + o.l * b;
    m = mn;
  }

  // out[d] = acc[d] / l; an empty state (no key) normalizes to zeros rather than 0/0.
  void Normalize(float* out) const {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (size_t d = 0; d < acc.size(); ++d) out[d] = acc[d] * inv;
  }
};

}  // namespace kvarn
