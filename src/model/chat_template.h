// Chat prompts for the instruct models kvarn runs. Not a Jinja engine: the model's
// tokenizer.chat_template is read only to recognize its format (ChatML: <|im_start|>role\n
// content<|im_end|>\n ... <|im_start|>assistant\n, used by SmolLM2 and Qwen2.5) and to take the
// default system prompt it inserts when the conversation has none. For system/user/assistant
// messages the output is byte for byte what the template renders (checked against
// transformers' apply_chat_template in tests/model/tokenizer_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/tokenizer.h"

namespace kvarn {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The prompt text. Errors: no template or a non-ChatML one (kUnsupported, quoting its start),
// no messages or an unknown role (kInvalidArgument naming the message index and role).
Status ApplyChatTemplate(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt, std::string* out);

// The prompt's token ids, with BOS first if the model asks for it (tokenizer.add_bos()).
// Control tokens are recognized only in what the template writes, never in message content,
// so a message cannot forge a turn; for content free of control-token text the ids equal
// Encode(ApplyChatTemplate(...), parse_special = true).
Status EncodeChat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt, std::vector<int32_t>* ids);

}  // namespace kvarn
