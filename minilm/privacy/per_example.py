"""Per-example gradients, vectorised: one forward and one backward pass for the whole batch.

DP-SGD (see dp_sgd.py) must bound how much any single example can move the
model, so it needs the gradient of each example's loss on its own, not only
their sum. Looping over the batch one example at a time gives them honestly
but costs a forward and backward pass per example. For the three layers that
hold every weight of minilm's Transformers, backprop already computes the
pieces of each example's gradient and only sums them over the batch at the
very end; we stop one step earlier (Goodfellow 2015, "Efficient Per-Example
Gradient Computations", arXiv:1510.01799; the same rules as Opacus's
per-layer "grad samplers"). With x a layer's input, gy = dL/dy its output
gradient, b the example and t every other position (time):

    Linear     y = x W^T + c      dW[b] = sum_t gy[b,t]^T x[b,t]     (einsum 'bto,bti->boi')
                                  dc[b] = sum_t gy[b,t]
    Embedding  y = W[ids]         dW[b] = sum_t onehot(ids[b,t]) gy[b,t]   (scatter-add per example)
    LayerNorm  y = xhat w + c     dw[b] = sum_t gy[b,t] * xhat[b,t],   dc[b] = sum_t gy[b,t]

The batch gradient is sum_b of these, which is exactly what each op's own
backward returns; the per-example ones cost the same multiply-adds, they
just keep the batch axis (and memory: B copies of every weight).

How it is wired, without touching the engine: inside `per_example_grads`,
each Linear, Embedding and LayerNorm module's forward is wrapped so that it
keeps its input and calls `retain_grad()` on its output; after an ordinary
`backward()` each output's `.grad` is gy. A table used by the whole batch
(GPT's position table `wpe`, called with 1-D ids) has an output without a
batch axis; the wrapper broadcasts it to the batch (adding zeros of shape
(B, 1, ..., 1)), so its retained gradient is per example as well.

Two guards keep this from giving a silently wrong answer: a trainable
parameter owned by any other kind of module is refused before anything
runs, and after the backward pass the per-example gradients, summed over
the batch, are compared with the batch gradient the engine computed (a
weight used outside its module's forward, e.g. by slicing it, would show up
there as a mismatch).

Assumes the examples do not interact (no batch statistics), which holds for
Transformers: example b's loss depends only on example b.
"""
import numpy as np

from minilm.autograd.ops_shape import scatter_add
from minilm.backend import array_module
from minilm.nn.layers import Embedding, LayerNorm, Linear
from minilm.tensor import Tensor

_SUPPORTED = (Linear, Embedding, LayerNorm)


class _Call:
    """One forward call of a recorded module: what its per-example rule needs."""

    __slots__ = ("module", "name", "saved", "out", "shared")

    def __init__(self, module, name, saved, out, shared=False):
        self.module, self.name, self.saved, self.out, self.shared = module, name, saved, out, shared


def _check_supported(model):
    owned = set()
    for module in model.modules():
        if isinstance(module, _SUPPORTED):
            owned.update(id(p) for p in module._parameters.values() if p is not None)
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in owned:
            raise ValueError(f"per_example_grads: parameter {name!r} belongs to a module that is not a "
                             f"Linear, Embedding or LayerNorm, so there is no per-example rule for it "
                             f"(freeze it with requires_grad=False, or compute per-example gradients by "
                             f"a loop of single-example backward passes)")


def _install(model, batch_size, calls):
    """Wrap the forward of every supported module; returns the modules wrapped (to unwrap later)."""
    wrapped = []
    for name, module in model.named_modules():
        if not isinstance(module, _SUPPORTED):
            continue
        original = type(module).forward

        def forward(*args, _m=module, _name=name, _orig=original, **kwargs):
            x = args[0]
            out = _orig(_m, *args, **kwargs)
            if isinstance(_m, Embedding):
                ids = np.asarray(x.data if isinstance(x, Tensor) else x)
                shared = ids.ndim < 2          # a table shared by the batch (positions): broadcast it
                if shared:
                    xp = array_module(out.data)
                    out = out + Tensor._make(xp.zeros((batch_size,) + (1,) * out.ndim, dtype=out.dtype))
                elif ids.shape[0] != batch_size:
                    raise ValueError(f"per_example_grads: Embedding {_name!r} got ids of shape {ids.shape}, "
                                     f"whose first axis is not the batch of {batch_size}")
                saved = ids
            else:
                if x.shape[0] != batch_size:
                    raise ValueError(f"per_example_grads: {type(_m).__name__} {_name!r} got input of shape "
                                     f"{x.shape}, whose first axis is not the batch of {batch_size}")
                saved, shared = x.data, False
            out.retain_grad()
            calls.append(_Call(_m, _name, saved, out, shared))
            return out

        object.__setattr__(module, "forward", forward)        # an instance attribute shadows the method
        wrapped.append(module)
    return wrapped


def _add(table, p, g):
    key = id(p)
    table[key] = g if key not in table else table[key] + g    # tied weights: both uses add up


def _linear_rule(call, batch, table):
    m, x, gy = call.module, call.saved, call.out.grad
    x3 = x.reshape(batch, -1, x.shape[-1])                       # (B, T, in)
    g3 = gy.reshape(batch, -1, gy.shape[-1])                     # (B, T, out)
    if m.weight.requires_grad:
        _add(table, m.weight, np.matmul(g3.transpose(0, 2, 1), x3))   # (B, out, T) @ (B, T, in)
    if m.bias is not None and m.bias.requires_grad:
        _add(table, m.bias, g3.sum(axis=1))


