// Metrics of the evaluation (kvarn eval): next-token distribution divergence, agreement and
// likelihood, accumulated per position bucket. All arithmetic in double.
#pragma once

#include <cstdint>
#include <vector>

namespace kvarn::eval {

// log-softmax of logits [n] into out [n] (max-shifted, double).
void LogSoftmax(const float* logits, int n, std::vector<double>* out);

// KL(P || Q) = sum_i p_i (log p_i - log q_i) for the distributions of two logit vectors [n].
// 0 for identical inputs (exactly: the same logits give the same log-softmax).
double KlDivergence(const float* p_logits, const float* q_logits, int n);

// Index of the largest logit (the first one on ties).
int Argmax(const float* logits, int n);

// -log softmax(logits)[target].
double NegLogLikelihood(const float* logits, int n, int target);

// One position's comparison of the exact and the test next-token distributions.
struct PositionComparison {
  double kl = 0;            // KL(exact || test)
  bool top1_agree = false;  // argmax equal
  bool has_next = false;    // the next token is known (nll_* are set)
  double nll_exact = 0;     // -log p_exact(next token)
  double nll_test = 0;      // -log p_test(next token)
};

// Reference: every quantity from scratch with the functions above (next_token -1: none).
PositionComparison ComparePosition(const float* exact, const float* test, int n, int next_token);

// The exact run's distribution at one position, prepared once for comparison with many test
// distributions (kvarn eval compares up to 16 cases with one exact run per position): its
// log-sum-exp, probabilities and argmax are computed once, so a comparison costs one exp per
// logit instead of five. The arithmetic is the reference's, operation for operation (the same
// max-shifted sums in the same order, the same p_i = exp(log p_i)), so Compare() returns exactly
// ComparePosition()'s values; tests check that bit for bit.
class ReferenceDistribution {
 public:
  // logits [n] must stay valid while Compare() is used.
  void Set(const float* logits, int n);
  PositionComparison Compare(const float* test, int next_token) const;

 private:
  const float* logits_ = nullptr;
  int n_ = 0;
  double lse_ = 0;  // log sum exp(logits)
  int argmax_ = 0;
  std::vector<double> p_;  // [n] softmax probabilities
};

// Percentile (0..100) of values by linear interpolation between order statistics; 0 if empty.
double Percentile(std::vector<double> values, double pct);

// Statistics of one bucket of positions [begin, begin + width).
struct Bucket {
  int64_t count = 0;
  std::vector<double> kl;  // per position
  int64_t top1_agree = 0;  // argmax equal to the exact run's
  double nll_exact = 0;    // sum of -log p(next token) under the exact cache
  double nll_test = 0;     // ... under the cache under test
  int64_t nll_count = 0;   // positions with a known next token
};

class PositionBuckets {
 public:
  explicit PositionBuckets(int width) : width_(width) {}
  // One position: exact and test logits [n], and the next token (-1 at the end of the text).
  void Add(int position, const float* exact, const float* test, int n, int next_token);
  // One position whose comparison was computed already.
  void Add(int position, const PositionComparison& c);
  int width() const { return width_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }

 private:
  int width_;
  std::vector<Bucket> buckets_;
};

}  // namespace kvarn::eval
