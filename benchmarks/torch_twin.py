"""minilm against a PyTorch twin: the same GPT, the same data, the same optimizer, in one run.

The twin is the same architecture written in PyTorch (used only here, as an
oracle). It starts from minilm's initial weights, sees exactly the same
batches (minilm's data pipeline and seed), uses AdamW with the same
parameter groups, gradient clipping and warm-up + cosine schedule, and is
evaluated on the same validation windows. If minilm's engine is right, the
two loss curves agree closely: the final validation losses should be within 2%.

    python benchmarks/torch_twin.py                     # nanoGPT's CPU config, 2000 steps (~10 min on 2 cores)
    python benchmarks/torch_twin.py --steps 200         # a quick look
    python benchmarks/torch_twin.py --corpus stdlib --max-chars 2000000 --steps 1500 --threads 1   # on code

Prints a table of validation losses side by side and the wall times, and
writes the two curves to a PNG (--plot).
"""
import argparse
import io
import math
import sys
import time

import numpy as np


import minilm
from minilm.data import ARBatcher, iter_eval_batches
from minilm.optim import param_groups_for_weight_decay, warmup_cosine
from minilm.pretrain import PretrainConfig, prepare


def twin_model_class():
    """The PyTorch twin, defined only after minilm's run: importing torch earlier was measured
    to slow minilm's own run in the same process (two OpenMP/BLAS thread pools on 2 cores)."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    class TwinBlock(tnn.Module):
        def __init__(self, c, n_head):
            super().__init__()
            self.n_head = n_head
            self.ln_1, self.ln_2 = tnn.LayerNorm(c), tnn.LayerNorm(c)
            self.c_attn, self.attn_proj = tnn.Linear(c, 3 * c), tnn.Linear(c, c)
            self.c_fc, self.mlp_proj = tnn.Linear(c, 4 * c), tnn.Linear(4 * c, c)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
            x = x + self.attn_proj(y)
            return x + self.mlp_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class TwinGPT(tnn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.wte = tnn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = tnn.Embedding(cfg.block_size, cfg.n_embd)
            self.h = tnn.ModuleList(TwinBlock(cfg.n_embd, cfg.n_head) for _ in range(cfg.n_layer))
            self.ln_f = tnn.LayerNorm(cfg.n_embd)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T                       # tied LM head
            return TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    return TwinGPT


def twin_name(minilm_name):
    """minilm GPT parameter name -> the twin's name (both store Linear weights as (out, in))."""
    name = minilm_name.replace("blocks.", "h.").replace(".self_attn.in_proj.", ".c_attn.")
    name = name.replace(".self_attn.out_proj.", ".attn_proj.").replace(".ff.linear1.", ".c_fc.")
    name = name.replace(".ff.linear2.", ".mlp_proj.").replace(".norm1.", ".ln_1.").replace(".norm2.", ".ln_2.")
    return name


