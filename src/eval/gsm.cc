#include "eval/gsm.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace kvarn::eval {

bool ExtractGsmAnswer(const std::string& text, std::string* answer) {
  const size_t mark = text.find("####");
  if (mark == std::string::npos) return false;
  size_t i = mark + 4;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '$')) ++i;
  std::string s;
  if (i < text.size() && text[i] == '-') s += text[i++];
  bool digits = false, dot = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      s += c;
      digits = true;
    } else if (c == ',' && digits && !dot && i + 1 < text.size() &&
               std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
      continue;  // thousands separator
    } else if (c == '.' && digits && !dot && i + 1 < text.size() &&
               std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
      s += c;
      dot = true;
    } else {
      break;
    }
  }
  if (!digits) return false;
  if (dot) {  // drop trailing zeros of the fraction, then a bare '.'
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  // Leading zeros ("007") and "-0" normalize too.
  const bool neg = s[0] == '-';
  std::string mag = neg ? s.substr(1) : s;
  const size_t nz = mag.find_first_not_of('0');
  if (nz == std::string::npos || mag[nz] == '.') mag = "0" + (nz == std::string::npos ? "" : mag.substr(nz));
  else mag = mag.substr(nz);
  *answer = (neg && mag != "0") ? "-" + mag : mag;
  return true;
}

bool GsmAnswersEqual(const std::string& a, const std::string& b) {
  std::string x, y;
  if (!ExtractGsmAnswer("####" + a, &x) || !ExtractGsmAnswer("####" + b, &y)) return false;
  return x == y;
}

bool GsmShouldStop(const std::string& generated) {
  if (generated.find("\nQuestion:") != std::string::npos) return true;
  const size_t mark = generated.find("####");
  if (mark == std::string::npos) return false;
  std::string answer;
  return ExtractGsmAnswer(generated, &answer) &&
         generated.find('\n', mark) != std::string::npos;
}

Interval WilsonInterval(int64_t k, int64_t n, double z) {
  if (n <= 0) return {0, 1};
  const double p = double(k) / double(n), nn = double(n), z2 = z * z;
  const double denom = 1 + z2 / nn;
  const double center = (p + z2 / (2 * nn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

double McNemarExactP(int64_t baseline_only, int64_t test_only) {
  const int64_t m = baseline_only + test_only;
  if (m == 0) return 1;
  const double half = double(m) / 2, d = std::fabs(double(baseline_only) - half);
  // Sum the Binomial(m, 1/2) mass of outcomes at least as far from m/2, in log space.
  double p = 0;
  for (int64_t x = 0; x <= m; ++x) {
    if (std::fabs(double(x) - half) + 1e-9 < d) continue;
    const double logc = std::lgamma(double(m) + 1) - std::lgamma(double(x) + 1) -
                        std::lgamma(double(m - x) + 1);
    p += std::exp(logc - double(m) * std::log(2.0));
  }
  return std::min(1.0, p);
}

}  // namespace kvarn::eval
