"""Handwritten digits with the Transformer: a ViT classifier, and an image-to-text model that writes the word.

The data are scikit-learn's `load_digits`: 1,797 grey 8x8 images (pixel values
0..16) of the digits 0-9, about 180 of each, from the UCI "Optical Recognition
of Handwritten Digits" set. scikit-learn is only needed to load them (it is a
tutorial/test extra); everything else is minilm.

Two models, both minilm.models.vit (patches of 2x2 pixels: a 4x4 grid of 16
patch tokens):

- ViTClassifier: patches -> TransformerBlocks -> [CLS] -> 10 logits.
- ImageToText: the same kind of encoder, and the translator's decoder
  (minilm.models.seq2seq), which writes the digit's English word
  ("zero".."nine") one *character* at a time, cross-attending to the 16
  patch vectors at every step.

Why characters rather than one token per word: with word tokens the decoder
would emit a single label and the task would be the classifier again.
Spelled out, the decoder must keep writing a sequence, and the words share
first letters (two/three, four/five, six/seven), so for those the image still
matters after the first character; the cross-attention maps show when the
decoder looks at which part of the image. Targets are
    tgt_in  = <bos> s e v e n          targets = s e v e n <eos>
and decoding is greedy: the most likely character at each step until <eos>.

The split is fixed: a seeded stratified split holds out 20% of each digit
(359 test images, 1,438 training). Pixels are scaled to [0, 1]. Training
shifts each training image by up to one pixel in each direction (zeros fill
in), a cheap guard because a ViT is told nothing about which patches are
neighbours and 1,438 images are few to learn that from; the test images are
never shifted. It buys little here: over the benchmark's three seeds the ViT's mean test accuracy
was 97.0% with the shift and 96.8% without (`python benchmarks/digits_vit.py` against
`python benchmarks/digits_vit.py --shift 0`), less than the spread between seeds.
"""
import time
from dataclasses import dataclass

import numpy as np

from minilm.autograd import no_grad
from minilm.models.vit import ImageToText, ViTClassifier, ViTConfig
from minilm.optim import AdamW, param_groups_for_weight_decay
from minilm.optim.clip import clip_grad_norm_
from minilm.optim.lr_scheduler import WarmupCosine

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
ITOS = [PAD, BOS, EOS] + sorted(set("".join(WORDS)))                        # 3 specials + the 15 letters used
STOI = {s: i for i, s in enumerate(ITOS)}
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
MAX_WORD = max(len(w) for w in WORDS) + 1                                   # longest word + <eos>


