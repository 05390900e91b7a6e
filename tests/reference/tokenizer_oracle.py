#!/usr/bin/env python3
"""Golden tokenizations for kvarn's C++ BPE tokenizer (tests/model/tokenizer_test.cc).

The oracle is Hugging Face's own stack, independent of kvarn's code: transformers' GGUF tokenizer
builder (transformers.integrations.gguf.convert_gguf_tokenizer, the code behind
AutoTokenizer.from_pretrained(dir, gguf_file=...)) over the Rust `tokenizers` library. Two
deviations from calling AutoTokenizer directly, both forced:
  * transformers' GGUF *reader* imports torch (a multi-GB wheel); the metadata is read with
    llama.cpp's `gguf` package instead and handed to the same builder.
  * transformers' builder has no entry for tokenizer.ggml.pre == "smollm": it leaves plain GPT-2
    byte-level splitting, which keeps digit runs together. SmolLM2's own tokenizer.json (and
    llama.cpp's "smollm" regex table entry) first isolate every \\p{N} code point, so for that
    value the pre-tokenizer is set to Sequence[Digits(individual), ByteLevel] here. The number of
    texts on which the unpatched builder would disagree is recorded in the output.

Run with the cache venv made by scripts/fetch_models.sh (pins transformers, tokenizers, jinja2):
    $KVARN_CACHE/venv/bin/python tests/reference/tokenizer_oracle.py [--cache DIR] [--out DIR]
Writes OUT/<model key>.json (default tests/model/testdata/tokenizer/), ASCII-only JSON:
    model, file, pre, oracle {name: version}, transformers_unpatched_mismatches,
    cases: [{text, pieces (pre-tokens, parse_special=false), ids, ids_special}],
    chats: [{messages, add_generation_prompt, text, ids}],
    corpus: {file, blocks: [{offset, bytes, n_ids, fnv1a64}]}   (when pydocs.txt is cached)
and OUT/splits.json: the pre-tokens of each split-pattern family kvarn implements
(tokenizer.ggml.pre "gpt-2", "smollm", "qwen2", "llama-bpe"), for the texts plus SPLIT_TEXTS
plus 240 seeded random strings over the characters the patterns treat specially.
"""
import argparse
import json
import os
import sys

import gguf  # pinned in scripts/fetch_models.sh
import tokenizers
import transformers
from tokenizers import pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
}

