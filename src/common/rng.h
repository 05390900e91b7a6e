// Deterministic, platform-independent random numbers for tests, benchmarks and synthetic tiles.
// std::normal_distribution differs across standard libraries; this does not.
#pragma once

#include <cmath>
#include <cstdint>

namespace kvarn {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x9E3779B97F4A7C15ull) {}

  // splitmix64: a full-period 64-bit generator, good enough for test data.
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal by Box-Muller (uses only log/sqrt/cos, correctly rounded enough on glibc).
  double Normal() {
    double u1 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Student-t-like heavy tail: normal divided by sqrt(chi2/nu)/... approximated cheaply by a
  // normal scaled by an inverse-uniform factor; used only to make outlier-rich test data.
  double HeavyTail() {
    const double n = Normal();
    const double u = 0.25 + 0.75 * Uniform();
    return n / u;
  }

 private:
  uint64_t state_;
};

}  // namespace kvarn
