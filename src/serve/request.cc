#include "serve/request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "model/chat_template.h"
#include "model/utf8.h"

namespace kvarn::serve {
namespace {

using json = nlohmann::json;

std::string TypeName(const json& v) { return v.type_name(); }

// Present and not null.
const json* Field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> WrongType(const std::string& param, const char* want, const json& v) {
  return BadRequest(param, "'" + param + "' must be " + want + ", not " + TypeName(v));
}

std::optional<ApiError> GetBool(const json& obj, const char* key, bool* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return WrongType(key, "a boolean", *v);
  *out = v->get<bool>();
  return std::nullopt;
}

// An integer in [lo, hi]; floats with an integral value (1.0) are refused like any non-integer.
std::optional<ApiError> GetInt(const json& obj, const char* key, int64_t lo, int64_t hi,
                               int64_t* out, bool* present = nullptr) {
  const json* v = Field(obj, key);
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return WrongType(key, "an integer", *v);
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      return BadRequest(key, "'" + std::string(key) + "' = " + std::to_string(u) +
                                 " is out of range [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]");
    x = int64_t(u);
  } else {
    x = v->get<int64_t>();
  }
  if (x < lo || x > hi)
    return BadRequest(key, "'" + std::string(key) + "' = " + std::to_string(x) +
                               " is out of range [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]");
  *out = x;
  return std::nullopt;
}

// A number in [lo, hi] (hi_open: hi excluded, lo_open: lo excluded).
std::optional<ApiError> GetNumber(const json& obj, const char* key, double lo, double hi,
                                  bool lo_open, bool hi_open, float* out) {
  const json* v = Field(obj, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return WrongType(key, "a number", *v);
  const double x = v->get<double>();
  const bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  if (!ok)
    return BadRequest(key, "'" + std::string(key) + "' = " + v->dump() + " is out of range " +
                               (lo_open ? "(" : "[") + json(lo).dump() + ", " + json(hi).dump() +
                               (hi_open ? ")" : "]"));
  *out = float(x);
  return std::nullopt;
}

// Fields kvarn does not implement: refused when they would change the result.
std::optional<ApiError> RefuseUnsupported(const json& body, Endpoint endpoint) {
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    const json* v = Field(body, key);
    if (v == nullptr) continue;
    if (!v->is_number()) return WrongType(key, "a number", *v);
    if (v->get<double>() != 0.0)
      return BadRequest(key, "'" + std::string(key) + "' is not supported by kvarn serve (0 only)");
  }
  if (const json* v = Field(body, "logit_bias"); v != nullptr) {
    if (!v->is_object()) return WrongType("logit_bias", "an object", *v);
    if (!v->empty())
      return BadRequest("logit_bias", "'logit_bias' is not supported by kvarn serve");
  }
  for (const char* key : {"tools", "functions", "tool_choice", "function_call"})
    if (Field(body, key) != nullptr)
      return BadRequest(key, "'" + std::string(key) + "' is not supported by kvarn serve");
  if (const json* v = Field(body, "response_format"); v != nullptr) {
    const json* t = v->is_object() ? Field(*v, "type") : nullptr;
    if (t == nullptr || !t->is_string() || t->get<std::string>() != "text")
      return BadRequest("response_format",
                        "only response_format {\"type\": \"text\"} is supported");
  }
  int64_t n = 1;
  if (auto e = GetInt(body, "n", 1, 1 << 20, &n)) return e;
  if (n != 1) return BadRequest("n", "'n' = " + std::to_string(n) + ": only n = 1 is supported");
  if (endpoint == Endpoint::kCompletion) {
    bool echo = false;
    if (auto e = GetBool(body, "echo", &echo)) return e;
    if (echo) return BadRequest("echo", "'echo' is not supported by kvarn serve");
    if (Field(body, "suffix") != nullptr)
      return BadRequest("suffix", "'suffix' is not supported by kvarn serve");
    int64_t best_of = 1;
    if (auto e = GetInt(body, "best_of", 1, 1 << 20, &best_of)) return e;
    if (best_of != 1) return BadRequest("best_of", "only best_of = 1 is supported");
  }
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& body, const Tokenizer& tok,
                                      std::vector<int32_t>* ids) {
  const json* msgs = Field(body, "messages");
  if (msgs == nullptr) return BadRequest("messages", "'messages' is required");
  if (!msgs->is_array()) return WrongType("messages", "an array", *msgs);
  if (msgs->empty()) return BadRequest("messages", "'messages' is empty");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const std::string at = "messages[" + std::to_string(i) + "]";
    const json& m = (*msgs)[i];
    if (!m.is_object()) return WrongType(at, "an object", m);
    const json* role = Field(m, "role");
    if (role == nullptr) return BadRequest(at + ".role", "'" + at + ".role' is required");
    if (!role->is_string()) return WrongType(at + ".role", "a string", *role);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant")
      return BadRequest(at + ".role", "'" + at + ".role' = \"" + role->get<std::string>() +
                                          "\" is not supported (system, developer, user, "
                                          "assistant)");
    std::string content;
    const json* c = Field(m, "content");
    if (c == nullptr) {
      if (r != "assistant") return BadRequest(at + ".content", "'" + at + ".content' is required");
    } else if (c->is_string()) {
      content = c->get<std::string>();
    } else if (c->is_array()) {
      for (size_t j = 0; j < c->size(); ++j) {
        const std::string pat = at + ".content[" + std::to_string(j) + "]";
        const json& part = (*c)[j];
        if (!part.is_object()) return WrongType(pat, "an object", part);
        const json* type = Field(part, "type");
        if (type == nullptr || !type->is_string() || type->get<std::string>() != "text")
          return BadRequest(pat + ".type", "only content parts of type \"text\" are supported");
        const json* text = Field(part, "text");
        if (text == nullptr || !text->is_string())
          return BadRequest(pat + ".text", "'" + pat + ".text' must be a string");
        content += text->get<std::string>();
      }
    } else {
      return WrongType(at + ".content", "a string or an array of text parts", *c);
    }
    out.push_back({r, std::move(content)});
  }
  const Status st = EncodeChat(tok, out, /*add_generation_prompt=*/true, ids);
  if (!st.ok()) {
    if (st.code() == StatusCode::kUnsupported)
      return ApiError{400, "invalid_request_error", "messages", "",
                      "this model's chat template is not supported (" + st.message() +
                          "); use /v1/completions with a prompt"};
    return BadRequest("messages", st.message());
  }
  return std::nullopt;
}

