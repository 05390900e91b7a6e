#include "model/chat_template.h"

#include <string_view>

namespace kvarn {
namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";

// A run of prompt text and whether the template wrote it (and so may hold control tokens).
struct Piece {
  std::string text;
  bool from_template;
};

// The default system prompt of a ChatML template: the constant in a string literal
// '<|im_start|>system\n...<|im_end|>'. SmolLM2's template writes the newline raw inside the
// literal, Qwen2.5's as the escape \n; both forms are accepted. A literal that is cut by a
// quote before <|im_end|> ('<|im_start|>system\n' + messages[0]['content'] + ...) is the
// template echoing the caller's system message, not a default, and is skipped.
bool FindDefaultSystem(std::string_view tmpl, std::string* prompt) {
  for (std::string_view open :
       {std::string_view("<|im_start|>system\n"), std::string_view("<|im_start|>system\\n")}) {
    for (size_t at = tmpl.find(open); at != std::string_view::npos; at = tmpl.find(open, at + 1)) {
      if (at == 0 || (tmpl[at - 1] != '\'' && tmpl[at - 1] != '"')) continue;
      std::string text;
      size_t i = at + open.size();
      bool closed = false;
      while (i < tmpl.size()) {
        if (tmpl.substr(i, kImEnd.size()) == kImEnd) {
          closed = true;
          break;
        }
        const char c = tmpl[i];
        if (c == '\'' || c == '"') break;
        if (c == '\\' && i + 1 < tmpl.size()) {  // Jinja string escapes
          const char e = tmpl[i + 1];
          text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
          i += 2;
          continue;
        }
        text.push_back(c);
        ++i;
      }
      if (closed && !text.empty()) {
        *prompt = std::move(text);
        return true;
      }
    }
  }
  return false;
}

Status Render(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
              bool add_generation_prompt, std::vector<Piece>* pieces) {
  const std::string& tmpl = tokenizer.chat_template();
  if (tmpl.empty()) {
    return Unsupported("chat template: the model has no tokenizer.chat_template");
  }
  const std::string_view t(tmpl);
  if (t.find(kImStart) == std::string_view::npos || t.find(kImEnd) == std::string_view::npos ||
      t.find("<|im_start|>assistant") == std::string_view::npos) {
    return Unsupported("chat template: tokenizer.chat_template is not ChatML (it starts \"" +
                       std::string(t.substr(0, 60)) + "\"); only ChatML templates are supported");
  }
  if (messages.empty()) return InvalidArgument("chat template: no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return InvalidArgument("chat template: messages[" + std::to_string(i) + "].role \"" + r +
                             "\" is not system, user or assistant");
    }
  }
  pieces->clear();
  std::string default_system;
  // Both SmolLM2's and Qwen2.5's templates insert their default when the first message is not
  // a system message (and only then).
  if (messages[0].role != "system" && FindDefaultSystem(t, &default_system)) {
    pieces->push_back(
        {std::string(kImStart) + "system\n" + default_system + std::string(kImEnd) + "\n", true});
  }
  for (const ChatMessage& m : messages) {
    pieces->push_back({std::string(kImStart) + m.role + "\n", true});
    pieces->push_back({m.content, false});
    pieces->push_back({std::string(kImEnd) + "\n", true});
  }
  if (add_generation_prompt) pieces->push_back({std::string(kImStart) + "assistant\n", true});
  return Status::Ok();
}

}  // namespace

Status ApplyChatTemplate(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt, std::string* out) {
  std::vector<Piece> pieces;
  KVARN_RETURN_IF_ERROR(Render(tokenizer, messages, add_generation_prompt, &pieces));
  out->clear();
  for (const Piece& p : pieces) *out += p.text;
  return Status::Ok();
}

Status EncodeChat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt, std::vector<int32_t>* ids) {
  std::vector<Piece> pieces;
  KVARN_RETURN_IF_ERROR(Render(tokenizer, messages, add_generation_prompt, &pieces));
  std::vector<TextSegment> segments;
  segments.reserve(pieces.size());
  for (const Piece& p : pieces) segments.push_back({p.text, p.from_template});
  KVARN_RETURN_IF_ERROR(tokenizer.EncodeSegments(segments, ids));
  if (tokenizer.add_bos() && tokenizer.bos() >= 0) ids->insert(ids->begin(), tokenizer.bos());
  return Status::Ok();
}

}  // namespace kvarn