def _embedding_rule(call, batch, table):
    w, gy = call.module.weight, call.out.grad
    if not w.requires_grad:
        return
    vocab, dim = w.shape
    ids = np.broadcast_to(call.saved, (batch,) + call.saved.shape) if call.shared else call.saved
    ids = ids.reshape(batch, -1)                                  # (B, T)
    rows = (np.arange(batch)[:, None] * vocab + ids).reshape(-1)  # row of (B*V, C) for example b, id v
    xp = array_module(gy)
    grad = xp.zeros((batch * vocab, dim), dtype=gy.dtype)
    scatter_add(xp, grad, rows, gy.reshape(-1, dim))              # the engine's own Embedding scatter
    _add(table, w, grad.reshape(batch, vocab, dim))


def _layer_norm_rule(call, batch, table):
    m, x, gy = call.module, call.saved, call.out.grad
    xp = array_module(x)
    centered = x - x.mean(axis=-1, keepdims=True)
    xhat = centered / xp.sqrt((centered * centered).mean(axis=-1, keepdims=True) + m.eps)
    g3 = gy.reshape(batch, -1, gy.shape[-1])
    if m.weight is not None and m.weight.requires_grad:
        _add(table, m.weight, (g3 * xhat.reshape(g3.shape)).sum(axis=1))
    if m.bias is not None and m.bias.requires_grad:
        _add(table, m.bias, g3.sum(axis=1))


_RULES = {Linear: _linear_rule, Embedding: _embedding_rule, LayerNorm: _layer_norm_rule}


def per_example_grads(model, loss_fn, batch_size, check=True):
    """Gradients of each example's loss: returns ({parameter name: array (B, *shape)}, losses (B,)).

    model       a Module whose trainable weights all live in Linear, Embedding and LayerNorm
    loss_fn     a function of no arguments that runs the model on the batch and returns a Tensor
                of shape (batch_size,): the loss of each example (e.g. `example_losses` below)
    batch_size  B, the first axis of every batched input
    check       compare sum_b of the per-example gradients with the engine's batch gradient and
                raise if they differ (cheap; catches weights used outside their module)

    Leaves each parameter's .grad holding the batch gradient sum_b dL_b/dp.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"per_example_grads: batch_size must be a positive int, got {batch_size!r}")
    _check_supported(model)
    calls = []
    wrapped = _install(model, int(batch_size), calls)
    try:
        model.zero_grad()
        losses = loss_fn()
    finally:
        for module in wrapped:
            del module.__dict__["forward"]
    if not isinstance(losses, Tensor) or losses.shape != (batch_size,):
        shape = losses.shape if isinstance(losses, Tensor) else type(losses).__name__
        raise ValueError(f"per_example_grads: loss_fn must return a Tensor of shape ({batch_size},), one "
                         f"loss per example, got {shape}")
    xp = array_module(losses.data)
    losses.backward(xp.ones_like(losses.data))          # sum of the losses: each example's own gradient
    table = {}
    for call in calls:
        if call.out.grad is not None:                   # an output that did not reach the loss adds nothing
            _RULES[type(call.module)](call, int(batch_size), table)
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = table.get(id(p))
        out[name] = g if g is not None else xp.zeros((batch_size,) + p.shape, dtype=p.dtype)
        if check:
            _check_sum(name, out[name], p.grad)
    return out, losses.data.copy()


def _check_sum(name, per_example, batch_grad):
    total = per_example.sum(axis=0)
    reference = np.zeros_like(total) if batch_grad is None else batch_grad
    scale = float(abs(reference).max()) + float(abs(total).max()) + 1e-30
    tol = 1e-4 if per_example.dtype == np.float32 else 1e-9
    err = float(abs(total - reference).max())
    if err > tol * scale:
        raise RuntimeError(f"per_example_grads: for {name!r} the per-example gradients sum to something "
                           f"other than the batch gradient (max difference {err:.3g}, scale {scale:.3g}); "
                           f"the weight is probably used outside its module's forward, which the "
                           f"per-example rules cannot see")


def example_losses(logits, targets):
    """Mean next-token cross-entropy of each sequence: logits (B, T, V), targets (B, T) -> (B,).

    log_softmax, then the target's log-probability picked by a one-hot mask
    (a constant), averaged over T. Every target must be a real token id.
    """
    from minilm.nn import functional as F                # functional imports the engine, as we do
    tgt = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if logits.ndim != 3 or tgt.shape != logits.shape[:2]:
        raise ValueError(f"example_losses: need logits (B, T, V) and targets (B, T), got {logits.shape} "
                         f"and {tgt.shape}")
    vocab = logits.shape[-1]
    if tgt.size and (tgt.min() < 0 or tgt.max() >= vocab):
        raise ValueError(f"example_losses: targets must be token ids in [0, {vocab}), got "
                         f"[{tgt.min()}, {tgt.max()}] (ignore_index is not supported here)")
    onehot = np.zeros(logits.shape, dtype=logits.dtype)
    np.put_along_axis(onehot, tgt[..., None], 1.0, axis=-1)
    picked = (F.log_softmax(logits, axis=-1) * onehot).sum(axis=-1)    # (B, T)
    return -picked.mean(axis=1)
