"""The `minilm` command: train, generate, eval, fill-mask, info (and embed, finetune, classify:
see minilm/cli_transfer.py; index, search: see minilm/cli_apps.py).

    minilm train --model gpt --preset baby --corpus pydoc --steps 2000 --out runs/gpt-baby
    minilm generate runs/gpt-baby --prompt "The " --temperature 0.8 --top-k 40
    minilm eval runs/gpt-baby --corpus pydoc
    minilm fill-mask runs/bert-mini "The [MASK] statement returns a value."
    minilm info runs/gpt-baby
    minilm info --presets

A mistake in what the user typed or gave (an option out of range, a missing or
damaged file, a full disk, a corpus that cannot be downloaded) ends with one line
`minilm <command>: error: ...` on stderr and exit code 2; Ctrl-C with exit code
130. Only a bug in minilm itself shows a traceback.
"""
import argparse
import dataclasses
import errno
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

import minilm
from minilm import cli_apps, cli_export, cli_transfer, cli_viz
from minilm.autograd import no_grad
from minilm.data.download import DownloadError
from minilm.distributed.training import LaunchError, PeerError, discard_stream, world_from_launcher
from minilm.generate import StopOnText, TextStreamer, generate
from minilm.models import BertConfig, GPTConfig
from minilm.models.bert_config import PRESETS as BERT_PRESETS
from minilm.models.gpt_config import PRESETS as GPT_PRESETS
from minilm.pretrain import LIMITS, Limits, PretrainConfig, build_data, context_length, load_pretrained, load_text
from minilm.pretrain import prepare
from minilm.train import TrainConfig, TrainingDiverged
from minilm.viz import plot_loss_curves

MAX_NEW_TOKENS = 100_000     # a cap on --max-new-tokens: beyond it a typo, not a wish (and hours of CPU)
DEFAULT_PRESET = {"gpt": "baby", "bert": "bert-mini"}     # what --preset auto means for each family
DEFAULT_TOKENIZER = {"gpt": "char", "bert": "bpe"}         # --tokenizer auto: BERT needs a [MASK] token


# ----- option values, checked when the command line is read --------------------------------------
def _number(kind, limits):
    """An argparse `type=` accepting an int or a finite float within `limits`; anything else is argparse's
    one-line usage error (exit code 2), e.g. "argument --eval-interval: must be an integer >= 1, got '0'"."""
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or limits.problem(kind, value):
            raise argparse.ArgumentTypeError(f"must be {limits.describe(kind)}, got {text!r}")
        return value

    check.__name__ = limits.describe(kind)          # argparse names the type in some messages
    return check


_COUNT = _number(int, Limits(1))
_SEED = _number(int, LIMITS["seed"])


class _KeepHyphenatedNames(argparse.HelpFormatter):
    """argparse's help layout, but a line never breaks inside a name such as bert-tiny."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Typed(argparse.Action):
    """Store the value and remember that the user typed this option: `--resume` keeps the saved
    run's settings except the ones typed (minilm.pretrain.prepare's `explicit`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.typed = getattr(namespace, "typed", frozenset()) | {self.dest}


