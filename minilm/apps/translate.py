"""Translating English number words into Chinese numerals and German, with a Seq2SeqTransformer.

    "three hundred and twelve thousand and five"  ->  三十一万二千零五  /  dreihundertzwölftausendfünf

One model serves both directions: the decoder's first input token names the
target language (<2zh> or <2de>), the trick of Johnson et al. 2017
("Google's multilingual NMT"). Why one model: the English side is the same for
both tasks, so one encoder learns to read it once, and one training run
(each example's target language drawn at random) serves both directions.

Tokens (each a readable unit, so the cross-attention heatmap reads well):
    English  the words, hyphens dropped: "twenty-one" -> twenty, one
    Chinese  one character each (零一二...九十百千万)
    German   the morphemes of number_words.german_pieces (drei|hundert|zwölf|
             tausend|fünf); German text is cut back into them by longest match.

Decoding: `greedy_decode` takes the most likely token at each step (batched);
`beam_search` keeps the beam_size most likely prefixes, scored by the sum of
token log-probabilities with *no length normalisation*: every output is one
exact string, so there is no bias towards short outputs to correct, and with
beam_size=1 it is greedy decoding, token for token. Both re-run the decoder
on the whole prefix at each step (outputs are at most ~15 tokens; the
encoder runs once).

Models are saved as safetensors with the config and vocabularies in the
metadata (`save_model` / `load_model`); nothing is pickled.
"""
import json
import re
import time

import numpy as np

from minilm.apps import number_words as nw
from minilm.autograd import no_grad
from minilm.io import safetensors
from minilm.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from minilm.optim import AdamW
from minilm.optim.clip import clip_grad_norm_
from minilm.optim.lr_scheduler import WarmupCosine
from minilm.tensor import Tensor
from minilm.tokenizers.bert_inputs import pad_rows

PAD, EOS = "<pad>", "<eos>"
LANGS = ("zh", "de")
_EN_WORDS = sorted({w for n in list(range(1000)) + [1000] for w in re.findall(r"[a-z]+", nw.english(n))})
_ZH_CHARS = list("零一二三四五六七八九十百千万")


class Vocab:
    """Token strings <-> ids; id 0 is <pad>."""

    def __init__(self, tokens):
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos) or self.itos[0] != PAD:
            raise ValueError("Vocab: tokens must be unique and start with <pad>")

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, where="Vocab.encode"):
        unknown = [t for t in tokens if t not in self.stoi]
        if unknown:
            raise ValueError(f"{where}: unknown token(s) {unknown[:5]} (not in this task's vocabulary)")
        return [self.stoi[t] for t in tokens]


SRC_VOCAB = Vocab([PAD] + _EN_WORDS)
TGT_VOCAB = Vocab([PAD, EOS] + [f"<2{lang}>" for lang in LANGS] + _ZH_CHARS + list(nw.GERMAN_PIECES))


# ----------------------------------------------------------------------------- tokenisation
def english_tokens(text):
    """'twenty-one thousand' -> ['twenty', 'one', 'thousand']."""
    return re.findall(r"[a-z]+", text.lower())


