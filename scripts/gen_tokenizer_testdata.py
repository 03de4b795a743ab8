#!/usr/bin/env python3
"""Generates tests/data/tokenizer/: tokenizer.json files of each structure m3 supports, built and
trained with the Hugging Face `tokenizers` library, plus the ids and decoded text that library
produces for a corpus of hard strings. The C++ tests compare m3 against these, token for token.

Usage: python3 scripts/gen_tokenizer_testdata.py [--out tests/data/tokenizer]
Needs `pip install tokenizers`. The files written by one run are consistent with each other, but
reruns may differ where the library breaks frequency ties in hash order (limit_alphabet).
"""
import argparse
import glob
import json
import os
import random

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Text in many scripts, repeated in the training corpus so that merges exist for them.
MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog. Don't stop; we'll see what they've done.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΟΔΥΣΣΕΥΣ και ὀδυσσεύς.",
    "我能吞下玻璃而不伤身体。中文分词测试，标点符号！",
    "いろはにほへと ちりぬるを カタカナ 漢字の混在テキスト。",
    "키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
    "نص عربي للاختبار مع أرقام ٠١٢٣٤٥٦٧٨٩ وعلامات ترقيم؟",
    "עברית היא שפה שמית. שלום עולם!",
    "हिन्दी में परीक्षण पाठ: नमस्ते दुनिया। १२३४",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "Größe, Straße, naïve café, résumé, İstanbul, ıi, ß, ﬁnance, Ⅻ, ½, ²³.",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨ 🧑🏿‍🚀",
]

HARD_STRINGS = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t \n ", "a", "A", "hello", " hello", "hello ", "  hello  world  ",
    "Hello world!", "HELLO WORLD", "hello\nworld", "hello\r\nworld\r\n", "trailing spaces   ",
    "   leading spaces", "multiple    spaces    between", "tabs\tand\ttabs\t\t", "\n\n\nthree newlines",
    "don't I'M we'LL they'Re it'S you'VE she'D", "'s 's's ''s", "O'Neil's rock'n'roll",
    "1234567890", "3.14159 2.71828", "1,000,000", "year 2024-05-17", "x1y22z333w4444", "007",
    "int main(int argc, char** argv) {\n  return 0;\n}\n",
    "    for (size_t i = 0; i < n; ++i) {\n        sum += a[i] * b[i];\n    }\n",
    "def f(x):\n\tif x:\n\t\treturn [y**2 for y in range(x)]  # comment\n",
    "#include <vector>\n#include \"m3/tokenizer.h\"\ntemplate <typename T> T max(T a, T b);",
    "std::unordered_map<std::string, std::vector<int>> m; m[\"key\"].push_back(42);",
    "if (a && b || !c) { x->y = z?.w ?? 0; } // end",
    "<html><body class=\"x\">Hi &amp; bye</body></html>",
    "SELECT * FROM users WHERE id = 1; -- sql",
    "https://example.com/path?q=1&r=two#frag user@example.org",
    "$ ls -la | grep '^d' > out.txt 2>&1",
    "Съешь же ещё этих мягких французских булок",
    "ΟΔΥΣΣΕΥΣ ὀδυσσεύς Σίσυφος ΣΊΣΥΦΟΣ",
    "我能吞下玻璃而不伤身体。", "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다",
    "مرحبا بالعالم ١٢٣", "שלום עולם", "नमस्ते दुनिया १२३", "สวัสดีชาวโลก",
    "Größe Straße naïve café résumé", "İstanbul ıiIİ", "ǅungla ǈ Ǌ", "ﬁnance ﬂow ﬀ",
    "Ⅻ Ⅳ ½ ¾ ² ³ ① ⑳ ٣ ४ ๓", "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３", "ｶﾀｶﾅ ﾊﾝｶｸ",
    "e\u0301 e\u0301\u0302 a\u030a \u00e9 \u212b \u00c5 n\u0303o", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334algo",
    "😀 😀😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨ 🧑🏿‍🚀", "emoji😀inside😀words", "🤖🤖🤖🤖🤖🤖🤖🤖",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛", "\U00010348\U00010330 gothic", "\U0001F600\U0001F4A9\U0001F680",
    "nbsp\u00a0here", "nel\u0085here", "ogham\u1680space", "mongolian\u180evowel", "em\u2003space",
    "line\u2028sep", "para\u2029sep", "ideo\u3000space", "zero\u200bwidth", "zw\u200cnj\u200dj",
    "bom\ufeffmark", "replacement \ufffd char", "private \ue000\uf8ff use", "long s \u017f and kelvin \u212a",
    "'\u017f '\u212a '\u017fs 'S", "noncharacter \ufdd0 \uffff",
    "control \x01\x02\x1b[0m\x7f chars", "\x00null\x00byte",
    "tab\u000bvt\u000cff\rcr", "   \n   \n", " \n\t\r\n \u3000 \u00a0\n",
    "<|endoftext|>", "hello<|endoftext|>world", "a <|endoftext|> b", "<|endoftext|><|endoftext|>",
    "<|endof", "<|endoftext|", "<|begin_of_text|>Hi<|eot_id|>", "  <|eot_id|>  ", "<s>hello</s>",
    "<s> hello </s>", "[MASK] fill [MASK]", "a[MASK]b", "x  [MASK]  y", "<sep>  next", "<sep>",
    "hello world", "say hello world!", "hellohello world", "ＦＵＬＬ width ＦＵＬＬ", "full",
    "<0x41> literal byte token text", "▁metaspace▁char", "Ġbyte Ċlevel",
    "a" * 300, " " * 500, "\n" * 200, "ab" * 150 + "!", "9" * 100,
    "supercalifragilisticexpialidocious" * 5,
    "".join(chr(0x4E00 + (i * 37) % 2000) for i in range(150)),
    "x" + " " * 7 + "y" + "\t" * 5 + "z",
    "Mixed 中文 English العربية русский 😀 123 ٤٥٦",
]

