// The GSM-style task of `kvarn eval --gsm` (issue 6, docs/eval.md): answer extraction from a
// worked solution, the stop rule of greedy generation, and the statistics of the report
// (Wilson interval of an accuracy, paired comparison of two cache types on the same problems).
#pragma once

#include <cstdint>
#include <string>

namespace kvarn::eval {

// The final answer of a worked solution in GSM8K's format: the first number after the first
// "####", with thousands separators removed and a trailing ".0..." dropped ("1,250" -> "1250",
// "-3.50" -> "-3.5", "7.00" -> "7"). Returns false if there is no "####" followed by a number.
bool ExtractGsmAnswer(const std::string& text, std::string* answer);

// Whether two extracted answers denote the same number (exact decimal comparison of the
// normalized strings; no floating-point tolerance: GSM answers are exact).
bool GsmAnswersEqual(const std::string& a, const std::string& b);

// Whether greedy generation of a solution should stop: the "####" line is complete (a newline
// follows its number), or the model began another example ("\nQuestion:").
bool GsmShouldStop(const std::string& generated);

// Wilson score interval of k successes in n trials at normal quantile z (1.96: 95%).
struct Interval {
  double low = 0, high = 0;
};
Interval WilsonInterval(int64_t k, int64_t n, double z = 1.96);

// Paired outcomes of a cache type against the baseline on the same problems.
struct PairedCounts {
  int64_t both_right = 0, baseline_only = 0, test_only = 0, both_wrong = 0;
  int64_t changed_answers = 0;  // extracted answers differ (right or wrong)
};
// Exact two-sided McNemar test: P(|X - m/2| >= |b - m/2|) for X ~ Binomial(m, 1/2), m = b + c,
// b = baseline_only, c = test_only. 1 when m = 0.
double McNemarExactP(int64_t baseline_only, int64_t test_only);

}  // namespace kvarn::eval
