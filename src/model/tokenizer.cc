#include "model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "model/utf8.h"

namespace kvarn {
namespace {

// ---------------------------------------------------------------------------------------------
// Unicode classes: the only three questions the split patterns ask of a code point.

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct ClassRange {
  char32_t first, last;
  CharClass cls;
};

constexpr ClassRange kClassRanges[] = {
#include "model/unicode_tables.inc"
};

// ASCII is most text; it gets a direct table instead of the binary search.
const std::array<uint8_t, 128> kAsciiClass = [] {
  std::array<uint8_t, 128> t{};
  for (const ClassRange& r : kClassRanges) {
    for (char32_t c = r.first; c <= r.last && c < 128; ++c) t[c] = r.cls;
  }
  return t;
}();

uint8_t ClassOf(char32_t cp) {
  if (cp < 128) return kAsciiClass[cp];
  const ClassRange* end = std::end(kClassRanges);
  const ClassRange* it =
      std::upper_bound(std::begin(kClassRanges), end, cp,
                       [](char32_t c, const ClassRange& r) { return c < r.first; });
  if (it == std::begin(kClassRanges)) return kOther;
  --it;
  return cp <= it->last ? it->cls : kOther;
}

// A byte that is not part of valid UTF-8 becomes one unit with this code point: it matches no
// literal in the patterns and is classed kOther, like a symbol.
constexpr char32_t kRawByte = 0xFFFFFFFFu;

// ---------------------------------------------------------------------------------------------
// GPT-2's byte <-> printable code point alphabet (bytes_to_unicode in GPT-2's encoder.py):
// printable Latin-1 bytes stand for themselves, the other 68 map to U+0100.. in byte order.

struct ByteAlphabet {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 0x144> to_byte{};  // -1 for code points outside the alphabet
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet a = [] {
    ByteAlphabet t;
    t.to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      t.to_cp[b] = cp;
      t.to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return a;
}

// The bytes a byte-level token spelling stands for; false when the spelling is not valid UTF-8
// or uses a character outside the alphabet.
bool SpellingToBytes(std::string_view text, std::string* out) {
  const ByteAlphabet& a = Alphabet();
  out->clear();
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t cp;
    size_t len;
    if (utf8::Decode(text, pos, &cp, &len) != utf8::Decoded::kChar) return false;
    if (cp >= a.to_byte.size() || a.to_byte[cp] < 0) return false;
    out->push_back(static_cast<char>(a.to_byte[cp]));
    pos += len;
  }
  return true;
}

// Printable form of vocabulary text for error messages: at most 40 bytes, escaped.
std::string Printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > 40) out += "...";
  return "\"" + out + "\"";
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: hand-written matchers equivalent to the split regexes llama.cpp's
// llm_tokenizer_bpe and Hugging Face's tokenizer.json use. Each returns the length (in units)
// of the match at unit i of a fragment ending at e, trying the pattern's alternatives in order
// with the regex engine's greedy backtracking worked out by hand. Where no alternative matches
// (a lone whitespace unit before a non-space), the unit is its own piece, as HF's "isolated"
// split and llama.cpp's splitter both do.

enum class PreKind {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // \p{N} isolated first (every number code point is its own piece), then kGpt2 on the rest.
  kGpt2Digits,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kQwen2,
  // kQwen2 with \p{N}{1,3}.
  kLlama3,
};

struct PreSpec {
  const char* name;
  PreKind kind;
  bool ignore_merges;  // llama.cpp: a piece that is itself a token is not BPE-merged
};

// tokenizer.ggml.pre values and their patterns, as llama.cpp's llama-vocab assigns them.
constexpr PreSpec kPreSpecs[] = {
    {"gpt-2", PreKind::kGpt2, false},           {"smollm", PreKind::kGpt2Digits, false},
    {"starcoder", PreKind::kGpt2Digits, false}, {"refact", PreKind::kGpt2Digits, false},
    {"codeshell", PreKind::kGpt2Digits, false}, {"qwen2", PreKind::kQwen2, false},
    {"stablelm2", PreKind::kQwen2, false},      {"deepseek-r1-qwen", PreKind::kQwen2, false},
    {"llama3", PreKind::kLlama3, true},         {"llama-v3", PreKind::kLlama3, true},
    {"llama-bpe", PreKind::kLlama3, true},      {"dbrx", PreKind::kLlama3, false},
    {"smaug-bpe", PreKind::kLlama3, false},
};

// A fragment decoded into units: one per character, or one per byte that is not valid UTF-8.
struct Units {
  std::vector<char32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> off;  // byte offset of each unit, then the fragment's size