def german_tokens(text):
    """'dreihundertzwölf' -> ['drei', 'hundert', 'zwölf'], longest piece first at each position."""
    pieces = sorted(nw.GERMAN_PIECES, key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        match = next((p for p in pieces if text.startswith(p, i)), None)
        if match is None:
            raise ValueError(f"german_tokens: no German number piece starts at {text[i:i + 12]!r} in {text!r}")
        out.append(match)
        i += len(match)
    return out


def target_tokens(text, lang):
    """The output text as target tokens: Chinese characters or German pieces."""
    if lang == "zh":
        return list(text)
    if lang == "de":
        return german_tokens(text)
    raise ValueError(f"target_tokens: unknown language {lang!r}; choose one of {LANGS}")


def detokenize(tokens, lang):
    """Target tokens back to text (both languages write without spaces)."""
    return "".join(tokens)


def _pad(rows, value):
    """(B, T) int64 of the rows right-padded with value to the longest."""
    return np.array(pad_rows(rows, max(len(r) for r in rows), value), dtype=np.int64)


def encode_sources(texts):
    """English texts -> src ids (B, S), padded with 0."""
    return _pad([SRC_VOCAB.encode(english_tokens(t), "encode_sources") for t in texts], 0)


def make_batch(numbers, langs):
    """numbers (B,) and a target language each -> src (B, S), tgt_in (B, T), targets (B, T).

    tgt_in = <2lang> y1 .. yn (padded with 0), targets = y1 .. yn <eos> (padded with -100).
    """
    src = encode_sources([nw.english(int(n)) for n in numbers])
    tgt_in, targets = [], []
    for n, lang in zip(numbers, langs):
        ids = TGT_VOCAB.encode(target_tokens(nw.WRITERS[lang](int(n)), lang), "make_batch")
        tgt_in.append([TGT_VOCAB.stoi[f"<2{lang}>"]] + ids)
        targets.append(ids + [TGT_VOCAB.stoi[EOS]])
    return src, _pad(tgt_in, 0), _pad(targets, -100)


# ----------------------------------------------------------------------------- model and training
def new_model(seed=0, **sizes):
    """A Seq2SeqTransformer sized for this task (defaults: d_model 128, 4 heads, 3+3 layers, FF 512)."""
    cfg = Seq2SeqConfig(src_vocab_size=len(SRC_VOCAB), tgt_vocab_size=len(TGT_VOCAB), **sizes)
    return Seq2SeqTransformer(cfg, generator=np.random.default_rng(seed))


def train(model, split, steps, batch_size=64, lr=1e-3, warmup=100, langs=LANGS, seed=0, log_every=100,
          log=print, weight_decay=0.01, clip=1.0):
    """Train on numbers drawn fresh each step from split's training pool; return the loss history.

    Each example's target language is drawn uniformly from langs. Returns a
    list of (step, loss, cpu_seconds) every log_every steps (CPU time from
    time.process_time, so other processes on the machine do not count).
    """
    sample = split.training_sampler(seed)
    rng = np.random.default_rng(seed + 1)
    opt = AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    sched = WarmupCosine(opt, warmup_steps=min(warmup, steps // 10), max_steps=steps, min_lr_ratio=0.05)
    model.train()
    history, start, running = [], time.process_time(), []
    for step in range(1, steps + 1):
        numbers = sample(batch_size)
        src, tgt_in, targets = make_batch(numbers, rng.choice(list(langs), size=batch_size))
        _, loss = model(src, tgt_in, targets=targets)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        running.append(loss.item())
        if step % log_every == 0 or step == steps:
            history.append((step, float(np.mean(running)), time.process_time() - start))
            running = []
            if log is not None:
                log(f"step {step:5d}  loss {history[-1][1]:.4f}  cpu {history[-1][2]:.0f}s")
    model.eval()
    return history


# ----------------------------------------------------------------------------- decoding
def _lang_id(lang):
    if lang not in LANGS:
        raise ValueError(f"unknown target language {lang!r}; choose one of {LANGS}")
    return TGT_VOCAB.stoi[f"<2{lang}>"]


def _log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def greedy_decode(model, src, lang, max_len=24):
    """src (B, S) ids -> B lists of target ids (without <2lang> and <eos>), most likely token each step."""
    eos = TGT_VOCAB.stoi[EOS]
    with no_grad():
        keep = model.source_mask(src)
        memory = model.encode(src, keep)
        seqs = np.full((len(src), 1), _lang_id(lang), dtype=np.int64)
        done = np.zeros(len(src), dtype=bool)
        for _ in range(max_len):
            logits = model.decode(seqs, memory, keep).numpy()[:, -1]           # (B, V)
            nxt = np.where(done, 0, logits.argmax(axis=-1))                     # finished rows: padding
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done |= nxt == eos
            if done.all():
                break
    return [_strip(row[1:], eos) for row in seqs.tolist()]


def _strip(row, eos):
    return row[:row.index(eos)] if eos in row else row


def beam_search(model, src, lang, beam_size=4, max_len=24):
    """One source (S,) or (1, S) -> the best target ids found by beam search (see the module docstring).

    Each step extends every unfinished beam by every token, scores it by the
    summed log-probabilities, and keeps the best beam_size (finished beams
    compete with their final score). Stops when all kept beams have ended.
    """
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
    src = np.asarray(src, dtype=np.int64).reshape(1, -1)
    eos = TGT_VOCAB.stoi[EOS]
    with no_grad():
        keep = model.source_mask(src)
        memory = model.encode(src, keep).numpy()                                # (1, S, C)
        beams = [([_lang_id(lang)], 0.0, False)]                                # (ids, log-prob, ended)
        for _ in range(max_len):
            alive = [b for b in beams if not b[2]]
            if not alive:
                break
            seqs = np.array([b[0] for b in alive], dtype=np.int64)              # (k, t)
            mem = np.repeat(memory, len(alive), axis=0)                         # (k, S, C)
            logp = _log_softmax(model.decode(seqs, Tensor(mem), np.repeat(keep, len(alive), axis=0))
                                .numpy()[:, -1].astype(np.float64))             # (k, V)
            candidates = [b for b in beams if b[2]]
            scores = (np.array([b[1] for b in alive])[:, None] + logp).reshape(-1)
            for flat in np.argsort(-scores, kind="stable")[:beam_size]:
                row, tok = divmod(int(flat), logp.shape[1])
                candidates.append((alive[row][0] + [tok], float(scores[flat]), tok == eos))
            candidates.sort(key=lambda b: -b[1])                                # stable: ties keep order
            beams = candidates[:beam_size]
    return _strip(beams[0][0][1:], eos)


def translate(model, text, lang="zh", beam_size=1, max_len=24):
    """English number words -> the model's Chinese or German (greedy, or beam search if beam_size > 1)."""
    src = encode_sources([text])
    ids = greedy_decode(model, src, lang, max_len)[0] if beam_size == 1 else \
        beam_search(model, src, lang, beam_size, max_len)
    return detokenize([TGT_VOCAB.itos[i] for i in ids], lang)


def predictions(model, numbers, lang, beam_size=1, batch_size=500, max_len=24):
    """The model's outputs for these numbers (from their English words), as strings."""
    out = []
    for i in range(0, len(numbers), batch_size):
        chunk = numbers[i:i + batch_size]
        src = encode_sources([nw.english(int(n)) for n in chunk])
        if beam_size == 1:
            rows = greedy_decode(model, src, lang, max_len)
        else:
            rows = [beam_search(model, s[s != 0], lang, beam_size, max_len) for s in src]
        out += [detokenize([TGT_VOCAB.itos[t] for t in row], lang) for row in rows]
    return out


def exact_match(model, numbers, lang, beam_size=1, **kwargs):
    """(accuracy, list of (number, expected, got) misses): the share of outputs equal to the reference."""
    got = predictions(model, numbers, lang, beam_size, **kwargs)
    want = [nw.WRITERS[lang](int(n)) for n in numbers]
    misses = [(int(n), w, g) for n, w, g in zip(numbers, want, got) if w != g]
    return 1.0 - len(misses) / max(len(numbers), 1), misses


def _lexicon(lang):
    """English word -> its translation: the writers' own words for 0..19 and the tens, plus three more."""
    words = {nw.english(v): nw.WRITERS[lang](v) for v in list(range(20)) + list(range(20, 100, 10))}
    words.update({"hundred": {"zh": "百", "de": "hundert"}[lang], "thousand": {"zh": "千", "de": "tausend"}[lang],
                  "and": ""})
    return words


def word_by_word(text, lang):
    """The baseline: each English word replaced by its translation, in English order ("and" dropped).

    The lexicon is the writers' own (twelve -> 十二 / zwölf, hundred -> 百 / hundert). What it cannot
    do is what the model must learn: reorder (einundzwanzig), regroup (31万2千 for "312 thousand"),
    insert 零 and switch eins/ein.
    """
    lexicon = _lexicon(lang)
    return "".join(lexicon[w] for w in english_tokens(text))


def cross_attention(model, number, lang, layer=-1):
    """(source tokens, output tokens, weights (T_out, S)): one decoder layer's cross-attention,
    averaged over heads, while the model writes its greedy translation of `number`."""
    src = encode_sources([nw.english(int(number))])
    ids = greedy_decode(model, src, lang)[0]
    tgt_in = np.array([[_lang_id(lang)] + ids], dtype=np.int64)
    with no_grad():
        keep = model.source_mask(src)
        _, weights = model.decode(tgt_in, model.encode(src, keep), keep, need_weights=True)
    w = weights[layer][0].mean(axis=0)                                          # (nh, T, S) -> (T, S)
    out_tokens = [TGT_VOCAB.itos[i] for i in ids] + [EOS]
    return english_tokens(nw.english(int(number))), out_tokens, w[:len(out_tokens)]


_PINYIN = dict(zip(_ZH_CHARS, ["ling 0", "yi 1", "er 2", "san 3", "si 4", "wu 5", "liu 6", "qi 7", "ba 8",
                                "jiu 9", "shi 10", "bai 100", "qian 1000", "wan 10^4"]))


def _has_cjk_font():
    from matplotlib import font_manager
    return any("CJK" in f.name or "Hei" in f.name or "WenQuanYi" in f.name for f in font_manager.fontManager.ttflist)


def plot_cross_attention(ax, model, number, lang, layer=-1):
    """Draw cross_attention(...) on a matplotlib Axes: source words across, output tokens down.

    Chinese tokens are labelled in pinyin with their value (san 3, wan 10^4)
    when matplotlib has no CJK font, so the plot reads everywhere.
    """
    src, out, w = cross_attention(model, number, lang, layer)
    if lang == "zh" and not _has_cjk_font():
        out = [_PINYIN.get(t, t) for t in out]
    ax.imshow(w, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(src)), src, rotation=60, ha="right")
    ax.set_yticks(range(len(out)), out)
    ax.set_xlabel("English source token")
    ax.set_ylabel(f"{lang} output token")
    which = "last" if layer == -1 else str(layer)
    ax.set_title(f"{number:,} -> {lang}: cross-attention, {which} decoder layer, mean of heads", fontsize=9)
    return w


# ----------------------------------------------------------------------------- saving
def save_model(model, path):
    """Weights as safetensors; the config and vocabularies go in the metadata (no pickle)."""
    meta = {"config": model.config.to_json(), "src_vocab": json.dumps(SRC_VOCAB.itos, ensure_ascii=False),
            "tgt_vocab": json.dumps(TGT_VOCAB.itos, ensure_ascii=False)}
    safetensors.save_file(model.state_dict(), path, metadata=meta)


def load_model(path):
    """A model saved by save_model; its vocabularies must be this module's."""
    meta = safetensors.load_metadata(path)
    for key, vocab in (("src_vocab", SRC_VOCAB), ("tgt_vocab", TGT_VOCAB)):
        if json.loads(meta.get(key, "null")) != vocab.itos:
            raise ValueError(f"load_model: {path}: its {key} differs from minilm.apps.translate's")
    model = Seq2SeqTransformer(Seq2SeqConfig.from_json(meta["config"]))
    model.load_state_dict(safetensors.load_file(path))
    model.eval()
    return model
