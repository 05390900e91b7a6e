#include "serve/openai_format.h"

namespace kvarn::serve {

using json = nlohmann::json;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

std::string SseEvent(const json& j) { return "data: " + Dump(j) + "\n\n"; }

json ErrorJson(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return json{{"error", err}};
}

json UsageJson(const Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

namespace {

json Bytes(std::string_view s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

}  // namespace

json LogprobsJson(Endpoint endpoint, const std::vector<TokenLogprob>& lps, const Tokenizer& tok,
                  size_t* offset) {
  if (endpoint == Endpoint::kChat) {
    json content = json::array();
    for (const TokenLogprob& t : lps) {
      const std::string_view s = tok.TokenBytes(t.id);
      json top = json::array();
      for (const auto& [id, lp] : t.top) {
        const std::string_view ts = tok.TokenBytes(id);
        top.push_back({{"token", std::string(ts)}, {"logprob", lp}, {"bytes", Bytes(ts)}});
      }
      content.push_back({{"token", std::string(s)},
                         {"logprob", t.logprob},
                         {"bytes", Bytes(s)},
                         {"top_logprobs", top}});
    }
    return json{{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       text_offset = json::array();
  for (const TokenLogprob& t : lps) {
    const std::string_view s = tok.TokenBytes(t.id);
    tokens.push_back(std::string(s));
    token_logprobs.push_back(t.logprob);
    json alt = json::object();
    for (const auto& [id, lp] : t.top) alt[std::string(tok.TokenBytes(id))] = lp;
    top.push_back(alt);
    text_offset.push_back(*offset);
    *offset += s.size();
  }
  return json{{"tokens", tokens},
              {"token_logprobs", token_logprobs},
              {"top_logprobs", top},
              {"text_offset", text_offset}};
}

json FinalResponse(const ResponseMeta& m, const std::string& text, const json& logprobs,
                   const std::string& finish_reason, const Usage& usage) {
  json choice;
  if (m.endpoint == Endpoint::kChat) {
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}}},
              {"logprobs", logprobs},
              {"finish_reason", finish_reason}};
  } else {
    choice = {
        {"index", 0}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  }
  return json{{"id", m.id},
              {"object", m.endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
              {"created", m.created},
              {"model", m.model},
              {"system_fingerprint", m.fingerprint},
              {"choices", json::array({choice})},
              {"usage", UsageJson(usage)}};
}

json StreamChunk(const ResponseMeta& m, const std::string& text, const json& logprobs,
                 const std::string& finish_reason, bool role_only, const json& usage,
                 bool with_null_usage) {
  json choice = {{"index", 0}};
  if (m.endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (role_only) {
      delta = {{"role", "assistant"}, {"content", ""}};
    } else if (!text.empty() || finish_reason.empty()) {
      delta = {{"content", text}};
    }
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json c = {{"id", m.id},
            {"object", m.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
            {"created", m.created},
            {"model", m.model},
            {"system_fingerprint", m.fingerprint},
            {"choices", json::array({choice})}};
  if (!usage.is_null()) {
    c["usage"] = usage;
  } else if (with_null_usage) {
    c["usage"] = nullptr;
  }
  return c;
}

json UsageChunk(const ResponseMeta& m, const Usage& usage) {
  return json{
      {"id", m.id},
      {"object", m.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
      {"created", m.created},
      {"model", m.model},
      {"system_fingerprint", m.fingerprint},
      {"choices", json::array()},
      {"usage", UsageJson(usage)}};
}

}  // namespace kvarn::serve
