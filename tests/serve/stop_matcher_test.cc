// StopMatcher: stop strings found across token boundaries, nothing of them ever released, and
// everything else released as soon as it cannot start one.
#include "serve/stop_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvarn::serve {
namespace {

// Feeds pieces one by one; returns everything released (with the flush) and whether it matched.
std::string Feed(const std::vector<std::string>& stops, const std::vector<std::string>& pieces,
                 bool* matched, std::vector<std::string>* released = nullptr) {
  StopMatcher m(stops);
  std::string out;
  for (const std::string& p : pieces) {
    const std::string r = m.Push(p);
    if (released != nullptr) released->push_back(r);
    out += r;
  }
  out += m.Flush();
  *matched = m.matched();
  return out;
}

TEST(StopMatcher, NoStopsReleasesEverythingAtOnce) {
  bool matched;
  std::vector<std::string> rel;
  EXPECT_EQ(Feed({}, {"ab", "c"}, &matched, &rel), "abc");
  EXPECT_FALSE(matched);
  EXPECT_EQ(rel, (std::vector<std::string>{"ab", "c"}));
}

TEST(StopMatcher, MatchAcrossPiecesCutsBeforeTheStop) {
  bool matched;
  std::vector<std::string> rel;
  EXPECT_EQ(Feed({"\n\nUser:"}, {"Hello", " there\n", "\nUs", "er:", " more"}, &matched, &rel),
            "Hello there");
  EXPECT_TRUE(matched);
  // "\n" could start the stop string: held until it cannot.
  EXPECT_EQ(rel[1], " there");
  EXPECT_EQ(rel[2], "");
  EXPECT_EQ(rel[3], "");
  EXPECT_EQ(rel[4], "");
}

TEST(StopMatcher, HeldTailIsReleasedWhenItStopsMatching) {
  bool matched;
  std::vector<std::string> rel;
  EXPECT_EQ(Feed({"STOP"}, {"a S", "T", "x"}, &matched, &rel), "a STx");
  EXPECT_FALSE(matched);
  EXPECT_EQ(rel, (std::vector<std::string>{"a ", "", "STx"}));
  // A held tail that never resolves comes out at the flush.
  EXPECT_EQ(Feed({"STOP"}, {"a ST"}, &matched), "a ST");
  EXPECT_FALSE(matched);
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  bool matched;
  EXPECT_EQ(Feed({"world", "lo"}, {"hello world"}, &matched), "hel");
  EXPECT_TRUE(matched);
  EXPECT_EQ(Feed({"ab", "b"}, {"xab"}, &matched), "x");
  EXPECT_TRUE(matched);
}

TEST(StopMatcher, MultiByteCharactersAreNeverSplit) {
  bool matched;
  std::vector<std::string> rel;
  // "é" (C3 A9) then the stop "éx": the held tail starts at the character, not inside it.
  EXPECT_EQ(Feed({"\xC3\xA9x"}, {"caf\xC3\xA9", "!"}, &matched, &rel), "caf\xC3\xA9!");
  EXPECT_EQ(rel[0], "caf");
  EXPECT_FALSE(matched);
}

TEST(StopMatcher, NothingAfterAMatch) {
  StopMatcher m({"x"});
  EXPECT_EQ(m.Push("axb"), "a");
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");
}

}  // namespace
}  // namespace kvarn::serve