# The fixed text set. Keep it NFC: Qwen2's original tokenizer.json NFC-normalizes, but neither
# llama.cpp nor transformers' GGUF builder nor kvarn does, so non-NFC text would only test that
# all three agree on skipping it (one case below does exactly that on purpose).
TEXTS = [
    "",
    "a",
    " ",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog. It was 3.14159 degrees at 12:30pm.",
    "In 1234567 cases, about 42% of users (n=9,876) reported it; 0.5x faster, 1e-9 error.",
    "don't I'll we've they're she's he'd it'll you'RE DON'T WE'LL I'M Ma'am o'clock 'quoted'",
    "Contractions at the end: isn't it? 's 't 'll",
    "Punctuation runs: ... !!! ??? --- *** ### ((())) [[]] {{}} <<>> ;;; ::: ,,, ''' \"\"\"",
    "Mixed punct: a.b,c;d:e!f?g (h) [i] {j} <k> \"l\" 'm' `n` ~o~ @p #q $r %s ^t &u *v _w_ +x= |y| \\z/",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = {'a': [1, 2, 3], \"b\": None}\n",
    "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;  // double\n  return v.size() > 2 ? 0 : 1;\n}\n",
    "if (a && b || !c) { x->y = z[i++] << 3; } else { p = &q; /* comment */ }",
    "Emoji: 😀 😂 👍🏽 🇫🇷 🇯🇵 ❤️ ✨ 🚀",
    "ZWJ: 👨‍👩‍👧‍👦 👩‍💻 🏳️‍🌈 🧑🏿‍🚀 and text after",
    "😀😀😀😀 no spaces between emoji👍🏽👍🏽",
    "中文测试：你好，世界！这是一个句子。",
    "日本語のテキスト、カタカナとひらがな。東京は晴れです。",
    "한국어 문장입니다. 안녕하세요!",
    "Русский текст: Привет, мир! Ёжик.",
    "العربية: مرحبا بالعالم ١٢٣",
    "हिन्दी: नमस्ते दुनिया, यह परीक्षण है।",
    "Ελληνικά: Γειά σου Κόσμε. Español: ¿Qué tal? Français: déjà vu, œuvre. Deutsch: Straße, Äpfel.",
    "Mixed: English中文русский日本語한국어العربية123abc",
    "Numbers: 0 7 42 100 1234567 3.14159 -2.5e10 1,000,000 0x1F 0b1010 v2.0.1",
    "Unicode digits: ² ³ ½ Ⅻ ١٢٣ १२३ １２３ x² 10⁻⁹",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ ≤ ∞ → ⊥ ≠ ≈ ±",
    "   leading spaces",
    "trailing spaces   ",
    "trailing tab\t",
    "two  spaces  between   three    four",
    "tabs\tbetween\t\twords\t\t\tend",
    "line one\nline two\n\nline four\n\n\nline seven",
    "\n\n\n",
    "\n",
    "  \n  \n  ",
    " \n\n x",
    "windows\r\nline\r\nendings\r\n\r\n",
    "mixed  \t \n\t  whitespace \t\n",
    " " * 40 + "forty spaces",
    "a" + " " * 17 + "b" + "\t" * 9 + "c" + "\n" * 7 + "d",
    "non\u00a0breaking\u00a0spaces and\u2003em\u2003spaces and\u3000ideographic",
    "Combining: e\u0301 (decomposed) vs \u00e9 (precomposed); n\u0303",
    "URL https://example.com/path?query=1&x=y#frag and email a.b+c@d-e.org",
    "JSON: {\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "Markdown **bold** _italic_ `code` [link](http://x.y) > quote\n- item\n1. item",
    "<tool_call> is a user-defined token in Qwen; so is </tool_call>.",
    "Plain text that spells <|im_start|>user and <|im_end|> and <|endoftext|>.",
    "CamelCaseIdentifier snake_case_name SCREAMING_CASE kebab-case x1y2z3",
    "__init__ __name__ == '__main__' self._private; i++; --j; a->b; a::b; a=>b; a<=b>=c!=d",
    "Ünïcödé ßtrangé wörds: naïve café résumé coöperate",
    "Hmm... I mean—well—it's 'complicated', isn't it?! (Yes.)",
    # Control characters; SmolLM2 has no byte token for 0x04 or 0x06, so they are dropped and
    # (HF's BPE) the characters around them can merge.
    "ctrl \x04x !\x04! \x06\x06 \x00 \x7f \x1b[0m bell\x07 done",
]

# Conversations for the chat template: with and without a system message.
CHATS = [
    ([{"role": "user", "content": "Hello!"}], True),
    ([{"role": "user", "content": "Write a Python function that adds two numbers."}], True),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "What is 2+2?"}], True),
    ([{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "Tell me a joke about emoji 😀."}], True),
    ([{"role": "user", "content": "  leading spaces, trailing newline\n"}], True),
    ([{"role": "user", "content": "no generation prompt"}], False),
]

# Extra texts for the split patterns alone (splits.json), where the alternatives interact.
SPLIT_TEXTS = [
    "'S 'T 'RE 'VE 'M 'LL 'D 's 'll 'x ''s '' 'hello (x) [y]z",
    "a1b22c333d4444e55555 12345678901",
    "\t\tx x \t\ny !!\n\nfoo ?!\r\n bar  \n\n  baz \r\r\n",
    "   \t   x\t", " ", "  ", "\t", "\n \n", "a \u00a0b", "x\u2028y", "\u3000\u3000z",
    "\"quoted\" 'single' `tick` --flag -x +1 -1 .5 ..6",
    "\u00bd\u00bc 1\u00bd x\u00b2y \u2167\u2168",
]



