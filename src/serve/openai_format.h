// OpenAI response framing: chat.completion / text_completion objects, their streaming chunks
// (server-sent events ending in "data: [DONE]"), usage, logprobs and error objects.
//
// Usage is in every response: in the object of a non-streaming one; in a stream, in the chunk
// that carries finish_reason (as llama-server does), or, with stream_options.include_usage,
// exactly as OpenAI specifies it: "usage": null in every chunk, then one chunk with
// "choices": [] and the usage just before [DONE].
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "serve/api_error.h"
#include "serve/job.h"
#include "serve/request.h"

namespace kvarn::serve {

struct ResponseMeta {
  Endpoint endpoint = Endpoint::kChat;
  std::string id;       // chatcmpl-... / cmpl-...
  int64_t created = 0;  // Unix seconds
  std::string model;
  std::string fingerprint;  // system_fingerprint: kvarn version and cache type
};

// Compact JSON; bytes that are not UTF-8 (a token's partial character) become U+FFFD.
std::string Dump(const nlohmann::json& j);
// "data: <json>\n\n"
std::string SseEvent(const nlohmann::json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

nlohmann::json ErrorJson(const ApiError& e);
nlohmann::json UsageJson(const Usage& u);

// Logprobs of tokens, in the endpoint's format; text_offset (completions) continues from
// *offset, which is advanced by the tokens' byte lengths.
nlohmann::json LogprobsJson(Endpoint endpoint, const std::vector<TokenLogprob>& lps,
                            const Tokenizer& tok, size_t* offset);

nlohmann::json FinalResponse(const ResponseMeta& m, const std::string& text,
                             const nlohmann::json& logprobs, const std::string& finish_reason,
                             const Usage& usage);

// One streaming chunk. role_only: the chat stream's first chunk (delta {"role", "content": ""}).
// finish_reason "" -> null. usage: attached when not null; with_null_usage adds "usage": null.
nlohmann::json StreamChunk(const ResponseMeta& m, const std::string& text,
                           const nlohmann::json& logprobs, const std::string& finish_reason,
                           bool role_only, const nlohmann::json& usage, bool with_null_usage);
// The include_usage chunk: "choices": [] and the usage.
nlohmann::json UsageChunk(const ResponseMeta& m, const Usage& usage);

}  // namespace kvarn::serve