# Characters the random strings are drawn from: every category the pipelines treat differently.
RANDOM_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" " * 12) + list("\n\t\r") + list("'\"!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`")
    + list("éèêëàâäôöüçñßøåæœÉÀÇ") + list("αβγδεζΣσςΩ") + list("абвгдежзийАБВ")
    + list("中文字测试日本語ひらがなカタカナ한국어") + list("مرحبا") + list("שלום") + list("नमस्ते") + list("สวัสดี")
    + ["\u0301", "\u0308", "\u0327", "\u200d", "\u200b", "\u00a0", "\u3000", "\u0085", "\u2028", "\u180e", "\ufeff"]
    + ["😀", "👍", "🏽", "🇫", "🇷", "❤", "\ufe0f", "🤖", "𝔘", "𝟙", "\ufffd"]
    + list("ﬁＦ１²½Ⅻ①٣४İıſK")
    + ["<|endoftext|>", "<|eot_id|>", "<s>", "</s>", "[MASK]", "<sep>", "hello world", "ＦＵＬＬ", "<0x41>"]
)

INVALID_UTF8 = [
    b"abc\xffdef", b"\xfe\xff", b"\xe2\x82", b"euro \xe2\x82\xac ok \xe2\x82", b"\xc0\xaf slash",
    b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 too big", b"\xf0\x9f\x98", b"\x80\x80 lone",
    b"mixed \xe4\xb8 \xe4\xb8\xad \xf0\x9f\x98\x80\xa0", b"\xc3", b"ok \xc3\x28 bad",
]


def corpus_lines(max_bytes=1_500_000):
    """Training text: Debian copyright files and C/C++ headers from this machine, plus the
    multilingual samples so that non-Latin scripts get merges."""
    paths = sorted(glob.glob("/usr/share/doc/*/copyright"))[:300]
    paths += sorted(glob.glob("/usr/include/c++/*/bits/*.h"))[:60]
    paths += sorted(glob.glob("/usr/include/*.h"))[:60]
    lines, total = [], 0
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines(keepends=True):
            lines.append(line)
            total += len(line)
        if total > max_bytes:
            break
    lines += MULTILINGUAL * 50
    return lines


def byte_level_model(lines, vocab_size, special, **bpe_args):
    tok = Tokenizer(models.BPE(**bpe_args))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def build_neox(lines):
    tok = byte_level_model(lines, 3000, ["<|endoftext|>", "<|padding|>"])
    tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    # GPT-NeoX also ships runs of spaces as plain (normalized) added tokens.
    tok.add_tokens([AddedToken(" " * 8, normalized=True), AddedToken(" " * 4, normalized=True)])
    data = json.loads(tok.to_str())
    # The legacy "left right" string encoding of merges (byte-level tokens contain no spaces).
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    return data


def build_llama3(lines):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] + [f"<|reserved_{i}|>" for i in range(4)]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    return json.loads(tok.to_str())


def build_sp_bpe(lines):
    """Llama-2 / Mistral style: SentencePiece BPE converted to tokenizers, byte fallback."""
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    data = json.loads(tok.to_str())
    # Byte tokens live in the model vocabulary only, as in converted SentencePiece files.
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    return data


def build_metaspace(lines):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return json.loads(tok.to_str())


