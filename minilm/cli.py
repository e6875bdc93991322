"""The `minilm` command: train, generate, eval, fill-mask, info.

    minilm train --model gpt --preset baby --corpus pydoc --steps 2000 --out runs/gpt-baby
    minilm generate runs/gpt-baby --prompt "The " --temperature 0.8 --top-k 40
    minilm eval runs/gpt-baby --corpus pydoc
    minilm fill-mask runs/bert-mini "The [MASK] statement returns a value."
    minilm info runs/gpt-baby
"""
import argparse
import dataclasses
import sys

import numpy as np

HELP = {
    "model": "model family: 'gpt' trains with the autoregressive (next-token) objective, "
             "'bert' with the masked-LM objective",
    "preset": "size preset (gpt: nano, baby, mini, small; bert: bert-nano, bert-mini, ...; see `minilm info --presets`)",
    "corpus": "built-in corpus (pydoc, stdlib, wordnet, fortunes) or a path to a text file or folder",
    "max_chars": "use only the first N characters of the corpus (0 = all)",
    "tokenizer": "'char' (one id per character) or 'bpe' (byte-level BPE trained on the corpus; BERT needs it)",
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
    "out_dir": "run folder: checkpoint/, tokenizer.json, metrics.jsonl, loss.png",
}


def _add_train_parser(sub):
    from minilm.pretrain import PretrainConfig
    p = sub.add_parser("train", help="pretrain a GPT (next-token) or BERT (masked LM) on a corpus",
                       description="Pretrain a model. Every option has a default; the run folder "
                                   "gets a checkpoint, the tokenizer, metrics.jsonl and loss.png.")
    for f in dataclasses.fields(PretrainConfig):
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "--out"] if f.name == "out_dir" else [flag]
        kwargs = {"default": f.default, "help": HELP[f.name] + f" (default: {f.default})"}
        if f.name in ("model",):
            kwargs["choices"] = ["gpt", "bert"]
        if f.name == "tokenizer":
            kwargs["choices"] = ["char", "bpe"]
        p.add_argument(*names, type=type(f.default), dest=f.name, **kwargs)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same loss curve as without the break)")
    p.add_argument("--samples", type=int, default=1, help="print this many generated samples at each evaluation (GPT)")
    p.add_argument("--backend", choices=["numpy", "numba", "cuda"], help="kernel backend (default: numba if installed)")
    return p


def _add_sampling_options(p):
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (default: 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this probability mass")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix every step (no KV cache)")


def build_parser():
    parser = argparse.ArgumentParser(prog="minilm", description="minilm: train and use small language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    g = sub.add_parser("generate", help="sample text from a GPT checkpoint")
    g.add_argument("run", help="run folder written by `minilm train` (or its checkpoint/ folder)")
    g.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    g.add_argument("--num-samples", type=int, default=1, help="independent samples (default: 1)")
    _add_sampling_options(g)
    e = sub.add_parser("eval", help="loss and perplexity of a checkpoint on a corpus")
    e.add_argument("run", help="run folder written by `minilm train`")
    e.add_argument("--corpus", default=None, help="corpus to evaluate on (default: the run's validation split)")
    e.add_argument("--batches", type=int, default=50, help="evaluation batches (default: 50)")
    f = sub.add_parser("fill-mask", help="predict [MASK] tokens with a BERT checkpoint")
    f.add_argument("run", help="run folder of a BERT trained with `minilm train --model bert`")
    f.add_argument("text", help="text containing [MASK]")
    f.add_argument("--top", type=int, default=5, help="predictions to show per mask (default: 5)")
    i = sub.add_parser("info", help="a checkpoint's config and parameter count")
    i.add_argument("run", help="run folder or checkpoint folder")
    return parser


def cmd_train(args):
    from minilm.generate import generate
    from minilm.pretrain import PretrainConfig, prepare
    from minilm.viz import plot_loss_curves
    cfg = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})

    def show_samples(trainer, bar):
        if cfg.model != "gpt" or args.samples <= 0:
            return
        prompt = tokenizer.encode("\n") if cfg.tokenizer == "char" and "\n" in getattr(tokenizer, "chars", "\n") else [0]
        for k in range(args.samples):
            out = generate(trainer.model, np.array([prompt]), 120, temperature=0.8, top_k=40,
                           rng=np.random.default_rng(k))
            bar.write("--- sample ---\n" + tokenizer.decode(out[0, len(prompt):].tolist()) + "\n--------------")

    trainer, tokenizer = prepare(cfg, resume=args.resume, on_eval=show_samples)
    model = trainer.model
    print(f"minilm train: {cfg.model} '{cfg.preset}' with {model.num_parameters():,} parameters, "
          f"vocab {tokenizer.vocab_size}, context {trainer.train_batcher.seq_len if hasattr(trainer.train_batcher, 'seq_len') else cfg.seq_len}, "
          f"from step {trainer.step} to {cfg.steps}; backend {_backend()}", file=sys.stderr)
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        return 130
    png = plot_loss_curves(trainer.out_dir / "metrics.jsonl", trainer.out_dir / "loss.png",
                           title=f"{cfg.model} {cfg.preset} on {cfg.corpus}")
    last = [r for r in history if "val_loss" in r]
    if last:
        print("final: " + ", ".join(f"{k} {v:.4f}" for k, v in last[-1].items() if k != "step"))
    print(f"run folder: {trainer.out_dir}" + (f" (loss curve: {png})" if png else ""))
    return 0


def _backend():
    import minilm
    return minilm.get_backend()


def cmd_generate(args):
    from minilm.generate import generate
    from minilm.pretrain import load_pretrained
    model, tokenizer, config = load_pretrained(args.run)
    if config["model_type"] != "gpt":
        raise SystemExit(f"minilm generate: {args.run} holds a {config['model_type']} model; "
                         f"generation needs a GPT (use fill-mask for BERT)")
    prompt = tokenizer.encode(args.prompt)
    for k in range(args.num_samples):
        out = generate(model, np.array([prompt]), args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, rng=np.random.default_rng(args.seed + k),
                       use_cache=not args.no_cache)
        print(tokenizer.decode(out[0].tolist()))
        if k + 1 < args.num_samples:
            print("-" * 40)
    return 0


def cmd_eval(args):
    from minilm.pretrain import PretrainConfig, build_data, load_pretrained, load_text
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
    from minilm.autograd import no_grad
    from minilm.pretrain import load_pretrained
    model, tokenizer, config = load_pretrained(args.run)
    if config["model_type"] != "bert":
        raise SystemExit(f"minilm fill-mask: {args.run} holds a {config['model_type']} model; fill-mask needs a BERT")
    if "[MASK]" not in args.text:
        raise SystemExit("minilm fill-mask: the text has no [MASK]")
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


def cmd_info(args):
    from minilm.pretrain import load_pretrained
    model, tokenizer, config = load_pretrained(args.run)
    print(f"model: {config['model_type']}")
    for k, v in config["model_config"].items():
        print(f"  {k}: {v}")
    print(f"parameters: {model.num_parameters():,}")
    print(f"tokenizer: {type(tokenizer).__name__}, vocab {tokenizer.vocab_size}")
    if hasattr(model, "flops_per_token"):
        print(f"training FLOPs per token: {model.flops_per_token():,.0f}")
    print("pretraining run:")
    for k, v in config["pretrain"].items():
        print(f"  {k}: {v}")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "backend", None):
        import minilm
        minilm.set_backend(args.backend)
    handlers = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval,
                "fill-mask": cmd_fill_mask, "info": cmd_info}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"minilm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