std::optional<ApiError> ParseTokenIds(const json& arr, const std::string& param,
                                      const Tokenizer& tok, std::vector<int32_t>* ids) {
  ids->clear();
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& v = arr[i];
    const std::string at = param + "[" + std::to_string(i) + "]";
    if (!v.is_number_integer()) return WrongType(at, "a token id (integer)", v);
    const int64_t id = v.is_number_unsigned()
                           ? int64_t(std::min<uint64_t>(v.get<uint64_t>(), 1ull << 40))
                           : v.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size())
      return BadRequest(at, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                std::to_string(tok.vocab_size()));
    ids->push_back(int32_t(id));
  }
  return std::nullopt;
}

std::optional<ApiError> ParsePrompt(const json& body, const Tokenizer& tok,
                                    std::vector<int32_t>* ids) {
  const json* p = Field(body, "prompt");
  if (p == nullptr) return BadRequest("prompt", "'prompt' is required");
  const json* v = p;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array()))
    v = &(*p)[0];  // a batch of one prompt
  if (v->is_string()) {
    const Status st = tok.Encode(v->get<std::string>(), /*parse_special=*/false, ids);
    if (!st.ok()) return BadRequest("prompt", st.message());
    if (tok.add_bos() && tok.bos() >= 0) ids->insert(ids->begin(), tok.bos());
  } else if (v->is_array()) {
    if (!v->empty() && (*v)[0].is_string())
      return BadRequest("prompt", "a batch of " + std::to_string(v->size()) +
                                      " prompts: one prompt per request is supported");
    if (auto e = ParseTokenIds(*v, "prompt", tok, ids)) return e;
  } else {
    return WrongType("prompt", "a string, or an array of token ids", *p);
  }
  if (ids->empty()) return BadRequest("prompt", "the prompt is empty");
  return std::nullopt;
}