  void Decode(std::string_view text) {
    cp.clear();
    cls.clear();
    off.clear();
    size_t pos = 0;
    while (pos < text.size()) {
      char32_t c;
      size_t len;
      off.push_back(static_cast<uint32_t>(pos));
      if (utf8::Decode(text, pos, &c, &len) == utf8::Decoded::kChar) {
        cp.push_back(c);
        cls.push_back(ClassOf(c));
        pos += len;
      } else {
        cp.push_back(kRawByte);
        cls.push_back(kOther);
        pos += 1;
      }
    }
    off.push_back(static_cast<uint32_t>(text.size()));
  }
};

size_t RunEnd(const Units& u, size_t k, size_t e, uint8_t cls) {
  while (k < e && u.cls[k] == cls) ++k;
  return k;
}

bool IsNewline(char32_t c) { return c == '\r' || c == '\n'; }

char32_t AsciiLower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// 's 't 're 've 'm 'll 'd at i; case-insensitively for the Qwen2/Llama-3 patterns. (The (?i)
// of Oniguruma would also fold U+017F LONG S to s; llama.cpp's [sS] rewrite does not, and
// neither does this.)
size_t MatchContraction(const Units& u, size_t i, size_t e, bool fold) {
  if (u.cp[i] != '\'' || i + 1 >= e) return 0;
  const char32_t a = fold ? AsciiLower(u.cp[i + 1]) : u.cp[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= e) return 0;
  const char32_t b = fold ? AsciiLower(u.cp[i + 2]) : u.cp[i + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

size_t MatchGpt2(const Units& u, size_t i, size_t e) {
  if (size_t n = MatchContraction(u, i, e, false)) return n;
  // " ?X+" for X in letters, numbers, others: the optional space binds to a following run.
  const size_t j = (u.cp[i] == ' ' && i + 1 < e) ? i + 1 : i;
  if (u.cls[j] != kSpace) return RunEnd(u, j + 1, e, u.cls[j]) - i;
  // \s+(?!\S): the whole run at the end of the fragment, else all but its last unit (which
  // then leads the next piece); a single unit before a non-space is a piece by itself (\s+).
  const size_t k = RunEnd(u, i + 1, e, kSpace);
  return (k == e || k - i == 1) ? k - i : k - i - 1;
}

size_t MatchQwen2(const Units& u, size_t i, size_t e, size_t max_digits) {
  if (size_t n = MatchContraction(u, i, e, true)) return n;
  const char32_t c = u.cp[i];
  const uint8_t ci = u.cls[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (ci == kLetter) return RunEnd(u, i + 1, e, kLetter) - i;
  if (ci != kNumber && !IsNewline(c) && i + 1 < e && u.cls[i + 1] == kLetter) {
    return RunEnd(u, i + 2, e, kLetter) - i;
  }
  // \p{N} or \p{N}{1,3}
  if (ci == kNumber) {
    size_t k = i + 1;
    while (k < e && k - i < max_digits && u.cls[k] == kNumber) ++k;
    return k - i;
  }
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  const size_t j = (c == ' ' && i + 1 < e) ? i + 1 : i;
  if (u.cls[j] == kOther) {
    size_t k = RunEnd(u, j + 1, e, kOther);
    while (k < e && IsNewline(u.cp[k])) ++k;
    return k - i;
  }
  // Whitespace. \s*[\r\n]+: the greedy \s* backs off to the run's last newline.
  const size_t k = RunEnd(u, i + 1, e, kSpace);
  for (size_t m = k; m > i; --m) {
    if (IsNewline(u.cp[m - 1])) return m - i;
  }
  // \s+(?!\S) then \s+.
  return (k == e || k - i == 1) ? k - i : k - i - 1;
}

// Appends the [begin, end) unit ranges of the pieces of a fragment.
void SplitUnits(PreKind kind, const Units& u, std::vector<std::pair<size_t, size_t>>* pieces) {
  const size_t n = u.cp.size();
  if (kind == PreKind::kGpt2Digits) {
    // The \p{N} pass: number units alone, the stretches between split by the GPT-2 pattern.
    size_t i = 0;
    while (i < n) {
      if (u.cls[i] == kNumber) {
        pieces->emplace_back(i, i + 1);
        ++i;
        continue;
      }
      const size_t e = [&] {
        size_t k = i;
        while (k < n && u.cls[k] != kNumber) ++k;
        return k;
      }();
      while (i < e) {
        const size_t len = MatchGpt2(u, i, e);
        pieces->emplace_back(i, i + len);
        i += len;
      }
    }
    return;
  }
  size_t i = 0;
  while (i < n) {
    size_t len;
    switch (kind) {
      case PreKind::kGpt2:
        len = MatchGpt2(u, i, n);
        break;
      case PreKind::kQwen2:
        len = MatchQwen2(u, i, n, 1);
        break;
      default:
        len = MatchQwen2(u, i, n, 3);
        break;
    }
    pieces->emplace_back(i, i + len);
    i += len;
  }
}

// ---------------------------------------------------------------------------------------------
// Merge table: (left id, right id) -> (rank, merged id), open addressing on a 64-bit key.

class PairTable {
 public:
  struct Entry {
    uint64_t key = 0;
    int32_t rank = -1;  // -1: empty slot
    int32_t merged = -1;
  };

  void Reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;  // load factor <= 1/2 keeps probe runs short
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  // Inserts unless the pair is present (the lower rank, seen first, wins, as in llama.cpp).
  void Insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t key = Key(a, b);
    for (size_t s = Hash(key);; s = (s + 1) & mask_) {
      Entry& slot = slots_[s];
      if (slot.rank < 0) {
        slot = Entry{key, rank, merged};
        return;
      }
      if (slot.key == key) return;
    }
  }
  const Entry* Find(int32_t a, int32_t b) const {
    const uint64_t key = Key(a, b);
    for (size_t s = Hash(key);; s = (s + 1) & mask_) {
      const Entry& slot = slots_[s];
      if (slot.rank < 0) return nullptr;
      if (slot.key == key) return &slot;
    }
  }

 private:
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t Hash(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 17) & mask_;
  }

  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

// Control token texts that end a turn in the chat formats kvarn knows.
constexpr std::string_view kEogTexts[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>",
                                          "<end_of_turn>"};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  PreKind kind = PreKind::kGpt2;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_token{};  // -1: the vocabulary has no token for the byte
  PairTable merges;
  // Every token's bytes (decoded for normal tokens, raw text otherwise), back to back.
  std::string bytes;
  std::vector<uint32_t> bytes_off;  // vocab_size + 1 offsets into bytes
  // Whole-token matches, longest first so the first hit at a position is the longest.
  struct Special {
    uint32_t off, len;  // into bytes
    int32_t id;
    bool control;  // matched only when parse_special
  };
  std::vector<Special> specials;
  std::array<bool, 256> special_first{};
  // ignore_merges only: a piece's bytes -> its token.
  std::unordered_map<std::string, int32_t> whole_pieces;

  std::string_view Bytes(int32_t id) const {
    return std::string_view(bytes).substr(bytes_off[id], bytes_off[id + 1] - bytes_off[id]);
  }

  // The longest allowed special token starting at text[pos]; nullptr when none.
  const Special* MatchSpecial(std::string_view text, size_t pos, bool parse_special) const {
    if (!special_first[static_cast<uint8_t>(text[pos])]) return nullptr;
    for (const Special& s : specials) {
      if (s.control && !parse_special) continue;
      if (s.len <= text.size() - pos &&
          std::memcmp(text.data() + pos, bytes.data() + s.off, s.len) == 0) {
        return &s;
      }
    }
    return nullptr;
  }

  struct Scratch {
    Units units;
    std::vector<std::pair<size_t, size_t>> pieces;
    struct Symbol {
      int32_t id, prev, next;
    };
    std::vector<Symbol> symbols;
    struct Candidate {
      int32_t rank, pos, left, right, merged;
    };
    std::vector<Candidate> heap;
    // Piece text -> (first index in the output, count) of its ids, for this fragment: English
    // repeats a few thousand pieces, and a lookup is far cheaper than a merge loop.
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> memo;
  };

  void Bpe(std::string_view piece, Scratch* s, std::vector<int32_t>* ids) const;
  void EncodeText(std::string_view text, Scratch* s, std::vector<int32_t>* ids) const;
};

void Tokenizer::Impl::Bpe(std::string_view piece, Scratch* s, std::vector<int32_t>* ids) const {
  if (ignore_merges) {
    if (auto it = whole_pieces.find(std::string(piece)); it != whole_pieces.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  // Bytes without a token are left out, so their neighbours become adjacent and may merge
  // (Hugging Face's BPE does the same).
  auto& sym = s->symbols;
  sym.clear();
  for (char ch : piece) {
    const int32_t id = byte_token[static_cast<uint8_t>(ch)];
    if (id < 0) continue;
    const auto k = static_cast<int32_t>(sym.size());
    sym.push_back({id, k - 1, k + 1});
  }
  const size_t n = sym.size();
  if (n == 0) return;
  sym.back().next = -1;
  // Min-heap on (rank, position): the best-ranked pair first, the leftmost among equals, as
  // Hugging Face's and llama.cpp's BPE both order merges.
  auto& heap = s->heap;
  heap.clear();
  const auto later = [](const Scratch::Candidate& a, const Scratch::Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  const auto push = [&](int32_t pos) {
    const int32_t left = sym[pos].id, right = sym[sym[pos].next].id;
    if (const PairTable::Entry* m = merges.Find(left, right)) {
      heap.push_back({m->rank, pos, left, right, m->merged});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (size_t k = 0; k + 1 < n; ++k) push(static_cast<int32_t>(k));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Scratch::Candidate c = heap.back();
    heap.pop_back();
    // A candidate is stale when either symbol has changed since it was queued.
    Scratch::Symbol& l = sym[c.pos];
    if (l.id != c.left || l.next < 0) continue;
    Scratch::Symbol& r = sym[l.next];
    if (r.id != c.right) continue;
    l.id = c.merged;
    r.id = -1;
    l.next = r.next;
    if (l.next >= 0) sym[l.next].prev = c.pos;
    if (l.prev >= 0) push(l.prev);
    if (l.next >= 0) push(c.pos);
  }
  for (int32_t k = 0; k >= 0; k = sym[k].next) ids->push_back(sym[k].id);
}

void Tokenizer::Impl::EncodeText(std::string_view text, Scratch* s,
                                 std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  s->units.Decode(text);
  s->pieces.clear();
  SplitUnits(kind, s->units, &s->pieces);
  s->memo.clear();
  for (const auto& [b, e] : s->pieces) {
    const uint32_t from = s->units.off[b];
    const std::string_view piece = text.substr(from, s->units.off[e] - from);
    if (piece.size() == 1) {
      const int32_t id = byte_token[static_cast<uint8_t>(piece[0])];
      if (id >= 0) ids->push_back(id);
      continue;
    }
    if (auto it = s->memo.find(piece); it != s->memo.end()) {
      const auto [first, count] = it->second;
      for (size_t k = 0; k < count; ++k) {
        const int32_t id = (*ids)[first + k];  // a copy: push_back may reallocate
        ids->push_back(id);
      }
      continue;
    }
    const size_t first = ids->size();
    Bpe(piece, s, ids);
    s->memo.emplace(piece, std::make_pair(first, ids->size() - first));
  }
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::string Tokenizer::PreTokenizerNames() {
  std::string out;
  for (const PreSpec& p : kPreSpecs) {
    if (!out.empty()) out += ", ";
    out += p.name;
  }
  return out;
}

Status Tokenizer::FromGguf(const GgufFile& f, std::unique_ptr<Tokenizer>* out) {
  const std::string where = f.path() + ": ";
  std::string_view model;
  if (f.Find("tokenizer.ggml.model") == nullptr) {
    return CorruptData(where + "tokenizer.ggml.model absent: the file has no tokenizer");
  }
  KVARN_RETURN_IF_ERROR(f.GetString("tokenizer.ggml.model", &model));
  if (model != "gpt2") {
    return Unsupported(where + "tokenizer.ggml.model \"" + std::string(model) +
                       "\": only \"gpt2\" (byte-level BPE) is supported");
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  Impl& im = *t->impl_;

  std::string_view pre;
  if (f.Find("tokenizer.ggml.pre") == nullptr) {
    return Unsupported(where + "tokenizer.ggml.pre absent: the split pattern is unknown (known: " +
                       PreTokenizerNames() + ")");
  }
  KVARN_RETURN_IF_ERROR(f.GetString("tokenizer.ggml.pre", &pre));
  const PreSpec* spec = nullptr;
  for (const PreSpec& p : kPreSpecs) {
    if (pre == p.name) spec = &p;
  }
  if (spec == nullptr) {
    return Unsupported(where + "tokenizer.ggml.pre " + Printable(pre) +
                       " is not a pre-tokenizer kvarn knows (known: " + PreTokenizerNames() + ")");
  }
  t->pre_name_ = std::string(pre);
  im.kind = spec->kind;
  im.ignore_merges = spec->ignore_merges;

  std::vector<std::string_view> tokens;
  KVARN_RETURN_IF_ERROR(f.GetStringArray("tokenizer.ggml.tokens", &tokens));
  if (tokens.empty()) return CorruptData(where + "tokenizer.ggml.tokens is empty");
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return CorruptData(where + "tokenizer.ggml.tokens has " + std::to_string(tokens.size()) +
                       " entries, more than int32 ids can number");
  }
  const size_t n = tokens.size();
  t->types_.assign(n, TokenType::kNormal);
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    std::vector<int32_t> types;
    KVARN_RETURN_IF_ERROR(f.GetArrayI32("tokenizer.ggml.token_type", &types));
    if (types.size() != n) {
      return CorruptData(where + "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                         " entries but tokenizer.ggml.tokens has " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) {
      if (types[i] < 0 || types[i] > static_cast<int32_t>(TokenType::kByte)) {
        return CorruptData(where + "tokenizer.ggml.token_type[" + std::to_string(i) +
                           "] = " + std::to_string(types[i]) + " is not a token type (0..6)");
      }
      t->types_[i] = static_cast<TokenType>(types[i]);
    }
  }

  // Token bytes, and the spelling -> id map that merges are written in. A spelling that occurs
  // twice maps to its last id, as in llama.cpp and Hugging Face.
  std::unordered_map<std::string_view, int32_t> by_text;
  by_text.reserve(n * 2);
  im.bytes_off.reserve(n + 1);
  std::string decoded;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    im.bytes_off.push_back(static_cast<uint32_t>(im.bytes.size()));
    if (im.bytes.size() + tokens[i].size() > UINT32_MAX) {
      return CorruptData(where + "tokenizer.ggml.tokens holds more than 4 GiB of text");
    }
    const TokenType type = t->types_[i];
    const bool spelled = type == TokenType::kNormal || type == TokenType::kUndefined;
    if (spelled && SpellingToBytes(tokens[i], &decoded)) {
      im.bytes += decoded;
    } else {
      im.bytes.append(tokens[i]);  // raw text: control/user-defined, or outside the alphabet
    }
    by_text[tokens[i]] = id;
  }
  im.bytes_off.push_back(static_cast<uint32_t>(im.bytes.size()));

  // A vocabulary may lack some byte tokens (SmolLM2 has none for 21 bytes such as 0x04 and
  // 0xFF that never occur in its training text); those bytes are dropped when encoding, as
  // Hugging Face and llama.cpp drop them.
  const ByteAlphabet& alpha = Alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string spelling;
    utf8::Append(alpha.to_cp[b], &spelling);
    auto it = by_text.find(spelling);
    im.byte_token[b] = it == by_text.end() ? -1 : it->second;
  }

  std::vector<std::string_view> merges;
  if (f.Find("tokenizer.ggml.merges") == nullptr) {
    return CorruptData(where + "tokenizer.ggml.merges absent: a gpt2 tokenizer needs merges");
  }
  KVARN_RETURN_IF_ERROR(f.GetStringArray("tokenizer.ggml.merges", &merges));
  if (merges.size() > static_cast<size_t>(INT32_MAX)) {
    return CorruptData(where + "tokenizer.ggml.merges has " + std::to_string(merges.size()) +
                       " entries, more than int32 ranks can number");
  }
  im.merges.Reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string_view m = merges[r];
    const std::string field = "tokenizer.ggml.merges[" + std::to_string(r) + "] " + Printable(m);
    // The separator is the first space after the first byte (a spelling never holds a space;
    // llama.cpp splits the same way).
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
    if (sp == std::string_view::npos) {
      return CorruptData(where + field + " is not two tokens separated by a space");
    }
    const std::string_view left = m.substr(0, sp), right = m.substr(sp + 1);
    auto l = by_text.find(left), rr = by_text.find(right);
    if (l == by_text.end() || rr == by_text.end()) {
      return CorruptData(where + field + ": " + Printable(l == by_text.end() ? left : right) +
                         " is not in tokenizer.ggml.tokens");
    }
    joined.assign(left);
    joined.append(right);
    auto j = by_text.find(joined);
    if (j == by_text.end()) {
      return CorruptData(where + field + ": the merged token " + Printable(joined) +
                         " is not in tokenizer.ggml.tokens");
    }
    im.merges.Insert(l->second, rr->second, static_cast<int32_t>(r), j->second);
  }

  if (im.ignore_merges) {
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<int32_t>(i);
      if (t->IsText(id)) im.whole_pieces.emplace(std::string(im.Bytes(id)), id);
    }
  }

  // Special tokens: control always, user-defined too (matched even in plain text).
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const TokenType type = t->types_[i];
    if (type != TokenType::kControl && type != TokenType::kUserDefined) continue;
    const std::string_view text = im.Bytes(id);
    if (text.empty()) continue;  // an empty special token would match everywhere
    im.specials.push_back(
        {im.bytes_off[i], static_cast<uint32_t>(text.size()), id, type == TokenType::kControl});
    im.special_first[static_cast<uint8_t>(text[0])] = true;
  }
  std::stable_sort(im.specials.begin(), im.specials.end(),
                   [](const Impl::Special& a, const Impl::Special& b) { return a.len > b.len; });

  const auto read_id = [&](const char* key, int32_t* dst) -> Status {
    if (f.Find(key) == nullptr) return Status::Ok();
    int64_t v = 0;
    KVARN_RETURN_IF_ERROR(f.GetI64(key, &v));
    if (v < 0 || v >= static_cast<int64_t>(n)) {
      return CorruptData(where + key + " = " + std::to_string(v) +
                         " is out of range: the vocabulary has " + std::to_string(n) + " tokens");
    }
    *dst = static_cast<int32_t>(v);
    return Status::Ok();
  };
  KVARN_RETURN_IF_ERROR(read_id("tokenizer.ggml.bos_token_id", &t->bos_));
  KVARN_RETURN_IF_ERROR(read_id("tokenizer.ggml.eos_token_id", &t->eos_));
  KVARN_RETURN_IF_ERROR(read_id("tokenizer.ggml.padding_token_id", &t->pad_));
  if (f.Find("tokenizer.ggml.add_bos_token") != nullptr) {
    KVARN_RETURN_IF_ERROR(f.GetBool("tokenizer.ggml.add_bos_token", &t->add_bos_));
  }
  if (f.Find("tokenizer.chat_template") != nullptr) {
    std::string_view tmpl;
    KVARN_RETURN_IF_ERROR(f.GetString("tokenizer.chat_template", &tmpl));
    t->chat_template_ = std::string(tmpl);
  }

  if (t->eos_ >= 0) t->eog_.push_back(t->eos_);
  for (const Impl::Special& s : im.specials) {
    if (!s.control) continue;
    const std::string_view text = im.Bytes(s.id);
    for (std::string_view eog : kEogTexts) {
      if (text == eog && s.id != t->eos_) t->eog_.push_back(s.id);
    }
  }
  std::sort(t->eog_.begin(), t->eog_.end());

  *out = std::move(t);
  return Status::Ok();
}

Status Tokenizer::Encode(std::string_view text, bool parse_special,
                         std::vector<int32_t>* ids) const {
  return EncodeSegments({TextSegment{text, parse_special}}, ids);
}

Status Tokenizer::EncodeSegments(const std::vector<TextSegment>& segments,
                                 std::vector<int32_t>* ids) const {
  ids->clear();
  size_t total = 0;
  for (const TextSegment& s : segments) total += s.text.size();
  // Unit offsets are 32-bit; 1 GiB of text per call is far beyond any context window.
  constexpr size_t kMaxText = size_t{1} << 30;
  if (total > kMaxText) {
    return OutOfRange("tokenizer: text of " + std::to_string(total) +
                      " bytes exceeds the 1 GiB a single Encode accepts");
  }
  const Impl& im = *impl_;
  Impl::Scratch scratch;
  // Text between special tokens is gathered across segments, so the split pattern sees it
  // whole, exactly as if the segments had been one string.
  std::string pending;
  for (const TextSegment& seg : segments) {
    const std::string_view text = seg.text;
    size_t start = 0;
    for (size_t pos = 0; pos < text.size(); ++pos) {
      const Impl::Special* sp = im.MatchSpecial(text, pos, seg.parse_special);
      if (sp == nullptr) continue;
      pending.append(text.substr(start, pos - start));
      im.EncodeText(pending, &scratch, ids);
      pending.clear();
      ids->push_back(sp->id);
      start = pos + sp->len;
      pos = start - 1;
    }
    pending.append(text.substr(start));
  }
  im.EncodeText(pending, &scratch, ids);
  return Status::Ok();
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->Bytes(id);
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUndefined;
  return types_[id];
}

bool Tokenizer::IsText(int32_t id) const {
  const TokenType t = token_type(id);
  return id >= 0 && id < vocab_size() &&
         (t == TokenType::kNormal || t == TokenType::kUndefined || t == TokenType::kUserDefined);
}

bool Tokenizer::IsEog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool render_control) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (render_control || IsText(id)) out.append(impl_->Bytes(id));
  }
  return out;
}

