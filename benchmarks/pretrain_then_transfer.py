"""Pretrain with minilm, then transfer: does our own pretraining beat random initialisation?

Part A (BERT). Pretrain a small BERT with minilm's masked-LM objective (MaskedLM, MLMBatcher's
15% / 80-10-10 masking, the Trainer's AdamW + warm-up/cosine) on WordNet's definitions and
examples with all 4,000 WN-noun-10 synsets taken out, write it as a Hugging Face folder
(config.json + model.safetensors + vocab.txt), and fully fine-tune it on WN-noun-10 with
minilm.transfer.run_transfer. The control is the same architecture, the same vocabulary and
the same fine-tuning runs, from random weights. The fine-tuning learning rate is chosen on the
10% of the training split run_transfer holds out (mean over both inits, so neither is favoured);
the test split is only reported.

Part B (GPT). Pretrain a char-level GPT on Python's help topics (pydoc prose), then train it on
standard-library code; the control trains the same GPT on the same code for the same steps and
schedule from random weights. Both are scored on held-out code every --gpt-eval-every steps.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/pretrain_then_transfer.py --part bert   # ~45 min (3,000 MLM steps)
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/pretrain_then_transfer.py --part gpt    # ~7 min
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/pretrain_then_transfer.py               # both, ~50 min
    python benchmarks/pretrain_then_transfer.py --part both --tiny --out /tmp/ptt --work /tmp/ptt/work   # smoke test, ~2 min

Estimated from --tiny runs at one thread on a busy 2-core machine (BERT ~0.65 s per MLM step, ~75 s per
fine-tuning run of 6 epochs; GPT ~0.2 s per step); the JSON records the real step rates.
Writes benchmarks/results/pretrain_then_transfer.json (a part run alone replaces only its own
entry) and pretrain_then_transfer.png; the model folders go under runs/pretrain_then_transfer/.
"""
import argparse
import collections
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minilm import random as minilm_random  # noqa: E402
from minilm.data import ARBatcher, MLMBatcher, encode_to_array, iter_eval_batches, load_corpus  # noqa: E402
from minilm.data.split import split_text  # noqa: E402
from minilm.data.wordnet import wordnet_text  # noqa: E402
from minilm.models import GPT, BertConfig, BertForMaskedLM, GPTConfig  # noqa: E402
from minilm.models.hf import bert_state_dict_to_hf, write_folder  # noqa: E402
from minilm.objectives import AutoregressiveLM, MaskedLM, most_frequent_masked_token  # noqa: E402
from minilm.tokenizers import CharTokenizer, WordPieceTokenizer  # noqa: E402
from minilm.train import TrainConfig, Trainer  # noqa: E402
from minilm.transfer import FinetuneConfig, load_task, run_transfer  # noqa: E402
from minilm.transfer.run import resolve_base  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "pretrain_then_transfer"
TASK_FILE = ROOT / "minilm" / "data" / "wn_noun10.json"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ===== Part A: BERT ==========================================================================
def pretraining_corpus():
    """WordNet glosses without the task's synsets, and the checks that they are really gone.

    Removing the 4,000 synsets is not quite enough: some other synsets share a task
    definition word for word (e.g. 'a holly shrub'), so every corpus line equal to a task
    text is dropped as well. Returns (text, facts about what was removed).
    """
    rows = [r for split in ("train", "test") for r in json.loads(TASK_FILE.read_text())[split]]
    task_synsets = {("n", int(r["offset"])) for r in rows}          # every task row is a noun
    assert len(task_synsets) == len(rows) == 4000, (len(task_synsets), len(rows))
    full_lines = wordnet_text().splitlines()
    kept_lines = wordnet_text(exclude=task_synsets).splitlines()
    task_texts = {r["text"] for r in rows}
    shared = [line for line in kept_lines if line in task_texts]    # the same gloss on another synset
    lines = [line for line in kept_lines if line not in task_texts]
    assert not task_texts & set(lines), "a task definition is still in the pretraining corpus"
    facts = {"wordnet_lines": len(full_lines), "lines_after_removing_task_synsets": len(kept_lines),
             "lines_removed_with_task_synsets": len(full_lines) - len(kept_lines),
             "other_synset_lines_equal_to_a_task_text": len(shared),
             "corpus_lines": len(lines), "task_synsets_removed": len(task_synsets)}
    # The synsets' own lines include their examples, so more than 4,000 lines go.
    assert facts["lines_removed_with_task_synsets"] >= 4000, facts
    return "\n".join(lines) + "\n", facts