std::optional<ApiError> ParseJsonObject(std::string_view body, json* out) {
  const size_t bad = FirstInvalidUtf8(body);
  if (bad != std::string::npos)
    return BadRequest(
        "", "the request body is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
  try {
    *out = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {  // parse_error names the byte position
    return BadRequest("", "the request body is not valid JSON: " + std::string(e.what()));
  }
  if (!out->is_object())
    return BadRequest(
        "", std::string("the request body must be a JSON object, not ") + out->type_name());
  return std::nullopt;
}

}  // namespace

size_t FirstInvalidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t cp;
    size_t len;
    if (utf8::Decode(s, pos, &cp, &len) != utf8::Decoded::kChar) return pos;
    pos += len;
  }
  return std::string::npos;
}

std::optional<ApiError> ParseCompletionRequest(std::string_view body, Endpoint endpoint,
                                               const Tokenizer& tok, const RequestLimits& limits,
                                               CompletionRequest* out) {
  json j;
  if (auto e = ParseJsonObject(body, &j)) return e;
  *out = CompletionRequest();
  out->endpoint = endpoint;

  if (const json* m = Field(j, "model"); m != nullptr) {
    if (!m->is_string()) return WrongType("model", "a string", *m);
    const std::string name = m->get<std::string>();
    if (!limits.model_id.empty() && name != limits.model_id)
      return ApiError{
          404, "invalid_request_error", "model", "model_not_found",
          "the model '" + name + "' does not exist; this server serves '" + limits.model_id + "'"};
  }
  if (auto e = RefuseUnsupported(j, endpoint)) return e;

  // Sampling: kvarn run's defaults (llama.cpp's) where the request is silent.
  if (auto e = GetNumber(j, "temperature", 0.0, 2.0, false, false, &out->sampler.temperature))
    return e;
  if (auto e = GetNumber(j, "top_p", 0.0, 1.0, true, false, &out->sampler.top_p)) return e;
  if (auto e = GetNumber(j, "min_p", 0.0, 1.0, false, true, &out->sampler.min_p)) return e;
  int64_t top_k = out->sampler.top_k;
  if (auto e = GetInt(j, "top_k", 0, 1 << 30, &top_k)) return e;
  out->sampler.top_k = int(top_k);
  if (const json* s = Field(j, "seed"); s != nullptr) {
    if (!s->is_number_integer()) return WrongType("seed", "an integer", *s);
    out->sampler.seed = s->is_number_unsigned() ? s->get<uint64_t>() : uint64_t(s->get<int64_t>());
    out->seeded = true;
  }

  if (const json* s = Field(j, "stop"); s != nullptr) {
    if (s->is_string()) {
      out->stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > limits.max_stop)
        return BadRequest("stop", std::to_string(s->size()) + " stop strings; at most " +
                                      std::to_string(limits.max_stop) + " are allowed");
      for (size_t i = 0; i < s->size(); ++i) {
        if (!(*s)[i].is_string())
          return WrongType("stop[" + std::to_string(i) + "]", "a string", (*s)[i]);
        out->stop.push_back((*s)[i].get<std::string>());
      }
    } else {
      return WrongType("stop", "a string or an array of strings", *s);
    }
    for (const std::string& st : out->stop) {
      if (st.empty()) return BadRequest("stop", "a stop string is empty");
      if (st.size() > limits.max_stop_bytes)
        return BadRequest("stop", "a stop string of " + std::to_string(st.size()) +
                                      " bytes; at most " + std::to_string(limits.max_stop_bytes));
    }
  }

  if (auto e = GetBool(j, "ignore_eos", &out->ignore_eos)) return e;
  if (auto e = GetBool(j, "stream", &out->stream)) return e;
  if (const json* so = Field(j, "stream_options"); so != nullptr) {
    if (!so->is_object()) return WrongType("stream_options", "an object", *so);
    if (auto e = GetBool(*so, "include_usage", &out->include_usage))
      return BadRequest("stream_options.include_usage", e->message);
  }

  if (endpoint == Endpoint::kChat) {
    if (auto e = GetBool(j, "logprobs", &out->logprobs)) return e;
    int64_t top = 0;
    bool has_top = false;
    if (auto e = GetInt(j, "top_logprobs", 0, 20, &top, &has_top)) return e;
    if (has_top && !out->logprobs && top > 0)
      return BadRequest("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    out->top_logprobs = int(top);
  } else {
    int64_t lp = 0;
    bool has = false;
    if (auto e = GetInt(j, "logprobs", 0, 5, &lp, &has)) return e;
    out->logprobs = has;
    out->top_logprobs = int(lp);
  }

  // The prompt, then its size against the context.
  const char* prompt_param = endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (endpoint == Endpoint::kChat) {
    if (auto e = ParseMessages(j, tok, &out->prompt)) return e;
  } else {
    if (auto e = ParsePrompt(j, tok, &out->prompt)) return e;
  }
  const int64_t n_prompt = int64_t(out->prompt.size());
  if (n_prompt >= limits.ctx)
    return BadRequest(prompt_param, "the prompt is " + std::to_string(n_prompt) +
                                        " tokens; the context is " + std::to_string(limits.ctx) +
                                        " tokens (-c), which must also hold the generated ones");

  int64_t max_tokens = 0;
  bool has_max = false;
  const char* max_param = "max_tokens";
  if (endpoint == Endpoint::kChat && Field(j, "max_completion_tokens") != nullptr)
    max_param = "max_completion_tokens";
  if (auto e = GetInt(j, max_param, 1, int64_t(1) << 40, &max_tokens, &has_max)) return e;
  if (has_max) {
    if (n_prompt + max_tokens > limits.ctx)
      return BadRequest(max_param, "the prompt (" + std::to_string(n_prompt) + " tokens) + " +
                                       max_param + " (" + std::to_string(max_tokens) +
                                       ") = " + std::to_string(n_prompt + max_tokens) +
                                       " tokens exceed the context of " +
                                       std::to_string(limits.ctx) + " tokens (-c)");
  } else {
    max_tokens = std::min<int64_t>(limits.default_max_tokens, limits.ctx - n_prompt);
  }
  out->max_tokens = int(max_tokens);
  return std::nullopt;
}

