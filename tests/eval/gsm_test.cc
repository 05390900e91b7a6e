// The GSM task's answer extraction, stop rule and statistics (known small cases).
#include "eval/gsm.h"

#include <gtest/gtest.h>

#include <string>

namespace kvarn::eval {
namespace {

std::string Answer(const std::string& text) {
  std::string a;
  return ExtractGsmAnswer(text, &a) ? a : "<none>";
}

TEST(Gsm, ExtractsTheNumberAfterTheMarker) {
  EXPECT_EQ(Answer("So 3 + 4 = 7 apples.\n#### 7\n"), "7");
  EXPECT_EQ(Answer("#### 1,250"), "1250");
  EXPECT_EQ(Answer("#### -3.50 dollars"), "-3.5");
  EXPECT_EQ(Answer("#### $7.00."), "7");
  EXPECT_EQ(Answer("#### 007"), "7");
  EXPECT_EQ(Answer("#### 0.25"), "0.25");
  EXPECT_EQ(Answer("#### -0"), "0");
  EXPECT_EQ(Answer("#### 12. Next"), "12");       // sentence period, not a decimal point
  EXPECT_EQ(Answer("#### 4 #### 5"), "4");         // the first marker counts
  EXPECT_EQ(Answer("5 + 5 = 10 so the answer is 10"), "<none>");
  EXPECT_EQ(Answer("#### many"), "<none>");
  EXPECT_EQ(Answer("####"), "<none>");
}

TEST(Gsm, AnswersCompareAsExactDecimals) {
  EXPECT_TRUE(GsmAnswersEqual("1250", "1,250"));
  EXPECT_TRUE(GsmAnswersEqual("7", "7.0"));
  EXPECT_FALSE(GsmAnswersEqual("7", "7.01"));
  EXPECT_FALSE(GsmAnswersEqual("7", "-7"));
  EXPECT_FALSE(GsmAnswersEqual("x", "x"));  // not numbers: never equal
}

TEST(Gsm, StopsAfterTheAnswerLineOrANewQuestion) {
  EXPECT_FALSE(GsmShouldStop(" First, 3 + 4 = 7.\n"));
  EXPECT_FALSE(GsmShouldStop(" 3 + 4 = 7.\n#### 7"));  // the number may go on
  EXPECT_TRUE(GsmShouldStop(" 3 + 4 = 7.\n#### 7\n"));
  EXPECT_TRUE(GsmShouldStop(" 3 + 4 = 7.\n\nQuestion: another"));
  EXPECT_FALSE(GsmShouldStop(" #### \n"));  // no number yet: keep going until a limit
}

TEST(Gsm, WilsonIntervalKnownValues) {
  // Textbook values (Wilson 1927; e.g. Newcombe 1998, table I): 0/10 and 5/10 at 95%.
  Interval a = WilsonInterval(0, 10);
  EXPECT_NEAR(a.low, 0.0, 1e-12);
  EXPECT_NEAR(a.high, 0.2775, 5e-5);
  Interval b = WilsonInterval(5, 10);
  EXPECT_NEAR(b.low, 0.2366, 5e-5);
  EXPECT_NEAR(b.high, 0.7634, 5e-5);
  Interval c = WilsonInterval(10, 10);
  EXPECT_NEAR(c.low, 0.7225, 5e-5);
  EXPECT_NEAR(c.high, 1.0, 1e-12);
}

TEST(Gsm, McNemarExactKnownValues) {
  EXPECT_DOUBLE_EQ(McNemarExactP(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(McNemarExactP(3, 3), 1.0);
  EXPECT_NEAR(McNemarExactP(0, 5), 2.0 / 32, 1e-12);         // both tails of 1/32
  EXPECT_NEAR(McNemarExactP(5, 1), 2.0 * 7 / 64, 1e-12);     // P(X<=1)+P(X>=5), m = 6
  EXPECT_NEAR(McNemarExactP(2, 1), 1.0, 1e-12);              // m = 3: every outcome as far
}

}  // namespace
}  // namespace kvarn::eval
