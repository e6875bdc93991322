"""Conceptual diagrams for the tutorials, drawn with matplotlib from code.

    from minilm.diagrams import draw_attention_heads, draw_block, draw_training_loop
    draw_attention_heads()            # chapter 04: x -> Q, K, V -> heads -> concat -> out_proj
    draw_block(norm_first=False)      # chapter 05: the post-LN block (norm_first=True: pre-LN)
    draw_training_loop()              # chapter 06: where the data goes in one training run

Each function returns a `matplotlib.figure.Figure`, made without pyplot so that it never piles up in
pyplot's list of open figures; a notebook shows it as the cell's value once its inline backend is
active (after the first pyplot plot). Given `ax`, a function draws into that Axes instead and returns
its figure, e.g. two blocks side by side in `plt.subplots(1, 2)`. The boxes
name the attributes of the real modules (`in_proj`, `out_proj`, `norm1`, `ff`, ...), so a diagram
can be read next to the code. matplotlib is imported only when a function is called: the library
itself never needs it.
"""

__all__ = ["draw_attention_heads", "draw_block", "draw_training_loop"]

# colours by role, shared by the three diagrams
_DATA = "#e8f0fe"       # tensors, text, arrays
_LAYER = "#fff3e0"      # modules with weights
_OP = "#e8f5e9"         # weight-free operations (softmax, add, reshape)
_NORM = "#f3e5f5"       # LayerNorm
_STORE = "#eeeeee"      # files on disk