HELP = {
    "model": "model family: 'gpt' trains with the autoregressive (next-token) objective, "
             "'bert' with the masked-LM objective",
    "preset": f"size preset: 'auto' (= {DEFAULT_PRESET['gpt']} for gpt, {DEFAULT_PRESET['bert']} for bert), "
              f"gpt: {', '.join(GPT_PRESETS)}; bert: {', '.join(BERT_PRESETS)} (sizes: `minilm info --presets`)",
    "corpus": "built-in corpus (pydoc, stdlib, wordnet, fortunes) or a path to a text file or folder",
    "max_chars": "use only the start of the corpus: at most N characters, cut after the last whole line (0 = all); only that much is read",
    "tokenizer": "'auto' (= char for gpt, bpe for bert), 'char' (one id per character) or 'bpe' (byte-level BPE trained on the corpus; BERT needs it)",
    "vocab_size": "BPE vocabulary size",
    "seq_len": "context length in tokens (0 = the preset's)",
    "batch_size": "sequences per micro-batch",
    "steps": "optimizer steps (with --resume: the new total)",
    "lr": "peak learning rate (AdamW)",
    "min_lr_ratio": "the cosine decay ends at lr * this",
    "warmup_steps": "linear learning-rate warm-up steps",
    "weight_decay": "AdamW decoupled weight decay (not applied to biases, LayerNorm, embeddings)",
    "grad_clip": "clip the global gradient norm to this (0 = off)",
    "grad_accum": "micro-batches per optimizer step (gradient accumulation)",
    "dropout": "dropout probability",
    "n_layer": "override the preset's number of layers",
    "n_head": "override the preset's number of attention heads",
    "n_embd": "override the preset's model width",
    "val_fraction": "fraction of the corpus held out for validation (the end of the text)",
    "eval_interval": "evaluate every N steps",
    "eval_batches": "validation batches per evaluation (0 = the whole validation split)",
    "ckpt_interval": "write a checkpoint every N steps (also at the end and on Ctrl-C)",
    "log_interval": "print a progress line every N steps when not in a terminal",
    "seed": "random seed (data order, initialisation, dropout)",
    "out_dir": "run folder: checkpoint/, tokenizer.json, metrics.jsonl, loss.png (an existing run "
               "is continued with --resume or replaced with --overwrite)",
}


def _add_train_parser(sub):
    p = sub.add_parser("train", help="pretrain a GPT (next-token) or BERT (masked LM) on a corpus",
                       formatter_class=_KeepHyphenatedNames,
                       description="Pretrain a model. Every option has a default; the run folder "
                                   "gets a checkpoint, the tokenizer, metrics.jsonl and loss.png.")
    p.set_defaults(typed=frozenset())
    training = {f.name for f in dataclasses.fields(TrainConfig)}     # listed after the model and data options
    for f in sorted(dataclasses.fields(PretrainConfig), key=lambda f: f.name in training):
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "--out"] if f.name == "out_dir" else [flag]
        default = "auto" if f.name in ("preset", "tokenizer") else f.default
        kind = type(f.default)
        kwargs = {"default": default, "help": HELP[f.name] + f" (default: {default})", "action": _Typed,
                  "type": _number(kind, LIMITS[f.name]) if f.name in LIMITS else kind}
        if f.name == "model":
            kwargs["choices"] = ["gpt", "bert"]
        if f.name == "tokenizer":
            kwargs["choices"] = ["auto", "char", "bpe"]
        if f.name == "preset":
            kwargs["choices"] = ["auto", *GPT_PRESETS, *BERT_PRESETS]
            kwargs["metavar"] = "NAME"
        p.add_argument(*names, dest=f.name, **kwargs)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same loss curve as without the break)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its checkpoint, tokenizer and metrics)")
    p.add_argument("--samples", type=_number(int, Limits(0)), default=1,
                   help="print this many generated samples at each evaluation (GPT)")
    p.add_argument("--backend", choices=["numpy", "numba", "cuda"], help="kernel backend (default: numba if installed)")
    p.add_argument("--zero", action="store_true",
                   help="under `mpirun -n N`: shard AdamW's moments over the N ranks (ZeRO stage 1); "
                        "checkpoints are the same files either way")
    return p


def _add_sampling_options(p):
    p.add_argument("--max-new-tokens", type=_number(int, Limits(0, MAX_NEW_TOKENS)), default=200,
                   help=f"tokens to generate, at most {MAX_NEW_TOKENS:,} (default: 200)")
    p.add_argument("--temperature", type=_number(float, Limits(0)), default=1.0, help="softmax temperature; 0 = greedy (default: 1.0)")
    p.add_argument("--top-k", type=_COUNT, default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=_number(float, Limits(0, 1, low_open=True)), default=None,
                   help="nucleus sampling: smallest set with this probability mass, in (0, 1]")
    p.add_argument("--seed", type=_SEED, default=0, help="sampling seed (default: 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix every step (no KV cache)")


