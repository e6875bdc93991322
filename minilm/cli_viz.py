"""The `minilm viz` commands: look inside a trained model.

    minilm viz attention runs/gpt-baby --text "def f(x):" --out attention.html
    minilm viz lens runs/gpt-baby --text "def f(x):" [--batches 20]

`attention` writes one self-contained HTML page (minilm.viz_attention): every
layer's and head's attention over the text's tokens, and for a model with an
LM head the logit lens. `lens` prints the logit lens as a table, and with
--batches the lens's validation loss after every layer (minilm.interpret).
Both take a GPT or a BERT run folder written by `minilm train`.
"""
import dataclasses
from pathlib import Path

import numpy as np

from minilm import interpret
from minilm.viz_attention import model_page_data, write_page


def add_parsers(sub):
    viz = sub.add_parser("viz", help="look inside a trained model: attention maps, the logit lens",
                         description="Interpretability views of a GPT or BERT run folder.")
    views = viz.add_subparsers(dest="view", required=True)
    a = views.add_parser("attention", help="an HTML page with every layer's and head's attention over a text",
                         description="Write one self-contained HTML page (no server, no network): every layer "
                                     "and head as a heatmap over the text's tokens, chosen by clicking; hovering "
                                     "a token shades what it attends to. A GPT's page also shows the logit lens.")
    a.add_argument("run", help="run folder written by `minilm train` (GPT or BERT)")
    a.add_argument("--text", required=True, help="the text to run through the model (at most its context length)")
    a.add_argument("--out", required=True, help="the HTML file to write (its folder must exist)")
    a.add_argument("--top", type=int, default=3, help="logit-lens tokens per position shown on hover (default: 3)")
    n = views.add_parser("lens", help="the logit lens: what each layer would predict, as a table",
                         description="Apply the final LayerNorm and the LM head to the residual stream after "
                                     "every layer (nostalgebraist 2020) and print each layer's most likely token "
                                     "per position; --batches also measures each layer's validation loss.")
    n.add_argument("run", help="run folder written by `minilm train` (GPT or BERT; --batches needs a GPT)")
    n.add_argument("--text", required=True, help="the text to run through the model")
    n.add_argument("--batches", type=int, default=0,
                   help="also print the lens's mean cross-entropy per layer on this many validation batches "
                        "of the run's corpus (default: 0 = no)")


def encode_text(model, tokenizer, text, kind):
    """The ids to run for `text`: a GPT's tokens as they are, a BERT's between [CLS] and [SEP];
    ValueError for an empty text or one longer than the model's context (with the counts)."""
    if not text:
        raise ValueError("--text is empty: give the text to look at")
    ids = tokenizer.encode(text)
    if kind == "bert":
        ids = [tokenizer.token_to_id("[CLS]")] + ids + [tokenizer.token_to_id("[SEP]")]
        context = model.config.max_position_embeddings
        extra = " (with [CLS] and [SEP])"
    else:
        context, extra = model.config.block_size, ""
    if len(ids) > context:
        raise ValueError(f"--text is {len(ids)} tokens{extra}, longer than the model's context of "
                         f"{context} tokens: shorten it")
    return ids


def _check_out_file(out):
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give the name of the HTML file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: the folder {out.parent} does not exist (create it first)")


def _load(run):
    from minilm.pretrain import load_pretrained            # heavy imports only when a command runs
    if not Path(run).exists():
        raise FileNotFoundError(f"run folder {run} does not exist")
    model, tokenizer, config = load_pretrained(run)
    return model, tokenizer, config


def cmd_attention(args):
    _check_out_file(args.out)                              # before the slow part
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    model, tokenizer, config = _load(args.run)
    kind = config["pretrain"]["model"]
    ids = encode_text(model, tokenizer, args.text, kind)
    data = model_page_data(model, tokenizer, ids, title=f"{kind.upper()} attention: {Path(args.run).name}",
                           k=min(args.top, tokenizer.vocab_size))
    write_page(args.out, data)
    layers, heads, t, _ = data["shape"]
    print(f"wrote {args.out}: {layers} layers x {heads} heads over {t} tokens (open it in a browser)")
    return 0


def cmd_lens(args):
    if args.batches < 0:
        raise ValueError(f"--batches must be >= 0, got {args.batches}")
    model, tokenizer, config = _load(args.run)
    kind = config["pretrain"]["model"]
    if args.batches and kind != "gpt":
        raise ValueError("--batches measures the next-token loss, which needs a GPT run")
    ids = encode_text(model, tokenizer, args.text, kind)
    tr = interpret.trace(model, ids)
    if tr.lens_logits is None:
        raise ValueError(f"{args.run}: the model has no LM head to read the layers with")
    print(interpret.format_lens_table(interpret.token_strings(tokenizer, ids), tr.lens_logits, tokenizer,
                                      next_tokens=kind == "gpt"))
    if args.batches:
        from minilm.pretrain import PretrainConfig, build_data, load_text
        cfg = dataclasses.replace(PretrainConfig.from_dict(config["pretrain"]), eval_batches=args.batches)
        _, val, _ = build_data(cfg, tokenizer, load_text(cfg), model)
        losses = interpret.lens_losses(model, val())
        names = ["embeddings"] + [f"after layer {l}" for l in range(len(losses) - 1)]
        print("logit-lens validation loss (nats per token):")
        for name, loss in zip(names, losses):
            print(f"  {name:15s} {loss:.4f}")
    return 0


def cmd_viz(args):
    return {"attention": cmd_attention, "lens": cmd_lens}[args.view](args)


HANDLERS = {"viz": cmd_viz}