@dataclass
class DigitsSplit:
    """Scaled images (N, 8, 8) float32 in [0, 1] and labels (N,) int64, for training and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    seed: int


def stratified_split(labels, test_fraction=0.2, seed=0):
    """(train_idx, test_idx): round(test_fraction * n_c) of each class's n_c examples go to test.

    Each class is shuffled with one seeded generator, so the split depends only on the labels and seed.
    """
    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"stratified_split: test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 digits, pixels scaled from 0..16 to [0, 1], split by stratified_split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("minilm.apps.digits needs scikit-learn to load the digits data set: "
                          "pip install scikit-learn  (or pip install \"minilm[test]\")") from err
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)                       # (1797, 8, 8), 0..16 -> [0, 1]
    labels = bunch.target.astype(np.int64)
    tr, te = stratified_split(labels, test_fraction, seed)
    return DigitsSplit(images[tr], labels[tr], images[te], labels[te], seed)


def random_shift(images, rng, max_shift=1):
    """Each image moved by dy, dx drawn from -max_shift..max_shift (zeros fill the uncovered border)."""
    n, h, w = images.shape
    m = max_shift
    padded = np.zeros((n, h + 2 * m, w + 2 * m), dtype=images.dtype)
    padded[:, m:m + h, m:m + w] = images
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)                                       # (n, h)
    cols = dx[:, None] + np.arange(w)                                       # (n, w)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


# ----------------------------------------------------------------------------- text side
def encode_word(word):
    """'seven' -> ids of s, e, v, e, n."""
    unknown = sorted(set(word) - set(STOI))
    if unknown:
        raise ValueError(f"encode_word: {word!r} has characters {unknown} outside the digit words' letters")
    return [STOI[ch] for ch in word]


def decode_ids(ids):
    """Character ids (stopping at <eos>) -> the string."""
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        out.append(ITOS[i] if i > EOS_ID else "")
    return "".join(out)


def text_batch(labels):
    """labels (B,) -> tgt_in (B, T) = <bos> word (padded with <pad>), targets (B, T) = word <eos> (padded with -100)."""
    labels = np.asarray(labels)
    tgt_in = np.full((len(labels), MAX_WORD), PAD_ID, dtype=np.int64)
    targets = np.full((len(labels), MAX_WORD), -100, dtype=np.int64)
    for i, c in enumerate(labels):
        ids = encode_word(WORDS[int(c)])
        tgt_in[i, :len(ids) + 1] = [BOS_ID] + ids
        targets[i, :len(ids) + 1] = ids + [EOS_ID]
    return tgt_in, targets


# ----------------------------------------------------------------------------- models and training
def new_classifier(seed=0, patch_size=2, **sizes):
    """A ViTClassifier for 8x8 digits (defaults: 2x2 patches, d_model 64, 4 heads, 2 layers, FF 128)."""
    return ViTClassifier(ViTConfig(image_size=8, patch_size=patch_size, num_classes=10, **sizes),
                         generator=np.random.default_rng(seed))


def new_image_to_text(seed=0, num_decoder_layers=1, patch_size=2, **sizes):
    """An ImageToText model for 8x8 digits with the character vocabulary ITOS (sizes as new_classifier)."""
    return ImageToText(ViTConfig(image_size=8, patch_size=patch_size, **sizes), vocab_size=len(ITOS),
                       num_decoder_layers=num_decoder_layers, max_len=MAX_WORD + 1,
                       generator=np.random.default_rng(seed))


def _train(model, loss_fn, data, steps, batch_size, lr, warmup, seed, shift, log_every, log, weight_decay):
    """The loop both models share: shuffled epochs of the training images, AdamW, warm-up + cosine, clipping."""
    rng = np.random.default_rng(seed)
    # biases, LayerNorms and the position/patch tables are not decayed (minilm.optim.param_groups)
    opt = AdamW(param_groups_for_weight_decay(model.named_parameters(), weight_decay), lr=lr)
    sched = WarmupCosine(opt, warmup_steps=min(warmup, steps // 10), max_steps=steps, min_lr_ratio=0.05)
    n = len(data.train_labels)
    order, pos = rng.permutation(n), 0
    model.train()
    history, running, start = [], [], time.process_time()
    for step in range(1, steps + 1):
        if pos + batch_size > n:                                            # a new epoch: reshuffle
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        images = data.train_images[idx]
        if shift:
            images = random_shift(images, rng, shift)
        loss = loss_fn(images, data.train_labels[idx])
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
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


def train_classifier(model, data, steps=1500, batch_size=64, lr=2e-3, warmup=100, seed=0, shift=1,
                     log_every=100, log=print, weight_decay=0.05):
    """Train a ViTClassifier on data.train_*; returns [(step, mean loss, cpu seconds)] every log_every steps."""
    return _train(model, lambda x, y: model(x, labels=y)[1], data, steps, batch_size, lr, warmup, seed, shift,
                  log_every, log, weight_decay)


def train_image_to_text(model, data, steps=1500, batch_size=64, lr=2e-3, warmup=100, seed=0, shift=1,
                        log_every=100, log=print, weight_decay=0.05):
    """Train an ImageToText model to write each training image's word (teacher forcing)."""
    def loss_fn(images, labels):
        tgt_in, targets = text_batch(labels)
        return model(images, tgt_in, targets=targets)[1]
    return _train(model, loss_fn, data, steps, batch_size, lr, warmup, seed, shift, log_every, log, weight_decay)


# ----------------------------------------------------------------------------- evaluation
def predict(model, images, batch_size=500):
    """A classifier's predicted digits (N,)."""
    with no_grad():
        return np.concatenate([model(images[i:i + batch_size]).numpy().argmax(-1)
                               for i in range(0, len(images), batch_size)])


def accuracy(model, images, labels):
    """The share of images whose predicted digit is the label."""
    return float((predict(model, images) == np.asarray(labels)).mean())


def greedy_words(model, images, max_len=MAX_WORD):
    """An ImageToText model's words for images (N, 8, 8): the most likely character each step until <eos>."""
    with no_grad():
        memory = model.encode(images)                                       # encoded once
        seqs = np.full((len(images), 1), BOS_ID, dtype=np.int64)
        done = np.zeros(len(images), dtype=bool)
        for _ in range(max_len):
            nxt = model.decode(seqs, memory).numpy()[:, -1].argmax(-1)
            nxt = np.where(done, PAD_ID, nxt)                               # finished rows: padding
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done |= nxt == EOS_ID
            if done.all():
                break
    return [decode_ids(row[1:]) for row in seqs.tolist()]