std::vector<std::string_view> Tokenizer::PreTokenize(std::string_view text) const {
  Units units;
  units.Decode(text);
  std::vector<std::pair<size_t, size_t>> pieces;
  SplitUnits(impl_->kind, units, &pieces);
  std::vector<std::string_view> out;
  out.reserve(pieces.size());
  for (const auto& [b, e] : pieces) {
    out.push_back(text.substr(units.off[b], units.off[e] - units.off[b]));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace {

// Moves the complete characters at the front of *pending to the result; definitely invalid
// bytes become U+FFFD; an incomplete tail stays unless final.
std::string Drain(std::string* pending, bool final) {
  std::string out;
  size_t pos = 0;
  while (pos < pending->size()) {
    char32_t cp;
    size_t len;
    const utf8::Decoded d = utf8::Decode(*pending, pos, &cp, &len);
    if (d == utf8::Decoded::kChar) {
      out.append(*pending, pos, len);
    } else if (d == utf8::Decoded::kInvalid || final) {
      out.append(utf8::kReplacement);
    } else {
      break;  // incomplete: wait for the next token
    }
    pos += len;
  }
  pending->erase(0, pos);
  return out;
}

}  // namespace

std::string StreamDecoder::Push(int32_t id) {
  if (!render_control_ && !tokenizer_.IsText(id)) return {};
  pending_.append(tokenizer_.TokenBytes(id));
  return Drain(&pending_, false);
}

std::string StreamDecoder::Finish() { return Drain(&pending_, true); }

}  // namespace kvarn