def fuzz_texts(count=240, seed=20240607):
    """Random short strings over the characters the split patterns treat specially."""
    import random
    rng = random.Random(seed)
    alphabet = [" ", " ", " ", "\t", "\n", "\r", "a", "b", "Z", "s", "t", "l", "e", "'", "1",
                "7", "\u00b2", "\u2167", "!", ".", "(", "\u4e2d", "\U0001F600", "\u00a0",
                "\u3000", "\u0301", "\u00e9", "-", "_", "\x04"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
            for _ in range(count)]


# Split-pattern families kvarn implements, as Hugging Face `tokenizers` pre-tokenizers.
GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = QWEN2_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")


def split_families():
    """(tokenizer.ggml.pre value, pre-tokenizer) for each pattern family."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    split = lambda rx: pre_tokenizers.Sequence(  # noqa: E731
        [pre_tokenizers.Split(tokenizers.Regex(rx), behavior="isolated"), byte_level])
    return [
        ("gpt-2", pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)),
        ("smollm", pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])),
        ("qwen2", split(QWEN2_SPLIT)),
        ("llama-bpe", split(LLAMA3_SPLIT)),
    ]


CORPUS_FILE = "pydocs.txt"
CORPUS_BYTES = 1 << 20  # the first 1 MiB, cut at a newline, in blocks of about 64 KiB
CORPUS_BLOCK = 1 << 16


def cache_dir() -> str:
    c = os.environ.get("KVARN_CACHE")
    if c:
        return c
    x = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(x, "kvarn")


def field_value(reader: gguf.GGUFReader, key: str):
    f = reader.fields.get(key)
    if f is None:
        return None
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8")
    v = f.parts[-1][0]
    return bool(v) if t == gguf.GGUFValueType.BOOL else int(v)


def load(path: str):
    """(backend Tokenizer, PreTrainedTokenizerFast, metadata dict, unpatched backend)."""
    r = gguf.GGUFReader(path)
    g = lambda k: field_value(r, k)  # noqa: E731
    tdict = {
        "tokenizer_type": g("tokenizer.ggml.model"),
        "pre_tokenizer_type": g("tokenizer.ggml.pre"),
        "tokens": g("tokenizer.ggml.tokens"),
        "token_type": g("tokenizer.ggml.token_type"),
        "merges": g("tokenizer.ggml.merges"),
    }
    for k in ("bos_token_id", "eos_token_id", "padding_token_id"):
        v = g("tokenizer.ggml." + k)
        if v is not None:
            tdict[k.replace("padding", "pad")] = v
    arch = g("general.architecture")
    backend, _ = convert_gguf_tokenizer(arch, dict(tdict))
    unpatched, _ = convert_gguf_tokenizer(arch, dict(tdict))
    if tdict["pre_tokenizer_type"] == "smollm":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    fast = PreTrainedTokenizerFast(tokenizer_object=backend,
                                   chat_template=g("tokenizer.chat_template"))
    return backend, fast, tdict, unpatched


def encode(backend, text: str, parse_special: bool):
    # encode_special_tokens=True makes control tokens plain text (kvarn's parse_special=false);
    # user-defined tokens stay whole either way, as in llama.cpp.
    backend.encode_special_tokens = not parse_special
    return backend.encode(text, add_special_tokens=False).ids


def pieces(backend, text: str, pre=None):
    """Pre-tokens as UTF-8 strings: the ByteLevel alphabet is mapped back to bytes."""
    inv = {c: b for b, c in bytes_to_unicode().items()}
    out = []
    for piece, _ in (pre or backend.pre_tokenizer).pre_tokenize_str(text):
        out.append(bytes(inv[c] for c in piece).decode("utf-8"))
    return out


def write_json(path: str, obj: dict) -> None:
    """ASCII JSON with one list element per line: compact, yet a changed case is a one-line
    diff."""
    def dump(v, indent):
        if isinstance(v, dict) and any(isinstance(x, (dict, list)) for x in v.values()):
            pad = " " * (indent + 1)
            items = [f"{pad}{json.dumps(k)}: {dump(x, indent + 1)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        if isinstance(v, list) and v and isinstance(v[0], dict):
            pad = " " * (indent + 1)
            nested = lambda x: any(  # noqa: E731
                isinstance(y, list) and y and isinstance(y[0], dict) for y in x.values())
            items = [pad + (dump(x, indent + 1) if nested(x) else json.dumps(x, ensure_ascii=True))
                     for x in v]
            return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
        return json.dumps(v, ensure_ascii=True)
    with open(path, "w", encoding="ascii") as f:
        f.write(dump(obj, 0) + "\n")


def fnv1a64(ids) -> str:
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little", signed=True):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def corpus_blocks(backend, path: str):
    with open(path, "rb") as f:
        data = f.read(CORPUS_BYTES)
    data = data[: data.rfind(b"\n") + 1]
    blocks, off = [], 0
    while off < len(data):
        end = min(off + CORPUS_BLOCK, len(data))
        end = data.rfind(b"\n", off, end) + 1 if end < len(data) else end
        if end <= off:
            end = min(off + CORPUS_BLOCK, len(data))
        ids = encode(backend, data[off:end].decode("utf-8"), False)
        blocks.append({"offset": off, "bytes": end - off, "n_ids": len(ids),
                       "fnv1a64": fnv1a64(ids)})
        off = end
    return blocks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=cache_dir())
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "model", "testdata", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    splits = {"oracle": {"tokenizers": tokenizers.__version__}, "families": []}
    for pre, tok in split_families():
        splits["families"].append({"pre": pre, "cases": [
            {"text": t, "pieces": pieces(None, t, tok)}
            for t in TEXTS + SPLIT_TEXTS + fuzz_texts()]})
    write_json(os.path.join(args.out, "splits.json"), splits)
    for key, fname in MODELS.items():
        path = os.path.join(args.cache, fname)
        if not os.path.exists(path):
            print(f"tokenizer_oracle: {path} absent; run scripts/fetch_models.sh", file=sys.stderr)
            return 1
        backend, fast, tdict, unpatched = load(path)
        cases, unpatched_mismatches = [], 0
        vocab = set(tdict["tokens"])
        spelling = bytes_to_unicode()
        unencodable = {chr(b) for b in range(128) if spelling[b] not in vocab}
        for text in TEXTS:
            ids = encode(backend, text, False)
            if encode(unpatched, text, False) != ids:
                unpatched_mismatches += 1
            # Round trip, less the ASCII bytes the vocabulary has no token for (dropped).
            dec = backend.decode(ids, skip_special_tokens=False)
            kept = "".join(ch for ch in text if ch not in unencodable)
            assert dec == kept, (key, text, dec)
            cases.append({"text": text, "pieces": pieces(backend, text), "ids": ids,
                          "ids_special": encode(backend, text, True)})
        chats = []
        backend.encode_special_tokens = False
        for messages, gen in CHATS:
            text = fast.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            ids = fast.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen,
                                           return_dict=False)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            chats.append({"messages": messages, "add_generation_prompt": gen, "text": text,
                          "ids": list(ids)})
        out = {
            "model": key, "file": fname, "pre": tdict["pre_tokenizer_type"],
            "oracle": {"transformers": transformers.__version__,
                       "tokenizers": tokenizers.__version__, "gguf": gguf.__version__
                       if hasattr(gguf, "__version__") else "0.17.1"},
            "transformers_unpatched_mismatches": unpatched_mismatches,
            "cases": cases, "chats": chats,
        }
        corpus = os.path.join(args.cache, CORPUS_FILE)
        if os.path.exists(corpus):
            out["corpus"] = {"file": CORPUS_FILE, "blocks": corpus_blocks(backend, corpus)}
        dst = os.path.join(args.out, key + ".json")
        write_json(dst, out)
        print(f"tokenizer_oracle: {dst}: {len(cases)} texts, {len(chats)} chats, "
              f"unpatched transformers disagrees on {unpatched_mismatches}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
