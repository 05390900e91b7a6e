// Request validation: every bad field gives its status and names itself (param); good requests
// get the documented defaults. Uses SmolLM2's tokenizer and chat template (skips without it).
#include "serve/request.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "../model/model_test_util.h"
#include "model/chat_template.h"
#include "model/gguf.h"

namespace kvarn::serve {
namespace {

const Tokenizer* Tok() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::unique_ptr<Tokenizer> t;
    std::unique_ptr<GgufFile> f;
    const std::string path = testing::ModelPath(testing::kSmolLM2);
    if (testing::FileExists(path) && GgufFile::Open(path, &f).ok())
      (void)Tokenizer::FromGguf(*f, &t);
    return t;
  }();
  return tok.get();
}

RequestLimits Limits() {
  RequestLimits l;
  l.model_id = "smol";
  l.ctx = 256;
  l.default_max_tokens = 100;
  return l;
}

struct Bad {
  Endpoint endpoint;
  std::string body;
  int status;
  std::string param;
};

TEST(Request, BadInputsNameTheirField) {
  const Tokenizer* tok = Tok();
  if (tok == nullptr) GTEST_SKIP() << testing::kSmolLM2 << " not fetched";
  std::string many_words = "\"";
  for (int i = 0; i < 300; ++i) many_words += "word ";
  many_words += "\"";
  const Endpoint C = Endpoint::kCompletion, H = Endpoint::kChat;
  const Bad cases[] = {
      {C, "{\"prompt\": ", 400, ""},
      {C, "\"a string\"", 400, ""},
      {C, "{\"prompt\": \"caf\xE9\"}", 400, ""},
      {C, "{\"prompt\": \"ok\", \"model\": \"other\"}", 404, "model"},
      {C, "{\"prompt\": \"ok\", \"model\": 3}", 400, "model"},
      {C, "{}", 400, "prompt"},
      {C, "{\"prompt\": 12}", 400, "prompt"},
      {C, "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt"},
      {C, "{\"prompt\": [1, -2]}", 400, "prompt[1]"},
      {C, "{\"prompt\": [1, 99999999]}", 400, "prompt[1]"},
      {C, "{\"prompt\": " + many_words + "}", 400, "prompt"},  // 300+ tokens > ctx 256
      {C, "{\"prompt\": \"ok\", \"max_tokens\": 300}", 400, "max_tokens"},
      {C, "{\"prompt\": \"ok\", \"max_tokens\": 0}", 400, "max_tokens"},
      {C, "{\"prompt\": \"ok\", \"max_tokens\": 2.5}", 400, "max_tokens"},
      {C, "{\"prompt\": \"ok\", \"max_tokens\": \"5\"}", 400, "max_tokens"},
      {C, "{\"prompt\": \"ok\", \"temperature\": -1}", 400, "temperature"},
      {C, "{\"prompt\": \"ok\", \"top_p\": 0}", 400, "top_p"},
      {C, "{\"prompt\": \"ok\", \"min_p\": 1}", 400, "min_p"},
      {C, "{\"prompt\": \"ok\", \"top_k\": -1}", 400, "top_k"},
      {C, "{\"prompt\": \"ok\", \"seed\": \"1\"}", 400, "seed"},
      {C, "{\"prompt\": \"ok\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop"},
      {C, "{\"prompt\": \"ok\", \"stop\": [\"a\", 1]}", 400, "stop[1]"},
      {C, "{\"prompt\": \"ok\", \"stop\": \"\"}", 400, "stop"},
      {C, "{\"prompt\": \"ok\", \"stream\": 1}", 400, "stream"},
      {C, "{\"prompt\": \"ok\", \"ignore_eos\": \"no\"}", 400, "ignore_eos"},
      {C, "{\"prompt\": \"ok\", \"logprobs\": 6}", 400, "logprobs"},
      {C, "{\"prompt\": \"ok\", \"n\": 2}", 400, "n"},
      {C, "{\"prompt\": \"ok\", \"echo\": true}", 400, "echo"},
      {C, "{\"prompt\": \"ok\", \"presence_penalty\": 0.5}", 400, "presence_penalty"},
      {C, "{\"prompt\": \"ok\", \"logit_bias\": {\"5\": 1}}", 400, "logit_bias"},
      {H, "{\"messages\": []}", 400, "messages"},
      {H, "{\"messages\": {}}", 400, "messages"},
      {H, "{\"messages\": [1]}", 400, "messages[0]"},
      {H, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 400, "messages[0].role"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400,
       "messages[0].content[0].type"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 3}", 400,
       "top_logprobs"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": []}", 400,
       "tools"},
      {H,
       "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": 999}",
       400, "max_completion_tokens"},
  };
  for (const Bad& b : cases) {
    CompletionRequest r;
    const auto e = ParseCompletionRequest(b.body, b.endpoint, *tok, Limits(), &r);
    ASSERT_TRUE(e.has_value()) << b.body.substr(0, 120);
    EXPECT_EQ(e->status, b.status) << b.body.substr(0, 120) << ": " << e->message;
    EXPECT_EQ(e->param, b.param) << b.body.substr(0, 120) << ": " << e->message;
    EXPECT_FALSE(e->message.empty());
  }
}