def load_into_twin(twin, state):
    import torch
    own = dict(twin.named_parameters())
    for name, array in state.items():
        if name == "lm_head.weight":
            continue                                                    # tied to wte
        own[twin_name(name)].data.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--corpus", default="pydoc")
    ap.add_argument("--max-chars", type=int, default=0,
                    help="use only the first N characters of the corpus (0 = all; e.g. 2000000 for stdlib, "
                         "whose 12 MB would make each full validation pass slow)")
    ap.add_argument("--out-dir", default="/tmp/minilm-torch-twin",
                    help="minilm's run folder (must be empty or absent: runs of other corpora keep theirs)")
    ap.add_argument("--eval-interval", type=int, default=200)
    ap.add_argument("--backend", default=None, help="minilm kernel backend (default: minilm's default)")
    ap.add_argument("--plot", default=None, help="write the two validation curves to this PNG")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = ap.parse_args()
    if args.backend:
        minilm.set_backend(args.backend)

    # nanoGPT's CPU configuration: 4 layers, 4 heads, d 128, context 64, batch 12, lr 1e-3, dropout 0
    cfg = PretrainConfig(model="gpt", preset="baby", corpus=args.corpus, max_chars=args.max_chars, tokenizer="char", seq_len=64,
                         batch_size=12, steps=args.steps, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1,
                         weight_decay=0.1, grad_clip=1.0, dropout=0.0, eval_interval=args.eval_interval,
                         eval_batches=0, ckpt_interval=10 ** 9, log_interval=10 ** 9, seed=1337,
                         out_dir=args.out_dir)
    trainer, tokenizer = prepare(cfg, progress_stream=io.StringIO())
    initial = trainer.model.state_dict()

    print(f"minilm {minilm.__version__} backend={minilm.get_backend()}  steps={cfg.steps}  "
          f"params={trainer.model.num_parameters(False):,}")

    start = time.perf_counter()
    trainer.fit()
    minilm_seconds = time.perf_counter() - start
    minilm_curve = {r["step"]: r["val_loss"] for r in trainer.history if "val_loss" in r}

    # the twin: same initial weights, same batches, same schedule
    try:
        import torch
    except ImportError:
        sys.exit("benchmarks/torch_twin.py needs PyTorch (pip install torch==2.13.0); minilm itself does not")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()}")
    twin = twin_model_class()(trainer.model.config)
    load_into_twin(twin, initial)
    named = {twin_name(n): p for n, p in trainer.model.named_parameters()}
    groups = param_groups_for_weight_decay(trainer.model.named_parameters(), cfg.weight_decay)
    by_id = {id(p): n for n, p in trainer.model.named_parameters()}
    twin_params = dict(twin.named_parameters())
    torch_groups = [{"params": [twin_params[twin_name(by_id[id(p)])] for p in g["params"]],
                     "weight_decay": g["weight_decay"]} for g in groups]
    assert sum(len(g["params"]) for g in torch_groups) == len(named)
    opt = torch.optim.AdamW(torch_groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
    from minilm.pretrain import build_data, load_text
    batcher, _, _ = build_data(cfg, tokenizer, load_text(cfg), trainer.model)
    val_windows = list(trainer.val_batches())
    warmup = min(cfg.warmup_steps, cfg.steps - 1)

    def evaluate():
        twin.eval()
        with torch.no_grad():
            total = sum(float(twin(torch.from_numpy(x), torch.from_numpy(y))) * y.size for x, y in val_windows)
        twin.train()
        return total / sum(y.size for _, y in val_windows)

    twin_curve = {}
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x, y = batcher.next_batch()
        loss = twin(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
        lr = warmup_cosine(step, base_lr=cfg.lr, warmup_steps=warmup, max_steps=cfg.steps,
                           min_lr=cfg.lr * cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            twin_curve[step] = evaluate()
    torch_seconds = time.perf_counter() - start

    print(f"\n{'step':>6} {'minilm val':>11} {'torch val':>10} {'ratio':>7}")
    for step in sorted(minilm_curve):
        a, b = minilm_curve[step], twin_curve[step]
        print(f"{step:>6} {a:>11.4f} {b:>10.4f} {a / b:>7.4f}")
    final = max(minilm_curve)
    ratio = minilm_curve[final] / twin_curve[final]
    print(f"\nfinal validation loss: minilm {minilm_curve[final]:.4f}, torch {twin_curve[final]:.4f}, "
          f"ratio {ratio:.4f} ({'within' if abs(ratio - 1) <= 0.02 else 'NOT within'} 2%)")
    print(f"wall time: minilm {minilm_seconds:.1f} s ({cfg.steps / minilm_seconds:.2f} steps/s), "
          f"torch {torch_seconds:.1f} s ({cfg.steps / torch_seconds:.2f} steps/s), "
          f"minilm/torch time {minilm_seconds / torch_seconds:.2f}x")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        train = [(r["step"], r["train_loss"]) for r in trainer.history]
        ax.plot(*zip(*train), lw=0.8, alpha=0.5, label="minilm train")
        ax.plot(sorted(minilm_curve), [minilm_curve[s] for s in sorted(minilm_curve)], "o-", label="minilm validation")
        ax.plot(sorted(twin_curve), [twin_curve[s] for s in sorted(twin_curve)], "s--", label="PyTorch twin validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/char)")
        ax.set_title(f"char GPT (4L 4H d128 T64) on {args.corpus}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot: {args.plot}")
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
