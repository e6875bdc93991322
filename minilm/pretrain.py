"""The pretraining recipe: corpus -> tokenizer -> token data -> model -> Trainer.

`PretrainConfig` holds every choice of a run; it is saved in the checkpoint,
so `minilm generate` / `eval` / `fill-mask` can rebuild the same model and
tokenizer, and `--resume` can check it continues the same run. The run folder's
layout and the checks on what is read back from it are in `minilm.run_folder`.
"""
import dataclasses
import math
import re
import sys
from pathlib import Path

import numpy as np

from minilm import random as minilm_random
from minilm.distributed.training import on_main
from minilm.data import ARBatcher, MLMBatcher, encode_to_array, iter_eval_batches, load_corpus, split_text
from minilm.io.checkpoint import load_checkpoint, take_prefix
from minilm.models import GPT, BertConfig, BertForMaskedLM, GPTConfig
from minilm.objectives import AutoregressiveLM, MaskedLM, most_frequent_masked_token
from minilm.tokenizers import ByteLevelBPE, CharTokenizer, load_tokenizer
from minilm.run_folder import CHECKPOINT_DIR, METRICS_FILE, TOKENIZER_FILE, RunFolderError, check_tokenizer
from minilm.run_folder import check_not_in_use, clear_run_folder, existing_entries, fail, find_checkpoint
from minilm.run_folder import load_weights, tokenizer_sha256
from minilm.train import TrainConfig, Trainer

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# What --resume may change: how long to train and how often to look. Everything else
# (model, data, optimizer, seed) defines the run, and changing it would not continue it.
RESUME_MAY_CHANGE = ("steps", "eval_interval", "ckpt_interval", "log_interval", "eval_batches")


@dataclasses.dataclass
class PretrainConfig(TrainConfig):
    """A TrainConfig (steps, lr, schedule, intervals, out_dir) and what the run trains on."""
    model: str = "gpt"              # "gpt" (autoregressive LM) or "bert" (masked LM)
    preset: str = "baby"            # a size preset of that model family
    corpus: str = "pydoc"           # a built-in corpus name or a path
    max_chars: int = 0              # use only the first max_chars characters (0 = all)
    tokenizer: str = "char"         # "char" or "bpe" (byte-level BPE trained on the corpus)
    vocab_size: int = 2000          # BPE only
    seq_len: int = 0                # context length (0 = the preset's)
    batch_size: int = 12
    dropout: float = 0.0
    n_layer: int = 0                # size overrides (0 = the preset's)
    n_head: int = 0
    n_embd: int = 0
    val_fraction: float = 0.1
    eval_batches: int = 20
    seed: int = 1337

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def check(self):
        """Raise ValueError naming the first field of the wrong type or out of range (see LIMITS)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in LIMITS:
                problem = LIMITS[f.name].problem(type(f.default), value)
            elif f.name in CHOICES:
                problem = None if value in CHOICES[f.name] else f"must be one of {CHOICES[f.name]}, got {value!r}"
            else:
                problem = None if isinstance(value, str) else f"must be a str, got {value!r}"
            if problem:
                raise ValueError(f"{f.name} {problem}")
        return self


# ----- the values each field accepts: PretrainConfig.check and the `minilm train` options read them ----
INT64_MAX = 2 ** 63 - 1             # what a checkpoint's JSON and NumPy's generators take


@dataclasses.dataclass(frozen=True)
class Limits:
    """The numbers a field accepts: low <= value <= high; an open end leaves out the bound itself."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self, kind):
        """E.g. 'an integer >= 1' or 'a finite number > 0 and < 1' (kind: int or float)."""
        bounds = [f"{'>' if self.low_open else '>='} {self.low}"] if self.low is not None else []
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high}")
        return " ".join(["an integer" if kind is int else "a finite number", " and ".join(bounds)]).strip()

    def problem(self, kind, value):
        """None if `value` is accepted, else what is wrong: 'must be ..., got ...'."""
        numeric = (int,) if kind is int else (int, float)
        ok = isinstance(value, numeric) and not isinstance(value, bool) and (kind is int or math.isfinite(value))
        ok = ok and (self.low is None or value > self.low or (value == self.low and not self.low_open))
        ok = ok and (self.high is None or value < self.high or (value == self.high and not self.high_open))
        if ok and kind is int and value > INT64_MAX:
            return f"must be {self.describe(kind)} and <= {INT64_MAX}, got {value!r}"
        return None if ok else f"must be {self.describe(kind)}, got {value!r}"


