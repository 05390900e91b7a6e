#include "eval/metrics.h"

#include <algorithm>
#include <cmath>

namespace kvarn::eval {

namespace {

// log sum exp(logits), max-shifted. The one definition every metric here uses, so that the
// prepared comparison (ReferenceDistribution) reproduces the reference bit for bit.
double LogSumExp(const float* logits, int n) {
  double mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
  return mx + std::log(sum);
}

}  // namespace

void LogSoftmax(const float* logits, int n, std::vector<double>* out) {
  out->resize(size_t(n));
  const double lse = LogSumExp(logits, n);
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
  return LogSumExp(logits, n) - double(logits[target]);
}

PositionComparison ComparePosition(const float* exact, const float* test, int n, int next_token) {
  PositionComparison c;
  c.kl = KlDivergence(exact, test, n);
  c.top1_agree = Argmax(exact, n) == Argmax(test, n);
  if (next_token >= 0) {
    c.has_next = true;
    c.nll_exact = NegLogLikelihood(exact, n, next_token);
    c.nll_test = NegLogLikelihood(test, n, next_token);
  }
  return c;
}

void ReferenceDistribution::Set(const float* logits, int n) {
  logits_ = logits;
  n_ = n;
  lse_ = LogSumExp(logits, n);
  argmax_ = Argmax(logits, n);
  p_.resize(size_t(n));
  for (int i = 0; i < n; ++i) p_[size_t(i)] = std::exp(double(logits[i]) - lse_);
}

PositionComparison ReferenceDistribution::Compare(const float* test, int next_token) const {
  PositionComparison c;
  const double lse_q = LogSumExp(test, n_);
  double kl = 0;
  for (int i = 0; i < n_; ++i)
    kl += p_[size_t(i)] * ((double(logits_[i]) - lse_) - (double(test[i]) - lse_q));
  c.kl = std::max(kl, 0.0);
  c.top1_agree = argmax_ == Argmax(test, n_);
  if (next_token >= 0) {
    c.has_next = true;
    c.nll_exact = lse_ - double(logits_[next_token]);
    c.nll_test = lse_q - double(test[next_token]);
  }
  return c;
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
  Add(position, ComparePosition(exact, test, n, next_token));
}

void PositionBuckets::Add(int position, const PositionComparison& c) {
  const size_t b = size_t(position / width_);
  if (buckets_.size() <= b) buckets_.resize(b + 1);
  Bucket& k = buckets_[b];
  ++k.count;
  k.kl.push_back(c.kl);
  k.top1_agree += c.top1_agree;
  if (c.has_next) {
    k.nll_exact += c.nll_exact;
    k.nll_test += c.nll_test;
    ++k.nll_count;
  }
}

}  // namespace kvarn::eval
