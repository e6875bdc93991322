"""Parity cases for the CUDA kernels: fresh random inputs, one run on a runtime, a comparison.

A runtime is either the CPU emulator (emu_runtime.EmuRuntime) or the GPU
(minilm.kernels.cuda.runtime.CupyRuntime); the `*_on(runtime, ...)` functions of
minilm.kernels.cuda are called exactly as the public API calls them. Outputs come from
`runtime.empty`, which on both runtimes used here pre-fills them with NaN, so an element a
kernel never writes fails the comparison.

Each `check_*` raises AssertionError (from numpy.testing) on any mismatch.
"""
from dataclasses import dataclass

import numpy as np

from minilm.kernels.cuda import attention, cross_entropy, gelu, layer_norm

from . import reference

RTOL = 2e-4
ATOL = 2e-5


def to_numpy(a):
    return np.asarray(a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a)


def assert_close(got, want, what, rtol=RTOL, atol=ATOL):
    got = to_numpy(got)
    assert got.shape == np.shape(want), f"{what}: shape {got.shape} != {np.shape(want)}"
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol, err_msg=what)


# ---------------------------------------------------------------- attention

@dataclass(frozen=True)
class AttentionCase:
    b: int
    h: int
    tq: int
    tk: int
    d: int
    causal: bool
    mask: str = "none"   # "none", "random" (about 30% of keys padding), "empty" (+ one batch row all padding)
    scale: float = None

    def __str__(self):
        s = f"B{self.b}H{self.h}q{self.tq}k{self.tk}d{self.d}{'-causal' if self.causal else ''}"
        return s + ("" if self.mask == "none" else f"-mask_{self.mask}") + \
            ("" if self.scale is None else f"-scale{self.scale}")


ATTENTION_CASES = [
    AttentionCase(1, 1, 1, 1, 1, False),                 # T = 1, D = 1
    AttentionCase(1, 2, 1, 1, 3, True),                  # T = 1, causal
    AttentionCase(2, 2, 37, 37, 3, True),                # T not a multiple of any tile
    AttentionCase(1, 2, 19, 19, 17, False, "random"),
    AttentionCase(2, 1, 33, 33, 64, True, "empty"),      # fully masked rows
    AttentionCase(1, 1, 5, 40, 128, True),               # Tq < Tk causal (a KV cache)
    AttentionCase(1, 2, 20, 20, 128, False, "random"),
    AttentionCase(2, 1, 17, 70, 64, False, "random", scale=0.3),
    AttentionCase(1, 1, 40, 7, 17, True),                # Tq > Tk causal: early rows see nothing
    AttentionCase(1, 1, 3, 45, 1, True, "random"),
    AttentionCase(2, 1, 24, 24, 64, False, "empty"),
    AttentionCase(1, 1, 70, 70, 32, True, "random"),     # several query and key tiles
    AttentionCase(2, 1, 9, 9, 100, True, "empty"),       # D = 100 in the 128 bucket
]


def attention_inputs(case, rng):
    q = rng.standard_normal((case.b, case.h, case.tq, case.d)).astype(np.float32)
    k = rng.standard_normal((case.b, case.h, case.tk, case.d)).astype(np.float32)
    v = rng.standard_normal((case.b, case.h, case.tk, case.d)).astype(np.float32)
    dout = rng.standard_normal((case.b, case.h, case.tq, case.d)).astype(np.float32)
    key_mask = None
    if case.mask != "none":
        key_mask = rng.random((case.b, case.tk)) > 0.3
        if case.mask == "empty":
            key_mask[-1] = False
    return q, k, v, dout, key_mask


def check_attention(runtime, case, seed):
    rng = np.random.default_rng(seed)
    q, k, v, dout, key_mask = attention_inputs(case, rng)
    xp = runtime.xp
    qx, kx, vx, doutx = (xp.asarray(a) for a in (q, k, v, dout))
    maskx = None if key_mask is None else xp.asarray(key_mask)
    kwargs = dict(causal=case.causal, key_mask=maskx, scale=case.scale)
    out, lse = attention.attention_forward_on(runtime, qx, kx, vx, **kwargs)
    dq, dk, dv = attention.attention_backward_on(runtime, qx, kx, vx, out, lse, doutx, **kwargs)
    want = reference.attention(q, k, v, dout, causal=case.causal, key_mask=key_mask,
                               scale=case.scale)
    for name, got, ref in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, dq, dk, dv), want):
        assert_close(got, ref, f"attention {case}: {name}")
    return want


def check_attention_forward(runtime, case, seed):
    """Forward only (out and lse): the race test needs nothing else."""
    rng = np.random.default_rng(seed)
    q, k, v, dout, key_mask = attention_inputs(case, rng)
    xp = runtime.xp
    maskx = None if key_mask is None else xp.asarray(key_mask)
    out, lse = attention.attention_forward_on(runtime, xp.asarray(q), xp.asarray(k), xp.asarray(v),
                                              causal=case.causal, key_mask=maskx, scale=case.scale)
    want = reference.attention(q, k, v, dout, causal=case.causal, key_mask=key_mask,
                               scale=case.scale)
    assert_close(out, want[0], f"attention {case}: out")
    assert_close(lse, want[1], f"attention {case}: lse")