LIMITS = {
    "steps": Limits(1), "lr": Limits(0, low_open=True), "min_lr_ratio": Limits(0, 1), "warmup_steps": Limits(0),
    "weight_decay": Limits(0), "grad_clip": Limits(0), "grad_accum": Limits(1), "eval_interval": Limits(1),
    "ckpt_interval": Limits(1), "log_interval": Limits(1), "max_chars": Limits(0),
    "vocab_size": Limits(257),              # byte-level BPE: the 256 bytes and at least one more
    "seq_len": Limits(0), "batch_size": Limits(1), "dropout": Limits(0, 1, high_open=True),
    "n_layer": Limits(0), "n_head": Limits(0), "n_embd": Limits(0),
    "val_fraction": Limits(0, 1, low_open=True, high_open=True), "eval_batches": Limits(0),
    "seed": Limits(0, INT64_MAX),
}
CHOICES = {"model": ("gpt", "bert"), "tokenizer": ("char", "bpe")}


# ----- text and tokenizer ---------------------------------------------------------------
def load_text(cfg):
    # load_corpus reads a file or folder only as far as max_chars needs (not the whole file first),
    # and cuts after the last whole line that fits.
    text = load_corpus(cfg.corpus, max_chars=cfg.max_chars or None)
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
    """The longest sequence the model reads: a GPT's block_size, a BERT's max_position_embeddings."""
    return model.config.block_size if isinstance(model, GPT) else model.config.max_position_embeddings


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
def prepare(cfg, resume=False, overwrite=False, explicit=None, progress_stream=None, on_eval=None,
            comm=None, zero=False):
    """Build everything for a run in cfg.out_dir; returns (trainer, tokenizer).

    A new run needs an empty (or new) folder; overwrite=True first deletes the
    run minilm wrote there. resume=True continues the run in the folder with its
    saved config and tokenizer. explicit: the names of the fields the user set
    (the CLI passes the flags typed); those that differ from the saved config are
    refused, except RESUME_MAY_CHANGE, which are taken and reported on stderr.
    explicit=None means {"steps"}.
    comm, zero: train data-parallel over an MPI communicator's ranks (see minilm.train.Trainer);
    rank 0 alone claims the folder and trains the tokenizer, which the other ranks then read.
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in the folder and --overwrite deletes it: give one of them")
    out = Path(cfg.out_dir)
    if resume:
        ckpt = _checkpoint_to_resume(out)       # read once: its config here, its state by trainer.resume
        cfg = _resumed_config(cfg, out, ckpt, {"steps"} if explicit is None else set(explicit), progress_stream)
    else:
        cfg.check()
        on_main(comm, lambda: _claim_run_folder(out, overwrite), f"claim the run folder {out}")
    minilm_random.manual_seed(cfg.seed)
    text = load_text(cfg)
    tok_path = out / TOKENIZER_FILE

    def build_all(tokenizer):
        model = build_model(cfg, tokenizer.vocab_size)
        return (tokenizer, model, *build_data(cfg, tokenizer, text, model))

    def start_run():
        built = build_all(build_tokenizer(cfg, text))
        out.mkdir(parents=True, exist_ok=True)  # the first file of the run: a run that cannot start writes none
        built[0].save(tok_path)                 # atomic; before any checkpoint, so a checkpoint always finds its tokenizer
        return built

    if resume:
        built = build_all(load_tokenizer(tok_path))
    else:
        built = on_main(comm, start_run, f"start the run in {out}")
        if built is None:                       # ranks 1..N-1: rank 0's tokenizer, read back, so all are the same
            built = build_all(load_tokenizer(tok_path))
    tokenizer, model, batcher, val, objective = built
    config = {"pretrain": cfg.to_dict(), "model_type": cfg.model,
              "model_config": dataclasses.asdict(model.config), "tokenizer_sha256": tokenizer_sha256(tok_path)}
    trainer = Trainer(model, objective, batcher, val, cfg, checkpoint_config=config, on_eval=on_eval,
                      progress_stream=progress_stream, comm=comm, zero=zero)
    if resume:
        trainer.resume(ckpt)
    return trainer, tokenizer


def _claim_run_folder(out, overwrite):
    """A new run starts in an empty folder; with overwrite, minilm's files of the old run are deleted."""
    found = existing_entries(out)
    if not found:
        return
    if not overwrite:
        how = "continue it with --resume, or " if find_checkpoint(out) is not None else ""
        raise RunFolderError(f"{out}: the run folder is not empty ({', '.join(found[:5])}"
                             f"{', ...' if len(found) > 5 else ''}); {how}start again with --overwrite "
                             f"(deletes its checkpoint, {TOKENIZER_FILE} and {METRICS_FILE})")
    clear_run_folder(out)