def exact_match(model, images, labels):
    """(share of words exactly right, list of (index, expected, got) misses)."""
    got = greedy_words(model, images)
    misses = [(i, WORDS[int(y)], g) for i, (y, g) in enumerate(zip(labels, got)) if g != WORDS[int(y)]]
    return 1.0 - len(misses) / max(len(got), 1), misses


def cross_attention(model, image, layer=-1):
    """(characters written, weights (T, gh, gw)): the decoder's cross-attention at each output step,
    averaged over heads, laid out on the patch grid. The last step is the one that writes <eos>."""
    word = greedy_words(model, image[None])[0]
    tgt_in = np.array([[BOS_ID] + encode_word(word)], dtype=np.int64)
    with no_grad():
        _, weights = model.decode(tgt_in, model.encode(image[None]), need_weights=True)
    w = weights[layer][0].mean(axis=0)                                      # (nh, T, N) -> (T, N)
    gh, gw = model.encoder.patch_embed.grid
    return list(word) + [EOS], w.reshape(len(word) + 1, gh, gw)


def plot_cross_attention(axes, model, image, layer=-1):
    """One panel per written character: the image in grey, the cross-attention over its patches in red.

    axes: a sequence of matplotlib Axes (at least len(word) + 1; extra ones are hidden).
    Each patch's weight is spread over its pixels (np.kron) and drawn as red with opacity
    proportional to the weight (the largest weight of the word is fully red), so the ink stays
    visible under it; thin lines mark the patch grid. Returns the characters and the (T, gh, gw) weights.
    """
    chars, w = cross_attention(model, image, layer)
    ph, pw = model.encoder.patch_embed.patch_size
    gh, gw = model.encoder.patch_embed.grid
    h, wd = image.shape
    top = max(float(w.max()), 1e-9)
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(chars):
            ax.axis("off")
            continue
        overlay = np.zeros((h, wd, 4))
        overlay[..., 0] = 0.85                                              # red
        overlay[..., 3] = 0.85 * np.kron(w[k], np.ones((ph, pw))) / top     # opacity = weight
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.imshow(overlay)
        for r in range(1, gh):
            ax.axhline(r * ph - 0.5, color="0.6", lw=0.5)
        for c in range(1, gw):
            ax.axvline(c * pw - 0.5, color="0.6", lw=0.5)
        ax.set_title(repr(chars[k]) if chars[k] != EOS else "<eos>", fontsize=8)
    return chars, w


def attention_on_ink(model, images, threshold=0.25, layer=-1):
    """How much of the decoder's cross-attention falls on patches with ink, at each output step.

    A patch "has ink" when its mean pixel is above threshold. For every image the model writes its
    greedy word; then, step by step (step 1 writes the first character; the step after the last
    character writes <eos>), the attention weight (mean of heads) on ink patches is summed and
    averaged over the images whose word is that long. Returns (by_step list, ink_patch_share): the
    second is the share of patches with ink, which is what attention spread evenly would give.
    """
    words = greedy_words(model, images)
    tgt_in = np.full((len(images), MAX_WORD), PAD_ID, dtype=np.int64)
    for i, word in enumerate(words):
        ids = [BOS_ID] + encode_word(word)[:MAX_WORD - 1]
        tgt_in[i, :len(ids)] = ids
    with no_grad():
        _, weights = model.decode(tgt_in, model.encode(images), need_weights=True)
    w = weights[layer].mean(axis=1)                                          # (B, nh, T, N) -> (B, T, N)
    x = model.encoder.patch_embed                                            # patch means, as patchify cuts
    ph, pw = x.patch_size
    gh, gw = x.grid
    means = np.asarray(images).reshape(len(images), gh, ph, gw, pw).mean(axis=(2, 4)).reshape(len(images), -1)
    ink = means > threshold                                                  # (B, N)
    on_ink = (w * ink[:, None, :]).sum(-1)                                   # (B, T)
    lengths = np.array([min(len(wd), MAX_WORD - 1) + 1 for wd in words])     # characters + <eos>
    by_step = [float(on_ink[lengths > t, t].mean()) for t in range(MAX_WORD) if (lengths > t).any()]
    return by_step, float(ink.mean())