# ---------------------------------------------------------------- GELU

GELU_SHAPES = [(1,), (7,), (3, 257), (2, 3, 171)]


def check_gelu(runtime, shape, approximate, seed):
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal(shape)).astype(np.float32)
    x.flat[0] = -12.0           # far tails: the erf/tanh terms saturate
    x.flat[-1] = 9.0 if x.size > 1 else x.flat[-1]
    dy = rng.standard_normal(shape).astype(np.float32)
    xp = runtime.xp
    y = gelu.gelu_forward_on(runtime, xp.asarray(x), approximate)
    dx = gelu.gelu_backward_on(runtime, xp.asarray(x), xp.asarray(dy), approximate)
    y_ref, dydx_ref = reference.gelu(x, approximate)
    assert_close(y, y_ref, f"gelu {approximate} {shape}: y", atol=1e-6, rtol=1e-5)
    assert_close(dx, dy * dydx_ref, f"gelu {approximate} {shape}: dx", atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- LayerNorm

@dataclass(frozen=True)
class LayerNormCase:
    shape: tuple
    affine: bool = True
    offset: float = 0.0  # added to x: a large mean tests the two-pass variance

    def __str__(self):
        return "x".join(map(str, self.shape)) + ("" if self.affine else "-noaffine") + \
            ("" if not self.offset else f"-offset{self.offset:g}")


LAYER_NORM_CASES = [
    LayerNormCase((1, 1)),
    LayerNormCase((7, 33)),
    LayerNormCase((2, 3, 130)),
    LayerNormCase((5, 300), offset=100.0),
    LayerNormCase((65, 8)),              # 65 rows: three chunks of the dweight/dbias sum
    LayerNormCase((4, 40), affine=False),
]


def check_layer_norm(runtime, case, seed, eps=1e-5):
    rng = np.random.default_rng(seed)
    c = case.shape[-1]
    x = (rng.standard_normal(case.shape) + case.offset).astype(np.float32)
    dy = rng.standard_normal(case.shape).astype(np.float32)
    weight = rng.standard_normal(c).astype(np.float32) if case.affine else None
    bias = rng.standard_normal(c).astype(np.float32) if case.affine else None
    xp = runtime.xp
    to = (lambda a: None if a is None else xp.asarray(a))
    y, mean, rstd = layer_norm.layer_norm_forward_on(runtime, to(x), to(weight), to(bias), eps)
    dx, dweight, dbias = layer_norm.layer_norm_backward_on(runtime, to(dy), to(x), to(weight),
                                                           mean, rstd)
    want = reference.layer_norm(x, weight, bias, eps, dy)
    # With a large offset float32 x itself only carries ~1e-5 relative to |x|; mean follows.
    names = ("y", "mean", "rstd", "dx", "dweight", "dbias")
    for name, got, ref in zip(names, (y, mean, rstd, dx, dweight, dbias), want):
        assert_close(got, ref, f"layer_norm {case}: {name}", rtol=2e-4, atol=5e-5)


# ---------------------------------------------------------------- cross-entropy

@dataclass(frozen=True)
class CrossEntropyCase:
    n: int
    v: int
    ignore_fraction: float = 0.0
    ignore_index: int = -100

    def __str__(self):
        return f"N{self.n}V{self.v}-ign{self.ignore_fraction}-idx{self.ignore_index}"


CROSS_ENTROPY_CASES = [
    CrossEntropyCase(1, 1),
    CrossEntropyCase(9, 11, 0.3),
    CrossEntropyCase(5, 300, 0.0, ignore_index=3),   # an ignore_index that is a real class
    CrossEntropyCase(4, 7, 1.0),                     # every row ignored
    CrossEntropyCase(33, 129, 0.2),
]


def check_cross_entropy(runtime, case, seed):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.standard_normal((case.n, case.v))).astype(np.float32)
    targets = rng.integers(0, case.v, size=case.n)
    targets[rng.random(case.n) < case.ignore_fraction] = case.ignore_index
    grad_scale = 0.37
    xp = runtime.xp
    lx, tx = xp.asarray(logits), xp.asarray(targets)
    loss_sum, n_counted, lse = cross_entropy.cross_entropy_forward_on(
        runtime, lx, tx, ignore_index=case.ignore_index)
    dlogits = cross_entropy.cross_entropy_backward_on(runtime, lx, tx, lse, grad_scale,
                                                      ignore_index=case.ignore_index)
    want_loss, want_n, want_lse, want_d = reference.cross_entropy(logits, targets,
                                                                  case.ignore_index, grad_scale)
    assert int(n_counted) == want_n, f"cross_entropy {case}: n_counted {int(n_counted)} != {want_n}"
    assert_close(loss_sum, np.float64(want_loss), f"cross_entropy {case}: loss_sum", rtol=1e-5, atol=1e-4)
    assert_close(lse, want_lse, f"cross_entropy {case}: lse", rtol=1e-5, atol=1e-5)
    assert_close(dlogits, want_d, f"cross_entropy {case}: dlogits", rtol=1e-4, atol=1e-6)