def build_mixed(lines):
    """Everything else: NFKC + Lowercase + regex Replace, Digits, literal and regex Split,
    Metaspace always, subword prefix/suffix, fused unk, added tokens with every flag."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=True, continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"\s+"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[,.;:!?]"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                  limit_alphabet=200, continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False),
                            AddedToken("<sep>", rstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("hello world", single_word=True, normalized=True),
                    AddedToken("ＦＵＬＬ", normalized=True)])
    tok.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.Replace("</w>", " "),
                                     decoders.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                      special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                      ("[SEP]", tok.token_to_id("[SEP]"))])])
    return json.loads(tok.to_str())


def build_gpt2(lines):
    tok = byte_level_model(lines, 1500, ["<s>", "<pad>", "</s>", "<unk>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    return json.loads(tok.to_str())


def split_variants(lines):
    """One byte-level model under several pre-tokenizer pipelines (split behaviours, invert,
    other regexes)."""
    base = json.loads(byte_level_model(lines, 1000, ["<|endoftext|>"]).to_str())
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}

    def split(pattern, behavior, invert=False, literal=False):
        return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern},
                "behavior": behavior, "invert": invert}

    variants = {
        "v_removed": [split(r"\s+", "Removed"), bl],
        "v_invert": [split(r"\w+|[^\w\s]+", "Removed", invert=True), bl],
        "v_contiguous": [split(r"\p{P}", "Contiguous"), {"type": "Digits", "individual_digits": False},
                         dict(bl, use_regex=True)],
        "v_merged_next": [split(" ", "MergedWithNext", literal=True), bl],
        "v_merged_prev": [{"type": "WhitespaceSplit"}, split(r"[aeiou]", "MergedWithPrevious"), bl],
        "v_qwen2": [split(QWEN2_PATTERN, "Isolated"), bl],
        "v_bytelevel_norm": [split("Ġ", "MergedWithNext", literal=True)],
    }
    normalizers_by_variant = {
        "v_qwen2": {"type": "NFC"},
        "v_removed": {"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "NFKD"}]},
        "v_invert": {"type": "NFD"},
        "v_merged_next": {"type": "Strip", "strip_left": False, "strip_right": True},
        "v_bytelevel_norm": {"type": "ByteLevel"},
    }
    out = {}
    for name, steps in variants.items():
        data = json.loads(json.dumps(base))
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps}
        data["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
        data["normalizer"] = normalizers_by_variant.get(name)
        out[name] = data
    return out


def build_edge():
    """A hand-written file for rules a trained vocabulary rarely reaches: ignore_merges with a
    token the merges cannot build, byte fallback with some byte tokens missing (unk, fused),
    single_word / lstrip / rstrip added tokens, WhitespaceSplit, Strip with stop, regex Replace
    decoder, BertProcessing."""
    vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "bc": 6, "x": 7, "y": 8, "z": 9,
             "<0xC3>": 10, "<0xA9>": 11, "<0xE4>": 12, "[CLS]": 13, "[SEP]": 14}
    data = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [
            {"id": 15, "content": "[X]", "single_word": True, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 16, "content": "<L>", "single_word": False, "lstrip": True, "rstrip": True,
             "normalized": False, "special": False},
            {"id": 13, "content": "[CLS]", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 14, "content": "[SEP]", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 14], "cls": ["[CLS]", 13]},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Strip", "content": "x", "start": 0, "stop": 1},
            {"type": "Replace", "pattern": {"Regex": "b+"}, "content": "B"},
            {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": True,
                  "vocab": vocab, "merges": [["a", "b"], ["b", "c"]]},
    }
    return data


EDGE_STRINGS = ["abc", "abcabc", "bcab", "cab abc abcc", "é ü éü üé üüé", "ä ü", "[X]a [X] b[X] [X]",
                "x <L>  y", "  <L>", "<L><L>", "xxabcx", "xabcxx", "xx", "x", "qq abc", "[X][X]", "a\u3000b\u0085c"]


def random_strings(rng, count):
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        out.append("".join(rng.choice(RANDOM_POOL) for _ in range(n)))
    return out


def cases_for(tok, texts):
    cases = []
    for text in texts:
        ids = tok.encode(text).ids
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
            "decoded": tok.decode(ids, skip_special_tokens=True),
            "decoded_keep_special": tok.decode(ids, skip_special_tokens=False),
        })
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = corpus_lines()
    tokenizers_json = {
        "neox": build_neox(lines), "llama3": build_llama3(lines), "sp_bpe": build_sp_bpe(lines),
        "metaspace": build_metaspace(lines), "mixed": build_mixed(lines), "gpt2": build_gpt2(lines),
    }
    tokenizers_json.update(split_variants(lines))
    tokenizers_json["edge"] = build_edge()
    rng = random.Random(1234)
    for name, data in tokenizers_json.items():
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        # Expected values come from the file as written, loaded back by the library.
        tok = Tokenizer.from_file(path)
        texts = HARD_STRINGS + random_strings(rng, 60) + (EDGE_STRINGS if name == "edge" else [])
        invalid = []
        for raw in INVALID_UTF8:
            repaired = raw.decode("utf-8", errors="replace")
            invalid.append({"hex": raw.hex(), "ids": tok.encode(repaired).ids})
        with open(os.path.join(args.out, f"{name}.cases.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizer": f"{name}.json", "cases": cases_for(tok, texts), "invalid_utf8": invalid},
                      f, ensure_ascii=True, separators=(",", ":"))
        print(f"{name}: {len(texts)} cases")


if __name__ == "__main__":
    main()