def reduced_vocab(full_tok, sentences_ids, size):
    """A WordPiece vocabulary: the specials, every character piece the corpus uses and the most
    frequent other pieces of all-MiniLM-L6-v2's uncased vocabulary, up to `size` entries, kept in
    MiniLM's id order. Chosen on the pretraining corpus only, never on the task.

    Why smaller than 30,522: the MLM output layer is (tokens x vocab), so at hidden size 128 it costs
    more than the whole encoder: 2.0 s per step with the full table against 0.65 s with 8,192 rows
    (bert-tiny, 32 x 64 tokens, one thread, measured on a busy machine), i.e. three times the pretraining steps in the same
    minutes, and rare rows a short run would never train are gone. WordPiece stays valid: with
    every single character (and its ## form) that occurs kept, greedy longest-match still splits
    any corpus word, just into more pieces when its whole-word entry was dropped.
    """
    counts = collections.Counter(i for s in sentences_ids for i in s)
    vocab = full_tok.vocab
    must = {full_tok.token_to_id(t) for t in SPECIALS}
    must |= {i for i in counts if len(vocab[i].removeprefix("##")) == 1}
    if size <= 0 or size >= len(vocab):
        return list(vocab)
    if len(must) > size:
        raise ValueError(f"--bert-vocab {size} is smaller than the {len(must)} specials and characters the corpus needs")
    rest = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if i not in must]
    keep = must | set(rest[: size - len(must)])
    return [vocab[i] for i in sorted(keep)]


def encode_lines(tok, text):
    return [tok.encode(line, add_special_tokens=False) for line in text.splitlines() if line.strip()]