TEST(Request, GoodRequestsGetTheirFieldsAndDefaults) {
  const Tokenizer* tok = Tok();
  if (tok == nullptr) GTEST_SKIP() << testing::kSmolLM2 << " not fetched";
  CompletionRequest r;
  ASSERT_FALSE(
      ParseCompletionRequest("{\"prompt\": \"Hello\"}", Endpoint::kCompletion, *tok, Limits(), &r));
  std::vector<int32_t> ids;
  ASSERT_TRUE(tok->Encode("Hello", false, &ids).ok());
  if (tok->add_bos() && tok->bos() >= 0) ids.insert(ids.begin(), tok->bos());
  EXPECT_EQ(r.prompt, ids);
  EXPECT_EQ(r.max_tokens, 100);  // -n
  EXPECT_FALSE(r.seeded);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.sampler.temperature, SamplerParams().temperature);
  // max_tokens defaults to what the context has left when -n is more.
  std::string words = "\"";
  for (int i = 0; i < 200; ++i) words += "word ";
  words += "\"";
  ASSERT_FALSE(ParseCompletionRequest("{\"prompt\": " + words + "}", Endpoint::kCompletion, *tok,
                                      Limits(), &r));
  EXPECT_EQ(r.max_tokens, 256 - int(r.prompt.size()));

  const char* chat =
      "{\"model\": \"smol\", \"messages\": [{\"role\": \"developer\", \"content\": \"Be brief.\"},"
      " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi \"}, {\"type\":"
      " \"text\", \"text\": \"there\"}]}], \"max_completion_tokens\": 7, \"temperature\": 0,"
      " \"seed\": 18446744073709551615, \"stop\": \"\\n\", \"stream\": true, \"stream_options\":"
      " {\"include_usage\": true}, \"logprobs\": true, \"top_logprobs\": 2, \"user\": \"u\"}";
  ASSERT_FALSE(ParseCompletionRequest(chat, Endpoint::kChat, *tok, Limits(), &r));
  std::vector<int32_t> expect;
  ASSERT_TRUE(
      EncodeChat(*tok, {{"system", "Be brief."}, {"user", "Hi there"}}, true, &expect).ok());
  EXPECT_EQ(r.prompt, expect);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.sampler.temperature, 0.0f);
  EXPECT_TRUE(r.seeded);
  EXPECT_EQ(r.sampler.seed, 18446744073709551615ull);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  // Token-id prompts are taken as they are.
  ASSERT_FALSE(
      ParseCompletionRequest("{\"prompt\": [5, 6, 7], \"logprobs\": 0, \"ignore_eos\": true}",
                             Endpoint::kCompletion, *tok, Limits(), &r));
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 0);
}

TEST(Request, FirstInvalidUtf8) {
  EXPECT_EQ(FirstInvalidUtf8("plain"), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3\xA9"), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("caf\xE9!"), 3u);
  EXPECT_EQ(FirstInvalidUtf8("ab\xC3"), 2u);        // cut short
  EXPECT_EQ(FirstInvalidUtf8("\xED\xA0\x80"), 0u);  // a surrogate
  EXPECT_EQ(FirstInvalidUtf8("x\xC0\xAF"), 1u);     // overlong
}

}  // namespace
}  // namespace kvarn::serve
