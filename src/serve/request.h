// Parsing and validation of OpenAI requests (/v1/chat/completions, /v1/completions) into what
// the scheduler runs. Every field is type-checked; a bad one gives an ApiError naming it (param)
// and the value or limit at fault. Nothing here throws or asserts on input.
//
// Accepted: model, messages (content as a string or an array of text parts) or prompt (a string,
// one string in an array, or token ids), max_tokens / max_completion_tokens, temperature, top_p,
// top_k, min_p, seed, stop (a string or up to kMaxStop strings), stream, stream_options
// .include_usage, logprobs / top_logprobs (chat: bool + 0..20; completions: 0..5), n (1 only),
// and llama-server's extensions top_k, min_p and ignore_eos.
// Refused with a message rather than silently ignored: n > 1, echo, suffix, best_of > 1,
// non-zero presence/frequency penalties, logit_bias, tools and functions, response_format other
// than text, roles other than system/developer/user/assistant, non-text content parts.
// Other fields (user, metadata, ...) are ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/sampler.h"
#include "model/tokenizer.h"
#include "serve/api_error.h"

namespace kvarn::serve {

enum class Endpoint { kChat, kCompletion };

struct RequestLimits {
  std::string model_id;           // the one model served; "" accepts any name
  int ctx = 4096;                 // per-sequence context: prompt + max_tokens must fit
  int default_max_tokens = 1024;  // when the request gives none (capped by the context)
  size_t max_stop = 4;            // OpenAI's limit
  size_t max_stop_bytes = 256;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::vector<int32_t> prompt;  // token ids, BOS and chat template applied
  int max_tokens = 0;
  SamplerParams sampler;  // kvarn run's (and llama-server's) defaults where absent
  bool seeded = false;    // seed given (otherwise the server draws one)
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;
  bool ignore_eos = false;  // llama-server's extension: never sample an end-of-generation
};

// The byte offset of the first byte of s that is not part of valid UTF-8, or npos.
size_t FirstInvalidUtf8(std::string_view s);

std::optional<ApiError> ParseCompletionRequest(std::string_view body, Endpoint endpoint,
                                               const Tokenizer& tokenizer,
                                               const RequestLimits& limits, CompletionRequest* out);

// POST /tokenize {"content": string, "add_special": bool} and /detokenize {"tokens": [ids]}.
std::optional<ApiError> ParseTokenize(std::string_view body, const Tokenizer& tokenizer,
                                      std::vector<int32_t>* ids);
std::optional<ApiError> ParseDetokenize(std::string_view body, const Tokenizer& tokenizer,
                                        std::string* text);

}  // namespace kvarn::serve