def build_parser():
    parser = argparse.ArgumentParser(prog="minilm", description="minilm: train and use small language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    g = sub.add_parser("generate", help="sample text from a GPT checkpoint")
    g.add_argument("run", help="run folder written by `minilm train` (or its checkpoint/ folder)")
    g.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    g.add_argument("--num-samples", type=_COUNT, default=1, help="independent samples (default: 1)")
    g.add_argument("--stop", type=_unescape, action="append", default=[], metavar="TEXT",
                   help="end a sample before the first occurrence of TEXT (repeatable; the backslash escapes "
                        "\\n, \\t, \\r and \\\\ are interpreted: --stop '\\n\\n' stops at a blank line, "
                        "--stop '\\ndef ' at the next function)")
    g.add_argument("--ban", type=_token_text, action="append", default=[], metavar="TEXT",
                   help="never generate the token TEXT (repeatable; TEXT must be exactly one token of the run's "
                        "tokenizer: one character for a char tokenizer; escapes as for --stop)")
    g.add_argument("--bias", type=_token_bias, action="append", default=[], metavar="TEXT=VALUE",
                   help="add VALUE to the logit of the token TEXT before sampling (repeatable; one token, as for "
                        "--ban; e.g. --bias 'e=-5' makes 'e' about e^5 = 148 times less likely against the rest)")
    _add_sampling_options(g)
    e = sub.add_parser("eval", help="loss and perplexity of a checkpoint on a corpus")
    e.add_argument("run", help="run folder written by `minilm train`")
    e.add_argument("--corpus", default=None, help="corpus to evaluate on (default: the run's validation split)")
    e.add_argument("--batches", type=_COUNT, default=50, help="evaluation batches (default: 50)")
    f = sub.add_parser("fill-mask", help="predict [MASK] tokens with a BERT checkpoint")
    f.add_argument("run", help="run folder of a BERT trained with `minilm train --model bert`")
    f.add_argument("text", help="text containing [MASK]")
    f.add_argument("--top", type=_COUNT, default=5, help="predictions to show per mask (default: 5)")
    i = sub.add_parser("info", help="a checkpoint's config and parameter count, or the size presets")
    i.add_argument("run", nargs="?", help="run folder or checkpoint folder")
    i.add_argument("--presets", action="store_true", help="list the size presets of both model families")
    cli_transfer.add_parsers(sub)
    cli_apps.add_parsers(sub)
    cli_viz.add_parsers(sub)
    cli_export.add_parsers(sub)
    return parser


def resolve_preset(model, preset):
    """The preset name for a model family: 'auto' -> the family's default; a size of the other family
    is an error that lists the right ones."""
    if preset == "auto":
        return DEFAULT_PRESET[model]
    family = GPT_PRESETS if model == "gpt" else BERT_PRESETS
    if preset not in family:
        raise ValueError(f"--preset {preset} is not a {model.upper()} size; --model {model} takes "
                         f"one of {', '.join(family)} (see `minilm info --presets`)")
    return preset


def _check_out_dir(path):
    """Fail before the slow work (reading the corpus, training a tokenizer) when --out cannot be a folder."""
    path = Path(path)
    for folder in [path, *path.parents]:
        if folder.exists():
            if not folder.is_dir():
                where = "is" if folder == path else f"lies under {folder}, which is"
                raise NotADirectoryError(f"--out {path} {where} a file, not a folder")
            break


def cmd_train(args):
    fields = [f.name for f in dataclasses.fields(PretrainConfig)]
    values = {name: getattr(args, name) for name in fields}
    values["preset"] = resolve_preset(args.model, args.preset)
    if args.tokenizer == "auto":
        values["tokenizer"] = DEFAULT_TOKENIZER[args.model]
    cfg = PretrainConfig(**values)
    _check_out_dir(cfg.out_dir)
    # `mpirun -n N minilm train ...`: N ranks train one model data-parallel; rank 0 alone writes and prints
    comm = world_from_launcher()
    is_main = comm is None or comm.Get_rank() == 0
    if args.zero and comm is None:
        raise ValueError("--zero shards the optimizer state over MPI ranks; start the run with "
                         "`mpirun -n N minilm train ... --zero` (N >= 2)")

    def show_samples(trainer, bar):
        if cfg.model != "gpt" or args.samples <= 0:
            return
        prompt = tokenizer.encode("\n") if cfg.tokenizer == "char" and "\n" in getattr(tokenizer, "chars", "\n") else [0]
        for k in range(args.samples):
            out = generate(trainer.model, np.array([prompt]), 120, temperature=0.8, top_k=40,
                           rng=np.random.default_rng(k))
            bar.write("--- sample ---\n" + tokenizer.decode(out[0, len(prompt):].tolist()) + "\n--------------")

    typed = set(args.typed) & set(fields)
    for name in ("preset", "tokenizer"):
        if getattr(args, name) == "auto":
            typed.discard(name)       # "auto" asks for nothing in particular: --resume keeps the saved one
    trainer, tokenizer = prepare(cfg, resume=args.resume, on_eval=show_samples, overwrite=args.overwrite,
                                 explicit=typed, comm=comm, zero=args.zero,
                                 progress_stream=None if is_main else discard_stream())
    cfg = trainer.config              # with --resume: the saved run's settings
    model = trainer.model
    if is_main:
        ranks = "" if comm is None else (f"; {comm.Get_size()} ranks (MPI), each {cfg.batch_size // comm.Get_size()} "
                                         f"of every {cfg.batch_size} sequences" + (", ZeRO-1" if args.zero else ""))
        print(f"minilm train: {cfg.model} '{cfg.preset}' with {model.num_parameters():,} parameters, "
              f"vocab {tokenizer.vocab_size}, context {context_length(model)}, "
              f"from step {trainer.step} to {cfg.steps}; backend {minilm.get_backend()}{ranks}", file=sys.stderr)
    # A diverging run overflows on its way to the NaN loss the Trainer reports (TrainingDiverged,
    # one line naming the step and the op): NumPy's warnings about it would only bury that line.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = trainer.fit()   # Ctrl-C: the Trainer saves a checkpoint, main() exits with 130
    if not is_main:
        return 0
    png = plot_loss_curves(trainer.out_dir / "metrics.jsonl", trainer.out_dir / "loss.png",
                           title=f"{cfg.model} {cfg.preset} on {cfg.corpus}")
    last = [r for r in history if "val_loss" in r]
    if last:
        print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in last[-1].items() if k != "step"))
    print(f"run folder: {trainer.out_dir}" + (f" (loss curve: {png})" if png else ""))
    return 0