def _axes(ax, size):
    """A fresh Figure and Axes (without pyplot's global state), or the given Axes."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=90)
    return fig, fig.add_subplot(1, 1, 1)


def _box(ax, x, y, text, colour, w=2.2, h=0.6, fontsize=8.5, **kw):
    """A rounded box centred at (x, y); returns its centre and half sizes for arrows."""
    from matplotlib.patches import FancyBboxPatch
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=colour, ec=kw.pop("ec", "0.35"), lw=kw.pop("lw", 1.0), zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3, **kw)
    return (x, y, w / 2, h / 2)


def _arrow(ax, start, end, text=None, rad=0.0, colour="0.3", text_offset=(0.08, 0.0), fontsize=7.5,
           style="-|>", ls="-"):
    """An arrow between two points (x, y) with an optional label near its middle."""
    ax.annotate("", xy=end, xytext=start, zorder=1,
                arrowprops=dict(arrowstyle=style, color=colour, lw=1.1, ls=ls, shrinkA=0, shrinkB=0,
                                connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, fontsize=fontsize, color="0.25", ha="left", va="center", zorder=3)


def _below(b):
    return (b[0], b[1] - b[3])


def _above(b):
    return (b[0], b[1] + b[3])


def _left(b):
    return (b[0] - b[2], b[1])


def _right(b):
    return (b[0] + b[2], b[1])


def _finish(ax, xlim, ylim, title):
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def draw_attention_heads(num_heads=3, causal=True, ax=None):
    """Multi-head self-attention as `nn.MultiHeadAttention` computes it, top to bottom.

    x (B, T, C) -> in_proj (one Linear C -> 3C) -> split into q, k, v -> reshape each to
    (B, h, T, C/h) -> per head softmax(q k^T / sqrt(C/h), masked) v -> concatenate the heads ->
    out_proj (Linear C -> C) -> y (B, T, C). `num_heads` lanes are drawn (1 to 4); the colours
    show which channels of q, k and v each head receives.
    """
    from matplotlib.patches import Rectangle
    num_heads = max(1, min(int(num_heads), 4))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"][:num_heads]
    fig, ax = _axes(ax, (8.6, 8.4))
    cx = 5.0
    x_in = _box(ax, cx, 9.3, "x   (B, T, C): one vector per token", _DATA, w=4.4, h=0.5)
    proj = _box(ax, cx, 8.35, "in_proj: Linear C → 3C   (W_Q, W_K, W_V in one matrix)", _LAYER, w=6.2, h=0.5)
    _arrow(ax, _below(x_in), _above(proj))
    names = [("q", "query: what am I looking for?"), ("k", "key: what do I contain?"),
             ("v", "value: what I pass on")]
    qkv = []
    for i, (name, hint) in enumerate(names):
        bx = 1.75 + 3.25 * i
        b = _box(ax, bx, 7.15, f"{name}   (B, T, C)\n{hint}", _DATA, w=3.0, h=0.85, fontsize=8)
        for hd, c in enumerate(colours):          # the channel slices that go to each head
            w = 2.6 / num_heads
            ax.add_patch(Rectangle((bx - 1.3 + hd * w, 6.76), w - 0.04, 0.1, fc=c, ec="none", zorder=3))
        _arrow(ax, (proj[0] + (i - 1) * 1.5, proj[1] - proj[3]), _above(b))
        qkv.append(b)
    reshape = _box(ax, cx, 6.0, "reshape (B, T, h, C/h), transpose(1, 2) → (B, h, T, C/h):  "
                   "head i gets channels i·C/h … (i+1)·C/h", _OP, w=9.4, h=0.45, fontsize=7.8)
    for b in qkv:
        _arrow(ax, _below(b), (b[0], reshape[1] + reshape[3]))
    lane_w, gap = 9.4 / num_heads, 0.2
    heads = []
    for hd, c in enumerate(colours):
        left = 0.3 + hd * lane_w
        mid = left + (lane_w - gap) / 2
        bw = lane_w - gap - 0.3
        ax.add_patch(Rectangle((left, 2.45), lane_w - gap, 3.0, fc="#fafafa", ec=c, ls="--", lw=1.0, zorder=0))
        ax.text(left + 0.08, 5.36, f"head {hd}", fontsize=8, color=c, va="top", fontweight="bold")
        parts = _box(ax, mid, 4.75, "q_i, k_i, v_i   (T, C/h)", _DATA, w=bw, h=0.4, fontsize=7.5)
        scores = _box(ax, mid, 4.0, "S = q_i k_iᵀ / √(C/h)\n(T × T scores)", _OP, w=bw, h=0.6, fontsize=7.5)
        mask_text = "causal mask (key j ≤ query i)" if causal else "padding mask (real keys only)"
        soft = _box(ax, mid, 3.2, f"{mask_text}\nP = softmax(S), rows sum to 1", _OP, w=bw, h=0.6, fontsize=7.2)
        out = _box(ax, mid, 2.6, "P v_i   (T, C/h)", _OP, w=bw, h=0.22, fontsize=7.5)
        _arrow(ax, (mid, reshape[1] - reshape[3]), _above(parts), colour=c)
        _arrow(ax, _below(parts), _above(scores))
        _arrow(ax, _below(scores), _above(soft))
        _arrow(ax, _below(soft), _above(out))
        heads.append(out)
    concat = _box(ax, cx, 1.75, "concatenate the heads and transpose back: (B, h, T, C/h) → (B, T, C)", _OP,
                  w=7.6, h=0.45)
    for out, c in zip(heads, colours):
        _arrow(ax, _below(out), (out[0], concat[1] + concat[3]), colour=c)
    proj_out = _box(ax, cx, 0.95, "out_proj: Linear C → C   (mixes what the heads found)", _LAYER, w=6.2, h=0.45)
    _arrow(ax, _below(concat), _above(proj_out))
    y_out = _box(ax, cx, 0.15, "y   (B, T, C)", _DATA, w=2.4, h=0.42)
    _arrow(ax, _below(proj_out), _above(y_out))
    _finish(ax, (0.1, 9.9), (-0.2, 9.7),
            f"nn.MultiHeadAttention, h = {num_heads} heads: each head attends in its own C/h channels")
    return fig


def draw_block(norm_first=False, ax=None):
    """One `nn.TransformerBlock`, bottom (input) to top (output), with its residual paths.

    norm_first=False (post-LN: the original Transformer, BERT, the seed):
        x = norm1(x + dropout1(self_attn(x)));  x = norm2(x + dropout2(ff(x)))
    norm_first=True (pre-LN: GPT-2 and later):
        x = x + dropout1(self_attn(norm1(x)));  x = x + dropout2(ff(norm2(x)))
    """
    fig, ax = _axes(ax, (4.6, 7.4))
    main, side = 2.0, 4.1                           # x of the branch boxes and of the residual line
    y = 0.0
    x_in = _box(ax, main, y, "x   (B, T, C)", _DATA, w=2.4, h=0.5)
    prev = _above(x_in)
    stream = prev                                   # where the residual path leaves
    sublayers = [("self_attn\nMultiHeadAttention", "norm1", "dropout1"),
                 ("ff: FeedForward\nLinear, act, Linear", "norm2", "dropout2")]
    for branch, norm, drop in sublayers:
        y += 1.0
        if norm_first:
            ln = _box(ax, main, y, f"{norm}: LayerNorm", _NORM, w=2.6, h=0.45)
            _arrow(ax, prev, _below(ln))
            prev = _above(ln)
            y += 0.9
        layer = _box(ax, main, y, branch, _LAYER, w=2.8, h=0.75)
        _arrow(ax, prev, _below(layer))
        y += 0.85
        dp = _box(ax, main, y, drop, _OP, w=1.6, h=0.4, fontsize=8)
        _arrow(ax, _above(layer), _below(dp))
        y += 0.8
        add = _box(ax, main, y, "+", _OP, w=0.5, h=0.5, fontsize=12)
        _arrow(ax, _above(dp), _below(add))
        # the residual path: from the stream up the right-hand side into the add
        ax.plot([stream[0], side, side], [stream[1] + 0.15, stream[1] + 0.15, y], color="tab:blue", lw=1.4,
                zorder=1)
        _arrow(ax, (side, y), _right(add), colour="tab:blue")
        ax.text(side + 0.1, (stream[1] + y) / 2, "residual", rotation=90, fontsize=7.5, color="tab:blue",
                va="center")
        prev = _above(add)
        if not norm_first:
            y += 0.8
            ln = _box(ax, main, y, f"{norm}: LayerNorm", _NORM, w=2.6, h=0.45)
            _arrow(ax, prev, _below(ln))
            prev = _above(ln)
        stream = prev
    y += 0.9
    out = _box(ax, main, y, "x   (B, T, C)", _DATA, w=2.4, h=0.5)
    _arrow(ax, prev, _below(out))
    if norm_first:
        title = "pre-LN (norm_first=True)\nGPT-2: the stream is a plain sum;\nGPT adds ln_f after the last block"
    else:
        title = "post-LN (norm_first=False)\nthe seed, BERT: every sum\nis normalised"
    _finish(ax, (0.2, 5.0), (-0.5, y + 0.5), title)
    return fig


def draw_training_loop(ax=None):
    """Where the data goes in a minilm pretraining run (`prepare` + `Trainer.fit`).

    Corpus text -> tokenizer -> token ids, split 90 / 10 -> the batcher cuts (B, T+1) windows ->
    x, y -> model -> logits -> cross-entropy -> backward -> clip -> AdamW with the learning-rate
    schedule -> new weights, and around again. Every eval_interval steps the held-out batches
    give val_loss; metrics.jsonl and checkpoints are written to the run folder.
    """
    from matplotlib.patches import FancyBboxPatch
    fig, ax = _axes(ax, (11.5, 6.4))
    ax.add_patch(FancyBboxPatch((6.2, 1.65), 6.9, 5.2, boxstyle="round,pad=0.02,rounding_size=0.3",
                                fc="#f1f8e9", ec="tab:green", lw=0.8, ls="--", zorder=0))
    ax.text(6.35, 6.72, "one training step (Trainer.train_step), repeated `steps` times", fontsize=8,
            color="tab:green", va="top")
    corpus = _box(ax, 1.4, 6.3, "corpus text\nload_corpus('pydoc')", _DATA, w=2.4, h=0.7)
    tok = _box(ax, 1.4, 5.0, "tokenizer\n(char or BPE)", _LAYER, w=2.4, h=0.7)
    ids = _box(ax, 1.4, 3.7, "token ids\nsplit_text: 90% | 10%", _DATA, w=2.4, h=0.7)
    _arrow(ax, _below(corpus), _above(tok))
    _arrow(ax, _below(tok), _above(ids))
    train_b = _box(ax, 4.3, 5.0, "train batcher\nrandom (B, T+1)\nwindows", _OP, w=2.4, h=0.95)
    val_b = _box(ax, 4.3, 0.55, "validation batches:\nthe same held-out\nwindows every time", _OP, w=2.4,
                 h=0.95)
    _arrow(ax, _right(ids), _left(train_b), text="first 90%", rad=0.2, text_offset=(0.0, -0.35))
    _arrow(ax, _below(ids), _left(val_b), text="last 10%", rad=0.25, text_offset=(-0.55, -0.25))
    xy = _box(ax, 8.0, 5.9, "x = window[:, :-1]\ny = window[:, 1:]  (shifted by one)", _DATA, w=3.2, h=0.7)
    _arrow(ax, _right(train_b), _left(xy), rad=-0.15)
    fwd = _box(ax, 11.6, 5.9, "model(x)\nlogits (B, T, V)", _LAYER, w=2.4, h=0.7)
    _arrow(ax, _right(xy), _left(fwd))
    loss = _box(ax, 11.6, 4.7, "cross_entropy(logits, y)\nloss in nats per token", _OP, w=2.8, h=0.7)
    _arrow(ax, _below(fwd), _above(loss))
    bwd = _box(ax, 11.6, 3.5, "loss.backward()\np.grad for every weight", _OP, w=2.8, h=0.7)
    _arrow(ax, _below(loss), _above(bwd))
    clip = _box(ax, 11.6, 2.3, "clip_grad_norm_\n(global norm ≤ grad_clip)", _OP, w=2.8, h=0.7)
    _arrow(ax, _below(bwd), _above(clip))
    step = _box(ax, 8.0, 2.3, "AdamW.step()\nlr: warm-up, then cosine", _LAYER, w=2.8, h=0.7)
    _arrow(ax, _left(clip), _right(step))
    weights = _box(ax, 8.0, 4.1, "model weights\n(changed in place)", _LAYER, w=2.6, h=0.7, lw=1.6)
    _arrow(ax, _above(step), _below(weights))
    _arrow(ax, _right(weights), (fwd[0] - fwd[2], fwd[1] - 0.15), colour="tab:green",
           text="next step", text_offset=(-0.95, 0.2))
    ev = _box(ax, 8.0, 0.55, "every eval_interval steps: evaluate()\nval_loss, val_ppl (no gradients)", _OP,
              w=4.0, h=0.7)
    _arrow(ax, _right(val_b), _left(ev))
    ax.plot([weights[0] - weights[2], 6.45, 6.45], [weights[1], weights[1], 1.4], color="0.55", ls="--", lw=1.1)
    _arrow(ax, (6.45, 1.4), (6.45, ev[1] + ev[3]), colour="0.55", ls="--")
    folder = _box(ax, 11.9, 0.55, "run folder\nmetrics.jsonl, checkpoint/", _STORE, w=2.8, h=0.7)
    _arrow(ax, _right(ev), _left(folder))
    _arrow(ax, (clip[0] + 0.9, clip[1] - clip[3]), (folder[0] + 0.9, folder[1] + folder[3]), colour="0.55",
           ls="--", text="train_loss, lr", text_offset=(0.05, 0.0))
    _finish(ax, (0.0, 13.4), (-0.2, 7.0), "A pretraining run: where the data goes")
    return fig
