#include "eval/metrics.h"

#include <algorithm>
#include <cmath>

namespace kvarn::eval {

void LogSoftmax(const float* logits, int n, std::vector<double>* out) {
  out->resize(size_t(n));
  double mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int i = 0; i < n; ++i) (*out)[size_t(i)] = double(logits[i]) - lse;
}

double KlDivergence(const float* p_logits, const float* q_logits, int n) {
  std::vector<double> lp, lq;
  LogSoftmax(p_logits, n, &lp);
  LogSoftmax(q_logits, n, &lq);
  double kl = 0;
  for (int i = 0; i < n; ++i) kl += std::exp(lp[size_t(i)]) * (lp[size_t(i)] - lq[size_t(i)]);
  return std::max(kl, 0.0);  // rounding can leave -1e-17 for near-identical inputs
}

int Argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

double NegLogLikelihood(const float* logits, int n, int target) {
  double mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  return mx + std::log(sum) - double(logits[target]);
}

double Percentile(std::vector<double> v, double pct) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double r = pct / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(r)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (r - double(lo)) * (v[hi] - v[lo]);
}

void PositionBuckets::Add(int position, const float* exact, const float* test, int n,
                          int next_token) {
  const size_t b = size_t(position / width_);
  if (buckets_.size() <= b) buckets_.resize(b + 1);
  Bucket& k = buckets_[b];
  ++k.count;
  k.kl.push_back(KlDivergence(exact, test, n));
  k.top1_agree += Argmax(exact, n) == Argmax(test, n);
  if (next_token >= 0) {
    k.nll_exact += NegLogLikelihood(exact, n, next_token);
    k.nll_test += NegLogLikelihood(test, n, next_token);
    ++k.nll_count;
  }
}

}  // namespace kvarn::eval