def _write_now(text):
    sys.stdout.write(text)
    sys.stdout.flush()


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(text):
    """--stop's argument with \\n, \\t, \\r, \\\\ turned into the characters (a shell passes them literally)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:                                  # any other backslash stays as it is
            out.append(text[i])
            i += 1
    out = "".join(out)
    if not out:
        raise argparse.ArgumentTypeError("a stop string must not be empty")
    return out


def _token_text(text):
    """--ban's argument: the text of one token, with --stop's escapes."""
    try:
        return _unescape(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError("the token text must not be empty") from None


def _token_bias(text):
    """--bias TEXT=VALUE -> (text, value); split at the last '=', so TEXT may itself be '='."""
    token, sep, value = text.rpartition("=")
    if not sep or not token:
        raise argparse.ArgumentTypeError(f"expected TEXT=VALUE (e.g. 'e=-5'), got {text!r}")
    try:
        bias = float(value)
    except ValueError:
        bias = None
    if bias is None or not np.isfinite(bias):
        raise argparse.ArgumentTypeError(f"the bias must be a finite number, got {value!r} in {text!r} "
                                         f"(to forbid a token use --ban)")
    return _token_text(token), bias


def token_id(tokenizer, text, option):
    """The id of the single token whose text is `text`; an error naming the pieces when it is several tokens.

    Banning or biasing works on token ids (what the model chooses among). Text is the
    convenient way to name one, but a word can be several BPE tokens ("Python" may be
    "Py" + "thon", and " Python" with its leading space is another token again), and
    banning its first piece would also ban other words: so text that is not exactly one
    token is refused rather than guessed at.
    """
    try:
        ids = tokenizer.encode(text)
    except ValueError as err:                       # e.g. a character the char tokenizer never saw
        raise ValueError(f"{option} {text!r}: {err}") from None
    if len(ids) != 1:
        pieces = ", ".join(repr(tokenizer.decode([i])) for i in ids)
        raise ValueError(f"{option} {text!r} is {len(ids)} tokens for this {type(tokenizer).__name__} "
                         f"({pieces or 'none'}); {option} takes the text of exactly one token")
    return ids[0]


def logit_options(tokenizer, args):
    """(banned_tokens, logit_bias) from --ban and --bias; the same token given two biases is an error."""
    banned = [token_id(tokenizer, text, "--ban") for text in args.ban] or None
    bias = {}
    for text, value in args.bias:
        i = token_id(tokenizer, text, "--bias")
        if i in bias:
            raise ValueError(f"--bias gives the token {text!r} two values ({bias[i]} and {value})")
        bias[i] = value
    return banned, bias or None


def cmd_generate(args):
    model, tokenizer, config = load_pretrained(args.run)
    if config["pretrain"]["model"] != "gpt":          # (checked by load_pretrained: "gpt" or "bert")
        raise ValueError(f"{args.run} holds a {config['pretrain']['model']} model; "
                         f"generation needs a GPT (use fill-mask for BERT)")
    banned, bias = logit_options(tokenizer, args)
    prompt = tokenizer.encode(args.prompt)
    for k in range(args.num_samples):
        # The text is printed as it is generated: after Ctrl-C what came so far is on the screen.
        # The prompt is printed first; stop strings are looked for in the continuation only.
        _write_now(tokenizer.decode(prompt))
        streamer = TextStreamer(tokenizer, _write_now, stop=args.stop)
        stopping = StopOnText(tokenizer, args.stop, len(prompt)) if args.stop else None
        try:
            generate(model, np.array([prompt]), args.max_new_tokens, temperature=args.temperature,
                     top_k=args.top_k, top_p=args.top_p, rng=np.random.default_rng(args.seed + k),
                     use_cache=not args.no_cache, on_token=lambda step, ids: streamer.put(ids),
                     stopping_criteria=stopping, banned_tokens=banned, logit_bias=bias)
        finally:
            streamer.end()
            _write_now("\n")
        if k + 1 < args.num_samples:
            print("-" * 40)
    return 0


def cmd_eval(args):
    model, tokenizer, config = load_pretrained(args.run)
    cfg = PretrainConfig.from_dict(config["pretrain"])
    if args.corpus:
        cfg = dataclasses.replace(cfg, corpus=args.corpus, val_fraction=0.999)
    cfg = dataclasses.replace(cfg, eval_batches=args.batches)
    _, val, objective = build_data(cfg, tokenizer, load_text(cfg), model)
    metrics = objective.evaluate(model, val())
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_fill_mask(args):
    model, tokenizer, config = load_pretrained(args.run)
    if config["pretrain"]["model"] != "bert":
        raise ValueError(f"{args.run} holds a {config['pretrain']['model']} model; fill-mask needs a BERT")
    if "[MASK]" not in args.text:
        raise ValueError("the text has no [MASK]")
    # Byte-level BPE tokens carry their leading space (" return"), and masking replaced such a
    # whole token, so "The [MASK] statement" must be read as "The[MASK] statement".
    text = args.text.replace(" [MASK]", "[MASK]")
    ids = [tokenizer.token_to_id("[CLS]")] + tokenizer.encode(text) + [tokenizer.token_to_id("[SEP]")]
    mask_id = tokenizer.token_to_id("[MASK]")
    x = np.array([ids])
    with no_grad():
        logits = model(x, attention_mask=np.ones_like(x), token_type_ids=np.zeros_like(x))   # (1, T, V)
    scores = logits.numpy()[0]                                                            # (T, V)
    for pos in [i for i, t in enumerate(ids) if t == mask_id]:
        row = scores[pos] - scores[pos].max()
        p = np.exp(row) / np.exp(row).sum()
        top = np.argsort(-p)[: args.top]
        shown = ", ".join(f"{tokenizer.decode([int(t)])!r} {p[t]:.3f}" for t in top)
        print(f"[MASK] at token {pos}: {shown}")
    return 0


def show_presets():
    """Both families' size presets, with their parameter count at a 2,000-token vocabulary."""
    vocab = 2000
    print(f"GPT presets (minilm train --model gpt --preset NAME; 'auto' = {DEFAULT_PRESET['gpt']}):")
    for name in GPT_PRESETS:
        c = GPTConfig.preset(name, vocab_size=vocab)
        print(f"  {name:12s} {c.n_layer:2d} layers, {c.n_head:2d} heads, width {c.n_embd:4d}, context {c.block_size:5d}: "
              f"{c.num_parameters(non_embedding=False):>12,} parameters")
    print(f"BERT presets (minilm train --model bert --preset NAME; 'auto' = {DEFAULT_PRESET['bert']}):")
    for name in BERT_PRESETS:
        c = BertConfig.preset(name, vocab_size=vocab)
        print(f"  {name:12s} {c.num_hidden_layers:2d} layers, {c.num_attention_heads:2d} heads, width {c.hidden_size:4d}, "
              f"context {c.max_position_embeddings:5d}: {c.num_parameters(with_pooler=False):>12,} parameters")
    print(f"(parameter counts at a {vocab:,}-token vocabulary; the vocabulary comes from the tokenizer. "
          "--n-layer, --n-head, --n-embd and --seq-len override a preset)")
    return 0


