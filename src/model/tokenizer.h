// Byte-level BPE tokenizer (GGUF tokenizer.ggml.model == "gpt2"), built from a model's GGUF
// metadata: tokens, token types, merges, the pre-tokenizer name (tokenizer.ggml.pre) and the
// special token ids. Follows llama.cpp's llm_tokenizer_bpe (which split pattern each
// tokenizer.ggml.pre value means, see PreTokenizerNames()) and Hugging Face `tokenizers` (where
// the two differ in corner cases, e.g. bytes the vocabulary lacks); tests/model/tokenizer_test.cc
// checks it id for id against Hugging Face on SmolLM2 and Qwen2.5. Encode/Decode are const and
// thread-safe.
//
// Encoding: control tokens (token type 3) are matched as whole strings only when the caller asks
// (parse_special, for text a chat template wrote), so user text can never smuggle in
// "<|im_start|>". User-defined tokens (type 4, e.g. Qwen's "<tool_call>") are always matched
// whole, as llama.cpp and Hugging Face do: pre-tokenization would cut them apart. Text is split by
// the model's pre-tokenizer (hand-written, Unicode-class aware) and each piece is BPE-merged.
// No Unicode normalization is applied (llama.cpp applies none either). Bytes that are not valid
// UTF-8 are tokenized as themselves, so Decode(Encode(x)) == x for any byte string x -- except
// bytes the vocabulary has no byte token for (SmolLM2 lacks 21, e.g. 0x04 and 0xC0, 0xF5..0xFF),
// which are dropped, as Hugging Face and llama.cpp drop them.
//
// Vocabulary text that is not valid UTF-8, or a normal token spelled outside the byte-level
// alphabet, is not an error: such a token stands for its raw bytes (as transformers' GGUF loader
// re-spells it) and can only come out of merges or Decode, never crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/gguf.h"

namespace kvarn {

// llama.cpp's llama_token_type values (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// A span of text to encode; control tokens in it are recognized only if parse_special.
struct TextSegment {
  std::string_view text;
  bool parse_special = false;
};

class Tokenizer {
 public:
  // Builds and validates the tokenizer. Errors (kCorruptData / kUnsupported) name the GGUF key
  // and the offending value: a token_type array whose length differs from the vocabulary's, a
  // merge whose halves or result are not tokens, a special token id out of range, an unknown
  // tokenizer.ggml.pre. The GgufFile may be closed afterwards: everything is copied.
  static Status FromGguf(const GgufFile& f, std::unique_ptr<Tokenizer>* out);

  // The tokenizer.ggml.pre values FromGguf accepts, comma-separated.
  static std::string PreTokenizerNames();

  // Appends the ids of text to *ids (which is cleared first). Never adds BOS (see add_bos()).
  Status Encode(std::string_view text, bool parse_special, std::vector<int32_t>* ids) const;
  // Encodes the concatenation of the segments as one text: pre-tokenization runs across segment
  // boundaries, only control-token recognition differs per segment. Clears *ids first.
  Status EncodeSegments(const std::vector<TextSegment>& segments, std::vector<int32_t>* ids) const;

  // The bytes the ids stand for. Control, unused and other non-text tokens contribute their
  // text only if render_control; ids out of range contribute nothing.
  std::string Decode(const std::vector<int32_t>& ids, bool render_control = false) const;
  // The bytes of one token: a normal token's decoded bytes, any other token's raw text; empty
  // for an id out of range.
  std::string_view TokenBytes(int32_t id) const;
  TokenType token_type(int32_t id) const;
  // True for tokens Decode renders without render_control (normal and user-defined).
  bool IsText(int32_t id) const;

  // The model's pre-tokenization of text (no special-token handling): views into text.
  std::vector<std::string_view> PreTokenize(std::string_view text) const;

  int vocab_size() const { return static_cast<int>(types_.size()); }
  int32_t bos() const { return bos_; }  // -1 when the GGUF names none
  int32_t eos() const { return eos_; }
  int32_t pad() const { return pad_; }
  bool add_bos() const { return add_bos_; }  // tokenizer.ggml.add_bos_token, default false
  // End-of-generation: eos and the control tokens that end a turn in the chat formats kvarn
  // knows (<|im_end|>, <|endoftext|>, <|eot_id|>, <|end|>, <end_of_turn>).
  bool IsEog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }
  const std::string& pre() const { return pre_name_; }
  const std::string& chat_template() const { return chat_template_; }  // "" when absent

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

 private:
  struct Impl;
  Tokenizer();

  std::unique_ptr<Impl> impl_;
  std::vector<TokenType> types_;
  std::string pre_name_;
  std::string chat_template_;
  std::vector<int32_t> eog_;
  int32_t bos_ = -1, eos_ = -1, pad_ = -1;
  bool add_bos_ = false;
};

// Turns a token stream into text without ever emitting part of a UTF-8 character: bytes of an
// incomplete character are held until the tokens that complete it arrive. Bytes that can never
// become valid UTF-8 come out as U+FFFD at once; a character still incomplete at Finish() comes
// out as U+FFFD then. Everything emitted is valid UTF-8, and the concatenation of all outputs is
// the U+FFFD-repaired Decode() of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_control = false)
      : tokenizer_(tokenizer), render_control_(render_control) {}

  std::string Push(int32_t id);  // the text that became complete with this token
  std::string Finish();          // flushes what is held back; the decoder can be reused

 private:
  const Tokenizer& tokenizer_;
  bool render_control_;
  std::string pending_;  // an incomplete UTF-8 prefix, at most 3 bytes
};

}  // namespace kvarn