std::optional<ApiError> ParseTokenize(std::string_view body, const Tokenizer& tok,
                                      std::vector<int32_t>* ids) {
  json j;
  if (auto e = ParseJsonObject(body, &j)) return e;
  const json* c = Field(j, "content");
  if (c == nullptr) return BadRequest("content", "'content' is required");
  if (!c->is_string()) return WrongType("content", "a string", *c);
  bool add_special = false;
  if (auto e = GetBool(j, "add_special", &add_special)) return e;
  const Status st = tok.Encode(c->get<std::string>(), /*parse_special=*/false, ids);
  if (!st.ok()) return BadRequest("content", st.message());
  if (add_special && tok.add_bos() && tok.bos() >= 0) ids->insert(ids->begin(), tok.bos());
  return std::nullopt;
}

std::optional<ApiError> ParseDetokenize(std::string_view body, const Tokenizer& tok,
                                        std::string* text) {
  json j;
  if (auto e = ParseJsonObject(body, &j)) return e;
  const json* t = Field(j, "tokens");
  if (t == nullptr) return BadRequest("tokens", "'tokens' is required");
  if (!t->is_array()) return WrongType("tokens", "an array of token ids", *t);
  std::vector<int32_t> ids;
  if (auto e = ParseTokenIds(*t, "tokens", tok, &ids)) return e;
  *text = tok.Decode(ids);
  return std::nullopt;
}

}  // namespace kvarn::serve