def cmd_info(args):
    if args.presets:
        return show_presets()
    if args.run is None:
        raise ValueError("give a run folder, or --presets to list the model sizes")
    model, tokenizer, config = load_pretrained(args.run)
    print(f"model: {config['pretrain']['model']}")
    for k, v in dataclasses.asdict(model.config).items():      # the model as built from the checked config
        print(f"  {k}: {v}")
    print(f"parameters: {model.num_parameters():,}")
    print(f"tokenizer: {type(tokenizer).__name__}, vocab {tokenizer.vocab_size}")
    if hasattr(model, "flops_per_token"):
        print(f"training FLOPs per token: {model.flops_per_token():,.0f}")
    print("pretraining run:")
    for k, v in config["pretrain"].items():
        print(f"  {k}: {v}")
    return 0


def describe_error(err, args):
    """One line for a user-facing error: the message, and for OS errors the path involved."""
    if isinstance(err, OSError) and err.strerror:
        # str(OSError) is "[Errno 28] No space left on device: 'x'"; say it in words, with the path
        path = err.filename or getattr(args, "out_dir", None)
        hint = {errno.ENOSPC: "; free some space or choose another --out",
                errno.EACCES: "; choose a folder you can write to",
                errno.EROFS: "; choose a folder you can write to"}.get(err.errno, "")
        text = f"{err.strerror}: {path}{hint}" if path else f"{err.strerror}{hint}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split("\n"))


def main(argv=None):
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval,
                "fill-mask": cmd_fill_mask, "info": cmd_info, **cli_transfer.HANDLERS,
                **cli_apps.HANDLERS, **cli_viz.HANDLERS, **cli_export.HANDLERS}
    # The errors a user can cause and fix; anything else is a bug in minilm and keeps its traceback.
    user_errors = (ValueError, OSError, TrainingDiverged, DownloadError, LaunchError, PeerError)
    try:
        if getattr(args, "backend", None):
            minilm.set_backend(args.backend)
        return handlers[args.command](args)
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"minilm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`minilm generate ... | head`): stop quietly, as
        # `cat` does; stdout goes to /dev/null so that Python's final flush does not complain
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except user_errors as err:
        sys.stdout.flush()
        print(f"minilm {args.command}: error: {describe_error(err, args)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