def _checkpoint_to_resume(out):
    """The newest complete checkpoint of the run in `out` (which no live process may be training)."""
    check_not_in_use(out)
    folder = find_checkpoint(out)
    if folder is None:
        hint = (f" (the run stopped before its first checkpoint: start it again with --overwrite)"
                if (out / TOKENIZER_FILE).exists() else "")
        raise RunFolderError(f"{out / CHECKPOINT_DIR}: no checkpoint to resume from{hint}")
    return load_checkpoint(folder)


def _resumed_config(cfg, out, ckpt, explicit, progress_stream):
    """The saved config, with the explicitly given fields that may change taken from cfg."""
    config = ckpt.config
    saved, config_file = read_run_config(ckpt.path.parent, config)
    check_tokenizer(config, out / TOKENIZER_FILE, config_file)
    changes, refused = {}, []
    for name in sorted(explicit & {f.name for f in dataclasses.fields(PretrainConfig)} - {"out_dir"}):
        new, old = getattr(cfg, name), getattr(saved, name)
        if new == old:
            continue
        if name in RESUME_MAY_CHANGE:
            changes[name] = new
        else:
            refused.append(f"--{name.replace('_', '-')} {new!r} (checkpoint: {old!r})")
    if refused:
        allowed = ", ".join("--" + n.replace("_", "-") for n in RESUME_MAY_CHANGE)
        raise RunFolderError(f"{config_file}: --resume cannot change {', '.join(refused)}; "
                             f"only {allowed} may change on resume")
    resumed = dataclasses.replace(saved, out_dir=cfg.out_dir, **changes)
    try:
        resumed.check()
    except ValueError as err:
        raise ValueError(f"--resume: {err}") from None
    if changes:
        print("resume: " + ", ".join(f"{k} {getattr(saved, k)} -> {v}" for k, v in changes.items()),
              file=progress_stream or sys.stderr)
    return resumed


def read_run_config(folder, config):
    """(PretrainConfig, config file) from a checkpoint folder's config, every field checked.

    A bad field raises RunFolderError naming config.json and the field.
    """
    config_file = Path(folder) / "config.json"
    pretrain = config.get("pretrain")
    if not isinstance(pretrain, dict):
        fail(config_file, "pretrain", "is missing or not a JSON object: this is not a minilm pretraining run")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    if set(pretrain) != fields:
        fail(config_file, "pretrain", f"has missing fields {sorted(fields - set(pretrain))} "
             f"and unknown fields {sorted(set(pretrain) - fields)}")
    try:
        cfg = PretrainConfig(**pretrain).check()
    except ValueError as err:
        raise RunFolderError(f"{config_file}: pretrain.{err}") from None
    for key in ("model_type", "model_config"):
        if key not in config:
            fail(config_file, key, "is missing")
    return cfg, config_file


def load_pretrained(folder):
    """(model, tokenizer, config dict) from a run folder written by the Trainer (or its checkpoint/ folder)."""
    folder = Path(folder)
    ckpt_dir = find_checkpoint(folder)
    run_dir = folder
    if ckpt_dir is None and (folder / "model.safetensors").is_file():
        ckpt_dir, run_dir = folder, folder.parent     # given the checkpoint folder itself
    if ckpt_dir is None:
        raise RunFolderError(f"{folder}: no checkpoint (expected {folder / CHECKPOINT_DIR / 'model.safetensors'})")
    ckpt = load_checkpoint(ckpt_dir)
    cfg, config_file = read_run_config(ckpt_dir, ckpt.config)
    check_tokenizer(ckpt.config, run_dir / TOKENIZER_FILE, config_file)
    tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    model = build_model(cfg, tokenizer.vocab_size)
    load_weights(model, take_prefix("model.", ckpt.tensors), ckpt.path)
    model.eval()
    return model, tokenizer, ckpt.config
