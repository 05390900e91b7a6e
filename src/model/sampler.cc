#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

namespace kvarn {

Status Sampler::Create(const SamplerParams& p, std::unique_ptr<Sampler>* out) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    return InvalidArgument("temperature " + std::to_string(p.temperature) + " must be >= 0");
  if (p.top_k < 0) return InvalidArgument("top-k " + std::to_string(p.top_k) + " must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return InvalidArgument("top-p " + std::to_string(p.top_p) + " must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f))
    return InvalidArgument("min-p " + std::to_string(p.min_p) + " must be in [0, 1)");
  out->reset(new Sampler(p));
  return Status::Ok();
}

int32_t Sampler::Sample(const float* logits, int n_vocab) {
  if (p_.temperature == 0.0f) {  // greedy: first maximum
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  cand_.resize(size_t(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) cand_[size_t(i)] = {logits[i] / p_.temperature, i};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = size_t(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, so the max is first).
  const float mx = cand_[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += (cand_[i].first = std::exp(cand_[i].first - mx));
  for (size_t i = 0; i < n; ++i) cand_[i].first = float(cand_[i].first / sum);
  // min-p: drop tokens below min_p times the top probability.
  if (p_.min_p > 0.0f) {
    const float floor = p_.min_p * cand_[0].first;
    size_t keep = 1;
    while (keep < n && cand_[keep].first >= floor) ++keep;
    n = keep;
  }
  // top-p: the smallest prefix whose mass reaches top_p.
  if (p_.top_p < 1.0f) {
    double mass = 0;
    size_t keep = 0;
    while (keep < n) {
      mass += cand_[keep].first;
      ++keep;
      if (mass >= p_.top_p) break;
    }
    n = keep;
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += cand_[i].first;
  double r = rng_.Uniform() * total;
  for (size_t i = 0; i < n; ++i) {
    r -= cand_[i].first;
    if (r < 0) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace kvarn