def save_bert_folder(folder, model, vocab):
    """The encoder as a Hugging Face BertModel folder (what minilm.transfer.resolve_base reads).

    Only the encoder is written: fine-tuning reads nothing else, and the pretrained and random
    folders then hold exactly the same tensors by name.
    """
    encoder_state = {k[len("bert."):]: np.asarray(v) for k, v in model.state_dict().items() if k.startswith("bert.")}
    config = dict(dataclasses.asdict(model.config), model_type="bert", architectures=["BertModel"])
    write_folder(folder, config, bert_state_dict_to_hf(encoder_state))
    Path(folder, "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def pretrain_bert(args, work):
    t0 = time.perf_counter()
    text, facts = pretraining_corpus()
    print(f"corpus: {facts['wordnet_lines']:,} WordNet lines -> {facts['corpus_lines']:,} "
          f"({facts['lines_removed_with_task_synsets']:,} lines of the 4,000 task synsets removed, and "
          f"{facts['other_synset_lines_equal_to_a_task_text']} lines of other synsets equal to a task text)", flush=True)
    full_tok = WordPieceTokenizer.from_vocab_file(os.path.join(resolve_base(), "vocab.txt"))
    train_text, val_text = split_text(text, 0.05)     # the end of the file (adverb glosses) is held out
    vocab = reduced_vocab(full_tok, encode_lines(full_tok, train_text), args.bert_vocab)
    tok = WordPieceTokenizer(vocab, source="reduced MiniLM vocab")
    train_ids, val_ids = encode_lines(tok, train_text), encode_lines(tok, val_text)
    n_tokens = sum(map(len, train_ids))
    unk = sum(s.count(tok.unk_token_id) for s in train_ids)
    print(f"vocabulary {len(vocab):,} pieces; {n_tokens:,} training tokens ({unk} [UNK]); "
          f"{len(val_ids):,} validation lines", flush=True)

    minilm_random.manual_seed(args.seed)
    # Dropout 0 while pretraining: a run this short underfits, and dropout would only slow it.
    # The folders written for fine-tuning get BERT's usual 0.1, the same for both inits.
    config = BertConfig.preset(args.bert_preset, vocab_size=len(vocab), max_position_embeddings=args.bert_seq,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    common = dict(batch_size=args.bert_batch, max_len=args.bert_seq, cls_id=tok.cls_token_id,
                  sep_id=tok.sep_token_id, pad_id=tok.pad_token_id, mask_id=tok.mask_token_id,
                  vocab_size=len(vocab), special_ids=[tok.unk_token_id], pack=True)
    batcher = MLMBatcher(train_ids, rng=np.random.default_rng(args.seed + 1), **common)
    val_batcher = MLMBatcher(val_ids, rng=np.random.default_rng(0), **common)
    objective = MaskedLM(baseline_token=most_frequent_masked_token(batcher), mask_token_id=tok.mask_token_id)
    train_cfg = TrainConfig(steps=args.bert_steps, lr=args.bert_lr, warmup_steps=min(100, args.bert_steps // 10),
                            weight_decay=0.01, eval_interval=max(1, args.bert_steps // 5),
                            ckpt_interval=10 ** 9, log_interval=max(1, args.bert_steps // 20),
                            out_dir=str(work / "bert_mlm_run"))
    shutil.rmtree(train_cfg.out_dir, ignore_errors=True)     # our own scratch folder: a fresh run each time
    fine_tune_config = dataclasses.replace(config, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    random_model = BertForMaskedLM(fine_tune_config, generator=np.random.default_rng(args.seed))
    model = BertForMaskedLM(config, generator=np.random.default_rng(args.seed))   # the same initial weights
    trainer = Trainer(model, objective, batcher, lambda: val_batcher.iter_eval_batches(seed=0, max_batches=10),
                      train_cfg, progress_stream=sys.stdout)
    before = trainer.evaluate()
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    after = history[-1]
    print(f"MLM pretraining: {args.bert_steps} steps in {seconds:.0f} s ({args.bert_steps / seconds:.2f} steps/s); "
          f"masked accuracy {before['mlm_acc']:.3f} -> {after['mlm_acc']:.3f} "
          f"(always the commonest token: {after['mlm_acc_most_frequent']:.3f})", flush=True)

    model.config = fine_tune_config          # same weights; only the dropout written to config.json differs
    pretrained_dir, random_dir = work / "bert_pretrained", work / "bert_random"
    save_bert_folder(pretrained_dir, model, vocab)
    save_bert_folder(random_dir, random_model, vocab)
    evals = [{"step": r["step"], **{k: r[k] for k in r if k.startswith(("val", "mlm"))}} for r in history if "mlm_acc" in r]
    pretraining = {"preset": args.bert_preset, "vocab_size": len(vocab), "seq_len": args.bert_seq,
                   "batch_size": args.bert_batch, "steps": args.bert_steps, "lr": args.bert_lr,
                   "parameters": int(sum(p.data.size for p in model.parameters())), "train_tokens": n_tokens,
                   "epochs_seen": round(args.bert_steps * args.bert_batch / len(batcher.units), 3),
                   "seconds": round(seconds, 1), "steps_per_second": round(args.bert_steps / seconds, 3),
                   "before": {k: before[k] for k in before}, "evals": evals, "corpus": facts,
                   "seconds_including_data": round(time.perf_counter() - t0, 1)}
    return pretrained_dir, random_dir, pretraining


def finetune_both(args, pretrained_dir, random_dir):
    """Full fine-tuning from both folders at each learning rate; the rate is picked on validation."""
    task = load_task("wn-noun-10")
    if args.tiny:                           # a smoke test: a tenth of the data per class
        keep = np.concatenate([np.flatnonzero(task.train_labels == c)[:32] for c in range(len(task.classes))])
        test = np.concatenate([np.flatnonzero(task.test_labels == c)[:8] for c in range(len(task.classes))])
        task = task._replace(train_texts=[task.train_texts[i] for i in keep], train_labels=task.train_labels[keep],
                             test_texts=[task.test_texts[i] for i in test], test_labels=task.test_labels[test])
    runs = []
    for lr in args.ft_lrs:
        for init, folder in (("pretrained", pretrained_dir), ("random", random_dir)):
            cfg = FinetuneConfig(method="full", epochs=args.ft_epochs, lr=lr, head_lr=args.ft_head_lr,
                                 batch_size=32, max_length=args.bert_seq, seed=args.seed)
            res = run_transfer(task, cfg, base=str(folder))
            runs.append({"init": init, "lr": lr, "val_accuracy": res["val_accuracy"],
                         "test_accuracy": res["test_accuracy"], "seconds": res["seconds"],
                         "val_by_epoch": [e["val_accuracy"] for e in res["epochs"]]})
            print(f"  fine-tune {init:<10} lr {lr:g}: val {res['val_accuracy']:.4f}  test {res['test_accuracy']:.4f}"
                  f"  ({res['seconds']:.0f} s)", flush=True)
    # One rate for both (the same budget), the one with the best mean validation accuracy over the two inits.
    mean_val = {lr: np.mean([r["val_accuracy"] for r in runs if r["lr"] == lr]) for lr in args.ft_lrs}
    best_lr = max(args.ft_lrs, key=lambda lr: (mean_val[lr], -lr))
    chosen = {r["init"]: r for r in runs if r["lr"] == best_lr}
    return {"task": task.name, "train_examples_before_holdout": len(task.train_texts),
            "test_examples": len(task.test_texts), "epochs": args.ft_epochs, "head_lr": args.ft_head_lr,
            "lrs_tried": args.ft_lrs, "chosen_lr": best_lr, "chosen_by": "mean validation accuracy of both inits",
            "pretrained": chosen["pretrained"], "random": chosen["random"],
            "gain_test_points": round(100 * (chosen["pretrained"]["test_accuracy"] - chosen["random"]["test_accuracy"]), 2),
            "all_runs": runs}


def part_bert(args):
    work = Path(args.work)
    pretrained_dir, random_dir, pretraining = pretrain_bert(args, work)
    finetune = finetune_both(args, pretrained_dir, random_dir)
    return {"pretraining": pretraining, "finetune": finetune}


# ===== Part B: GPT ===========================================================================
def gpt_trainer(model, tokens, val_tokens, steps, args, out_dir, seed, eval_every):
    """A Trainer over random windows of `tokens`, scored on fixed windows of `val_tokens`."""
    batcher = ARBatcher(tokens, model.config.block_size, args.gpt_batch, np.random.default_rng(seed))
    val = lambda: iter_eval_batches(val_tokens, model.config.block_size, args.gpt_batch, args.gpt_eval_batches)
    cfg = TrainConfig(steps=steps, lr=args.gpt_lr, warmup_steps=min(50, steps // 10), weight_decay=0.1,
                      eval_interval=eval_every, ckpt_interval=10 ** 9,
                      log_interval=max(1, steps // 10), out_dir=str(out_dir))
    shutil.rmtree(out_dir, ignore_errors=True)
    return Trainer(model, AutoregressiveLM(), batcher, val, cfg, progress_stream=sys.stdout)


def val_curve(trainer):
    """[(step, val_loss)] from step 0 (evaluated before training) to the end."""
    start = trainer.evaluate()["val_loss"]
    history = trainer.fit()
    return [(0, start)] + [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]


def part_gpt(args):
    work = Path(args.work)
    prose = load_corpus("pydoc", max_chars=args.gpt_prose_chars or None)
    code = load_corpus("stdlib", max_chars=args.gpt_code_chars)
    # One char-level alphabet over both corpora: every character of the code, non-ASCII ones in
    # strings and comments included, has an id, and the model's rows mean the same characters in
    # both phases. Byte-level BPE would need merges trained on one corpus or the other (favouring
    # it) and minutes of training here; characters are exact and free.
    tok = CharTokenizer.from_text(prose + code)
    prose_train, prose_val = split_text(prose, 0.1)
    code_train, code_val = split_text(code, 0.1)        # held-out code: the end of the chosen files
    ids = {name: encode_to_array(tok.encode(t), tok.vocab_size) for name, t in
           (("prose_train", prose_train), ("prose_val", prose_val), ("code_train", code_train), ("code_val", code_val))}
    print(f"alphabet {tok.vocab_size} characters; prose {len(ids['prose_train']):,} + {len(ids['prose_val']):,}, "
          f"code {len(ids['code_train']):,} + {len(ids['code_val']):,} characters (train + validation)", flush=True)
    config = GPTConfig.preset(args.gpt_preset, vocab_size=tok.vocab_size, dropout=0.0)

    minilm_random.manual_seed(args.seed)
    pre_model = GPT(config, generator=np.random.default_rng(args.seed))
    scratch_model = GPT(config, generator=np.random.default_rng(args.seed))   # the very same starting weights
    start = time.perf_counter()
    pre = gpt_trainer(pre_model, ids["prose_train"], ids["prose_val"], args.gpt_pretrain_steps, args,
                      work / "gpt_prose", args.seed + 1, max(args.gpt_eval_every, args.gpt_pretrain_steps // 8))
    prose_curve = val_curve(pre)
    pre_seconds = time.perf_counter() - start
    # What the prose model knows of code before any code step (also the first point of its curve).
    transferred = GPT(config, generator=np.random.default_rng(args.seed))
    transferred.load_state_dict({k: np.array(v, copy=True) for k, v in pre_model.state_dict().items()})

    curves, seconds = {}, {}
    for name, model in (("pretrained", transferred), ("scratch", scratch_model)):
        # Same code batches for both (same batcher seed), same schedule, fresh AdamW each.
        trainer = gpt_trainer(model, ids["code_train"], ids["code_val"], args.gpt_finetune_steps, args,
                              work / f"gpt_code_{name}", args.seed + 2, args.gpt_eval_every)
        start = time.perf_counter()
        curves[name] = val_curve(trainer)
        seconds[name] = time.perf_counter() - start
        print(f"code from {name}: val loss {curves[name][0][1]:.3f} -> {curves[name][-1][1]:.3f} "
              f"({seconds[name]:.0f} s)", flush=True)
    total_steps = args.gpt_pretrain_steps + 2 * args.gpt_finetune_steps
    return {"preset": args.gpt_preset, "config": dataclasses.asdict(config),
            "parameters": int(sum(p.data.size for p in pre_model.parameters())), "tokenizer": "char",
            "prose_chars": len(prose), "code_chars": len(code), "batch_size": args.gpt_batch, "lr": args.gpt_lr,
            "pretrain_steps": args.gpt_pretrain_steps, "finetune_steps": args.gpt_finetune_steps,
            "eval_every": args.gpt_eval_every, "eval_batches": args.gpt_eval_batches,
            "prose_val_curve": prose_curve, "pretrain_seconds": round(pre_seconds, 1),
            "code_val_curve": curves, "finetune_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "final_code_val_loss": {k: c[-1][1] for k, c in curves.items()},
            "steps_per_second": round(total_steps / (pre_seconds + sum(seconds.values())), 3)}


# ===== report ================================================================================
def print_tables(results):
    if "bert" in results:
        b = results["bert"]
        p, f = b["pretraining"], b["finetune"]
        print(f"\nA. BERT {p['preset']} (vocab {p['vocab_size']:,}, {p['parameters']:,} parameters), MLM "
              f"{p['steps']} steps ({p['epochs_seen']} epochs, {p['seconds']:.0f} s); fine-tuned "
              f"{f['epochs']} epochs at lr {f['chosen_lr']:g} (chosen on validation)")
        print(f"{'init':<12} {'val acc':>8} {'test acc':>9}")
        for init in ("pretrained", "random"):
            print(f"{init:<12} {f[init]['val_accuracy']:>8.4f} {f[init]['test_accuracy']:>9.4f}")
        print(f"gain on test: {f['gain_test_points']:+.1f} points")
    if "gpt" in results:
        g = results["gpt"]
        print(f"\nB. GPT {g['preset']} char-level, {g['finetune_steps']} code steps after "
              f"{g['pretrain_steps']} prose steps; held-out code loss (nats/char):")
        print(f"{'step':>6} {'pretrained':>11} {'scratch':>9}")
        for (s, a), (_, c) in zip(g["code_val_curve"]["pretrained"], g["code_val_curve"]["scratch"]):
            print(f"{s:>6} {a:>11.4f} {c:>9.4f}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    parts = [k for k in ("bert", "gpt") if k in results]
    fig, axes = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 4), squeeze=False)
    for ax, part in zip(axes[0], parts):
        if part == "bert":
            f = results["bert"]["finetune"]
            for init in ("pretrained", "random"):
                r = f[init]
                ax.plot(range(1, len(r["val_by_epoch"]) + 1), r["val_by_epoch"], marker="o",
                        label=f"{init} init (test {r['test_accuracy']:.3f})")
            ax.set(xlabel="fine-tuning epoch", ylabel="validation accuracy",
                   title=f"A. WN-noun-10, full fine-tuning (lr {f['chosen_lr']:g})")
        else:
            g = results["gpt"]
            for name, label in (("pretrained", "pretrained on pydoc prose"), ("scratch", "from scratch")):
                steps, losses = zip(*g["code_val_curve"][name])
                ax.plot(steps, losses, label=label)
            ax.set(xlabel="training steps on code", ylabel="held-out code loss (nats/char)",
                   title=f"B. char GPT {g['preset']} on stdlib code")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("bert", "gpt", "both"), default="both")
    ap.add_argument("--tiny", action="store_true", help="a quick end-to-end check (a few dozen steps, a subset)")
    ap.add_argument("--out", default=str(RESULTS), help="folder for pretrain_then_transfer.json / .png")
    ap.add_argument("--work", default=str(WORK), help="folder for the model folders and training runs")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.add_argument_group("part A (BERT)")
    a.add_argument("--bert-preset", default="bert-tiny")
    a.add_argument("--bert-vocab", type=int, default=8192, help="vocabulary size (0: all 30,522 MiniLM pieces)")
    a.add_argument("--bert-seq", type=int, default=64, help="context length; also the fine-tuning max_length")
    a.add_argument("--bert-batch", type=int, default=32)
    a.add_argument("--bert-steps", type=int, default=3000, help="MLM pretraining steps (~0.65-0.8 s each at 1 thread)")
    a.add_argument("--bert-lr", type=float, default=1e-3)
    a.add_argument("--ft-epochs", type=int, default=6)
    a.add_argument("--ft-lrs", type=float, nargs="+", default=[3e-4, 1e-3], help="fine-tuning rates to try")
    a.add_argument("--ft-head-lr", type=float, default=2e-3)
    g = ap.add_argument_group("part B (GPT)")
    g.add_argument("--gpt-preset", default="baby")
    g.add_argument("--gpt-batch", type=int, default=12)
    g.add_argument("--gpt-lr", type=float, default=1e-3)
    g.add_argument("--gpt-pretrain-steps", type=int, default=800)
    g.add_argument("--gpt-finetune-steps", type=int, default=400)
    g.add_argument("--gpt-eval-every", type=int, default=25)
    g.add_argument("--gpt-eval-batches", type=int, default=10)
    g.add_argument("--gpt-prose-chars", type=int, default=0, help="0: all of pydoc")
    g.add_argument("--gpt-code-chars", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    if args.tiny:       # only what was not given explicitly would be nicer; a smoke test needs no such care
        args.bert_steps, args.ft_epochs, args.ft_lrs = 30, 2, [1e-3]
        args.gpt_pretrain_steps, args.gpt_finetune_steps, args.gpt_eval_every = 30, 20, 10
        args.gpt_eval_batches, args.gpt_code_chars, args.gpt_prose_chars = 3, 200_000, 200_000
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "pretrain_then_transfer.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if args.part in ("bert", "both"):
        start = time.perf_counter()
        results["bert"] = part_bert(args)
        results["bert"]["seconds_total"] = round(time.perf_counter() - start, 1)
    if args.part in ("gpt", "both"):
        start = time.perf_counter()
        results["gpt"] = part_gpt(args)
        results["gpt"]["seconds_total"] = round(time.perf_counter() - start, 1)
    results["threads"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results)
    plot(results, out / "pretrain_then_transfer.png")
    print(f"\nwrote {json_path} and {out / 'pretrain_then_transfer.png'}")


if __name__ == "__main__":
    main()
