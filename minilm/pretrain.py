"""The pretraining recipe: corpus -> tokenizer -> token data -> model -> Trainer.

`PretrainConfig` holds every choice of a run; it is saved in the checkpoint,
so `minilm generate` / `eval` / `fill-mask` can rebuild the same model and
tokenizer, and `--resume` can check it continues the same run.
"""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from minilm import random as minilm_random
from minilm.data import ARBatcher, MLMBatcher, encode_to_array, iter_eval_batches, load_corpus, split_text
from minilm.objectives import AutoregressiveLM, MaskedLM, most_frequent_masked_token
from minilm.tokenizers import ByteLevelBPE, CharTokenizer, load_tokenizer
from minilm.train import Trainer

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass
class PretrainConfig:
    model: str = "gpt"              # "gpt" (autoregressive LM) or "bert" (masked LM)
    preset: str = "baby"            # a size preset of that model family
    corpus: str = "pydoc"           # a built-in corpus name or a path
    max_chars: int = 0              # use only the first max_chars characters (0 = all)
    tokenizer: str = "char"         # "char" or "bpe" (byte-level BPE trained on the corpus)
    vocab_size: int = 2000          # BPE only
    seq_len: int = 0                # context length (0 = the preset's)
    batch_size: int = 12
    steps: int = 2000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    dropout: float = 0.0
    n_layer: int = 0                # size overrides (0 = the preset's)
    n_head: int = 0
    n_embd: int = 0
    val_fraction: float = 0.1
    eval_interval: int = 200
    eval_batches: int = 20
    ckpt_interval: int = 500
    log_interval: int = 50
    seed: int = 1337
    out_dir: str = "runs/gpt"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def objective_for(model_name):
    return {"gpt": "ar", "bert": "mlm"}[model_name]


# ----- text and tokenizer ---------------------------------------------------------------
def load_text(cfg):
    text = load_corpus(cfg.corpus)
    if cfg.max_chars:
        text = text[: cfg.max_chars]
    if len(text.strip()) == 0:
        raise ValueError(f"corpus {cfg.corpus!r} is empty")
    return text


def build_tokenizer(cfg, text):
    if cfg.tokenizer == "char":
        if cfg.model == "bert":
            raise ValueError("--tokenizer char has no [MASK] token: use --tokenizer bpe for BERT")
        return CharTokenizer.from_text(text)
    if cfg.tokenizer == "bpe":
        specials = BERT_SPECIALS if cfg.model == "bert" else ("<|endoftext|>",)
        return ByteLevelBPE.train(text, cfg.vocab_size, special_tokens=specials)
    raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}; choose 'char' or 'bpe'")


# ----- models -----------------------------------------------------------------------------
def build_model(cfg, vocab_size):
    """A GPT or BERT of the configured preset, with the run's vocabulary, context and dropout."""
    from minilm.models import BertConfig, BertForMaskedLM, GPT, GPTConfig
    overrides = {k: v for k, v in (("n_layer", cfg.n_layer), ("n_head", cfg.n_head),
                                   ("n_embd", cfg.n_embd)) if v}
    if cfg.model == "gpt":
        mc = GPTConfig.preset(cfg.preset, vocab_size=vocab_size, dropout=cfg.dropout, **overrides)
        if cfg.seq_len:
            mc = dataclasses.replace(mc, block_size=cfg.seq_len)
        return GPT(mc, generator=np.random.default_rng(cfg.seed))
    if cfg.model == "bert":
        names = {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads", "n_embd": "hidden_size"}
        bert_overrides = {names[k]: v for k, v in overrides.items()}
        if "hidden_size" in bert_overrides:
            bert_overrides["intermediate_size"] = 4 * bert_overrides["hidden_size"]
        mc = BertConfig.preset(cfg.preset, vocab_size=vocab_size, hidden_dropout_prob=cfg.dropout,
                               attention_probs_dropout_prob=cfg.dropout, **bert_overrides)
        if cfg.seq_len:
            mc = dataclasses.replace(mc, max_position_embeddings=cfg.seq_len)
        return BertForMaskedLM(mc, generator=np.random.default_rng(cfg.seed))
    raise ValueError(f"unknown model {cfg.model!r}; choose 'gpt' or 'bert'")


def context_length(model):
    c = model.config
    return getattr(c, "block_size", None) or getattr(c, "max_position_embeddings")


# ----- data -------------------------------------------------------------------------------
def _sentences(text):
    """Lines (or sentences of long lines) as the units BERT is trained on."""
    units = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            units.extend(s for s in re.split(r"(?<=[.!?])\s+", line) if s)
    return units


def build_data(cfg, tokenizer, text, model):
    """(train batcher, function returning fresh validation batches, objective)."""
    train_text, val_text = split_text(text, cfg.val_fraction)
    seq_len = context_length(model)
    rng = np.random.default_rng(cfg.seed + 1)
    if cfg.model == "gpt":
        train_ids = encode_to_array(tokenizer.encode(train_text), tokenizer.vocab_size)
        val_ids = encode_to_array(tokenizer.encode(val_text), tokenizer.vocab_size)
        for name, ids in (("training", train_ids), ("validation", val_ids)):
            if ids.size < seq_len + 1:
                raise ValueError(f"the {name} split of corpus {cfg.corpus!r} has {ids.size} tokens, fewer "
                                 f"than seq_len + 1 = {seq_len + 1}: use a bigger corpus or a smaller --seq-len")
        batcher = ARBatcher(train_ids, seq_len, cfg.batch_size, rng)
        val = lambda: iter_eval_batches(val_ids, seq_len, cfg.batch_size, cfg.eval_batches or None)
        return batcher, val, AutoregressiveLM()
    ids = {t: tokenizer.token_to_id(t) for t in BERT_SPECIALS}
    encode = lambda part: [tokenizer.encode(s, allowed_special=()) for s in _sentences(part)]
    common = dict(batch_size=cfg.batch_size, max_len=seq_len, cls_id=ids["[CLS]"], sep_id=ids["[SEP]"],
                  pad_id=ids["[PAD]"], mask_id=ids["[MASK]"], vocab_size=tokenizer.vocab_size,
                  special_ids=[ids["[UNK]"]], pack=True)
    batcher = MLMBatcher(encode(train_text), rng=rng, **common)
    val_batcher = MLMBatcher(encode(val_text), rng=np.random.default_rng(0), **common)
    objective = MaskedLM(baseline_token=most_frequent_masked_token(batcher), mask_token_id=ids["[MASK]"])
    val = lambda: val_batcher.iter_eval_batches(seed=0, max_batches=cfg.eval_batches or None)
    return batcher, val, objective


# ----- the whole run ------------------------------------------------------------------------
def prepare(cfg, resume=False, progress_stream=None, on_eval=None):
    """Build everything for a run; with resume=True reuse the saved tokenizer and config."""
    out = Path(cfg.out_dir)
    if resume:
        saved = out / "checkpoint" / "config.json"
        if not saved.exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {out / 'checkpoint'}")
        saved_cfg = PretrainConfig.from_dict(json.loads(saved.read_text())["pretrain"])
        cfg = dataclasses.replace(saved_cfg, steps=cfg.steps, out_dir=cfg.out_dir)
    minilm_random.manual_seed(cfg.seed)
    text = load_text(cfg)
    tok_path = out / TOKENIZER_FILE
    tokenizer = load_tokenizer(tok_path) if resume else build_tokenizer(cfg, text)
    model = build_model(cfg, tokenizer.vocab_size)
    batcher, val, objective = build_data(cfg, tokenizer, text, model)
    config = {"pretrain": cfg.to_dict(), "model_type": cfg.model,
              "model_config": dataclasses.asdict(model.config)}
    trainer = Trainer(model, objective, batcher, val, out_dir=out, steps=cfg.steps, lr=cfg.lr,
                      warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio,
                      weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, grad_accum=cfg.grad_accum,
                      eval_interval=cfg.eval_interval, ckpt_interval=cfg.ckpt_interval,
                      log_interval=cfg.log_interval, config=config, on_eval=on_eval,
                      progress_stream=progress_stream)
    if resume:
        trainer.resume()
    else:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tok_path)
        metrics = out / "metrics.jsonl"
        if metrics.exists():
            metrics.unlink()
    return trainer, tokenizer


def load_pretrained(folder):
    """(model, tokenizer, config dict) from a run folder written by the Trainer."""
    from minilm.io.checkpoint import load_checkpoint, take_prefix
    folder = Path(folder)
    ckpt_dir = folder / "checkpoint" if (folder / "checkpoint").is_dir() else folder
    run_dir = ckpt_dir.parent if ckpt_dir.name == "checkpoint" else folder
    ckpt = load_checkpoint(ckpt_dir)
    if "pretrain" not in ckpt.config:
        raise ValueError(f"{ckpt_dir}: config.json does not describe a minilm pretraining run")
    cfg = PretrainConfig.from_dict(ckpt.config["pretrain"])
    tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    model = build_model(cfg, tokenizer.vocab_size)
    model.load_state_dict(take_prefix("model.", ckpt.tensors))
    model.eval()
    return model, tokenizer, ckpt.config
