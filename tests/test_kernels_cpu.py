"""The Numba CPU kernels (minilm.kernels.cpu) against independent float64 NumPy references.

Every kernel, forward and backward, on seeded random inputs: the seed is 0 (the same inputs on every
run) unless MINILM_KERNEL_TEST_SEED sets another one to explore, and it is printed in every failure
message so a failing case can be replayed.  All kernel outputs are allocated poisoned (NaN-filled) so an element
a kernel forgets to write fails the comparison.

float32 tolerances (inputs ~ N(0, 1)), measured errors are 10-100x below these:
  attention out, lse, dq, dk, dv:  |err| <= 2e-5 + 1e-4 |ref|
  GELU (erf form):  relative error <= 1e-6 on x in [-12, 12] (forward; backward relative to |Phi| + |x phi|)
  GELU (tanh form): relative error <= 1e-6 + 2.5e-7 |2u|  (the float32 exponent -2u rounds; see gelu.py)
  LayerNorm:        |err| <= 1e-5 + 1e-4 |ref|  (dweight, dbias: 1e-4 + 1e-4 |ref|, sums over rows)
  cross-entropy:    loss_sum relative 1e-6; lse, dlogits |err| <= 1e-6 + 1e-5 |ref|
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

import minilm.kernels.cpu as K  # noqa: E402
from minilm.kernels.cpu import _alloc, poisoned_outputs  # noqa: E402

SEED = int(os.environ.get("MINILM_KERNEL_TEST_SEED", "0"))
SEED_NOTE = "(MINILM_KERNEL_TEST_SEED=%d)" % SEED


def _rng(*salt):
    return np.random.default_rng([SEED, *salt])


def _close(actual, expected, atol, rtol, what):
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol,
                               err_msg="%s %s" % (what, SEED_NOTE))


# ---- independent float64 references, straight from the formulas -------------------------------------
def attention_reference(q, k, v, dout, causal, key_mask, scale):
    q, k, v, dout = (a.astype(np.float64) for a in (q, k, v, dout))
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    allowed = np.ones((B, 1, Tq, Tk), bool)
    if causal:
        allowed &= (np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq))[None, None]
    if key_mask is not None:
        allowed &= key_mask[:, None, None, :]
    scores = np.where(allowed, q @ k.swapaxes(-1, -2) * scale, -np.inf)
    has_key = allowed.any(-1, keepdims=True)  # (B, 1|H, Tq, 1)
    peak = np.where(has_key, scores.max(-1, keepdims=True), 0.0)
    weights = np.where(allowed, np.exp(scores - peak), 0.0)
    total = weights.sum(-1, keepdims=True)
    probs = np.where(has_key, weights / np.where(total > 0, total, 1.0), 0.0)
    out = probs @ v
    lse = np.where(has_key, peak + np.log(np.where(total > 0, total, 1.0)), -np.inf)[..., 0]
    lse = np.broadcast_to(lse, (B, H, Tq))
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True))
    return out, lse, dscores @ k * scale, dscores.swapaxes(-1, -2) @ q * scale, dv


def gelu_reference(x, approximate):
    """(gelu(x), gelu'(x), scale of gelu'(x)'s terms) in float64."""
    x = x.astype(np.float64)
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        with np.errstate(over="ignore"):
            sig = 1 / (1 + np.exp(-2 * u))
        term = x * sig * (1 - sig) * 2 * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x ** 2)
        return x * sig, sig + term, np.abs(sig) + np.abs(term), u
    cdf = 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))
    term = x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return x * cdf, cdf + term, np.abs(cdf) + np.abs(term), None


def layer_norm_reference(x, weight, bias, eps, dy):
    x, weight, bias, dy = (a.astype(np.float64) for a in (x, weight, bias, dy))
    mean = x.mean(-1)
    rstd = 1 / np.sqrt(((x - mean[..., None]) ** 2).mean(-1) + eps)
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * weight
    dx = rstd[..., None] * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    C = x.shape[-1]
    return xhat * weight + bias, mean, rstd, dx, (dy * xhat).reshape(-1, C).sum(0), dy.reshape(-1, C).sum(0)


def cross_entropy_reference(logits, targets, ignore_index, grad_scale):
    x = logits.astype(np.float64)
    peak = x.max(-1, keepdims=True)
    lse = (peak + np.log(np.exp(x - peak).sum(-1, keepdims=True)))[:, 0]
    counted = targets != ignore_index
    rows = np.flatnonzero(counted)
    loss_sum = float((lse[rows] - x[rows, targets[rows]]).sum())
    grad = np.exp(x - lse[:, None])
    grad[rows, targets[rows]] -= 1
    grad *= grad_scale
    grad[~counted] = 0
    return loss_sum, int(counted.sum()), lse, grad


# ---- the package surface ----------------------------------------------------------------------------
def test_kernels_table_and_warmup():
    names = {"attention_forward", "attention_backward", "gelu_forward", "gelu_backward", "layer_norm_forward",
             "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward"}
    assert set(K.KERNELS) == names
    assert all(K.KERNELS[n] is getattr(K, n) for n in names)
    assert set(K.warmup()) == names


def test_import_compiles_nothing():
    code = ("import sys, minilm.kernels.cpu\n"
            "from numba.core.dispatcher import Dispatcher\n"
            "mods = [m for n, m in list(sys.modules.items()) if n.startswith('minilm.kernels.cpu')]\n"
            "found = [(m.__name__, n) for m in mods for n, o in vars(m).items() if isinstance(o, Dispatcher)]\n"
            "assert len(found) >= 10, found\n"
            "compiled = [f for f in found if getattr(sys.modules[f[0]], f[1]).signatures]\n"
            "print(compiled)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "compiled at import: " + done.stdout


def test_poisoned_outputs_fill_with_nan():
    with poisoned_outputs():
        assert np.isnan(_alloc.empty((4, 3))).all()
        assert (_alloc.empty((5,), np.int64) == _alloc.INT_POISON).all()
    assert not getattr(_alloc._state, "poison", False)


# ---- attention --------------------------------------------------------------------------------------
ATTENTION_CASES = [
    # (B, H, Tq, Tk, D, causal, key_mask)
    (1, 2, 70, 70, 64, True, False),  # T not a multiple of any block size, batch 1
    (2, 3, 33, 33, 17, False, True),
    (1, 1, 1, 1, 1, False, False),  # T = 1, head dim 1
    (2, 2, 1, 37, 3, True, True),  # decoding: one query against a KV cache
    (2, 1, 5, 100, 128, True, False),  # Tq < Tk with causal, head dim 128
    (1, 2, 130, 130, 64, True, True),  # more than two tiles in each direction
    (2, 2, 40, 9, 3, True, False),  # Tq > Tk with causal: the first rows see no key at all
    (3, 1, 65, 66, 17, False, True),
]


FORWARD_PATHS = {  # attention_forward picks a path by Tq and work; force each one on every case
    "tiles": dict(ROWS_PATH_MAX_TQ=-1),
    "rows_serial": dict(ROWS_PATH_MAX_TQ=1 << 30, ROWS_PARALLEL_MIN_WORK=1 << 62),
    "rows_parallel": dict(ROWS_PATH_MAX_TQ=1 << 30, ROWS_PARALLEL_MIN_WORK=0),
}


@pytest.mark.parametrize("B,H,Tq,Tk,D,causal,masked", ATTENTION_CASES)
def test_attention_matches_reference(B, H, Tq, Tk, D, causal, masked, monkeypatch):
    rng = _rng(B, H, Tq, Tk, D, causal, masked)
    q = rng.standard_normal((B, H, Tq, D), dtype=np.float32)
    k = rng.standard_normal((B, H, Tk, D), dtype=np.float32)
    v = rng.standard_normal((B, H, Tk, D), dtype=np.float32)
    dout = rng.standard_normal((B, H, Tq, D), dtype=np.float32)
    key_mask = None
    if masked:
        key_mask = rng.random((B, Tk)) < 0.7
        key_mask[0] = False  # batch 0 is all padding: every row fully masked
    scale = None if D != 17 else 0.3
    ref = attention_reference(q, k, v, dout, causal, key_mask, 1 / math.sqrt(D) if scale is None else scale)
    case = "%s %s" % ((B, H, Tq, Tk, D), "causal" if causal else "full") + (" masked" if masked else "")
    for path, settings in FORWARD_PATHS.items():
        with monkeypatch.context() as patch:
            for name, value in settings.items():
                patch.setattr(K.attention, name, value)
            with poisoned_outputs():
                out, lse = K.attention_forward(q, k, v, causal=causal, key_mask=key_mask, scale=scale)
                dq, dk, dv = K.attention_backward(q, k, v, out, lse, dout, causal=causal, key_mask=key_mask,
                                                  scale=scale)
        for name, got, want in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, dq, dk, dv), ref):
            what = "attention %s via %s, %s" % (name, path, case)
            assert got.dtype == np.float32 and got.shape == want.shape, "%s %s" % (what, SEED_NOTE)
            assert not np.isnan(got).any(), "%s has NaN (unwritten or invalid) %s" % (what, SEED_NOTE)
            if name == "lse":
                assert np.array_equal(np.isneginf(got), np.isneginf(want)), \
                    "%s: -inf rows differ %s" % (what, SEED_NOTE)
                got, want = np.where(np.isneginf(got), 0, got), np.where(np.isneginf(want), 0, want)
            _close(got, want, 2e-5, 1e-4, what)
        blind = np.isneginf(lse)  # rows with no visible key: defined as zero output and zero gradient
        if blind.any():
            assert (out[blind] == 0).all() and (dq[blind] == 0).all(), \
                "rows with no visible key must give zero output and gradient, %s %s" % (case, SEED_NOTE)


def test_attention_all_true_mask_equals_no_mask():
    rng = _rng(1)
    q, k, v = (rng.standard_normal((2, 2, 9, 8), dtype=np.float32) for _ in range(3))
    a = K.attention_forward(q, k, v, causal=True)
    b = K.attention_forward(q, k, v, causal=True, key_mask=np.ones((2, 9), bool))
    np.testing.assert_array_equal(a[0], b[0], err_msg=SEED_NOTE)
    np.testing.assert_array_equal(a[1], b[1], err_msg=SEED_NOTE)


def test_attention_rejects_bad_inputs():
    q = np.zeros((1, 2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        K.attention_forward(q.astype(np.float64), q, q)
    with pytest.raises(ValueError, match="k has shape"):
        K.attention_forward(q, np.zeros((1, 2, 3, 5), np.float32), np.zeros((1, 2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="key_mask"):
        K.attention_forward(q, q, q, key_mask=np.ones((1, 3), np.int64))
    with pytest.raises(ValueError, match="lse"):
        K.attention_backward(q, q, q, q, np.zeros((1, 2, 4), np.float32), q)
    with pytest.raises(ValueError, match="at least 1"):
        empty = np.zeros((1, 2, 3, 0), np.float32)
        K.attention_forward(empty, empty, empty)


# ---- GELU -------------------------------------------------------------------------------------------
def _gelu_sweep():
    x = np.concatenate([np.linspace(-12, 12, 48_001), _rng(2).uniform(-12, 12, 20_000),
                        _rng(3).standard_normal(10_000) * 3]).astype(np.float32)
    return x


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_accuracy_over_float32_range(approximate):
    x = _gelu_sweep()
    with poisoned_outputs():
        y = K.gelu_forward(x, approximate)
        dx = K.gelu_backward(x, np.ones_like(x), approximate)
    want, dwant, dscale, u = gelu_reference(x, approximate)
    allowed = 1e-6 if u is None else 1e-6 + 2.5e-7 * np.abs(2 * u)
    # results below ~1e-35 are flushed to zero by design (gelu.py); compare only above that
    live = np.abs(want) > 1e-35
    rel = np.abs(y[live] - want[live]) / np.abs(want[live])
    assert (rel <= np.broadcast_to(allowed, x.shape)[live]).all(), \
        "gelu %s forward: max rel err %.3g at x=%r %s" % (approximate, rel.max(), x[live][rel.argmax()], SEED_NOTE)
    assert (np.abs(y[~live]) <= 1e-35).all(), "gelu %s: tiny results not flushed %s" % (approximate, SEED_NOTE)
    live = dscale > 1e-35
    rel = np.abs(dx[live] - dwant[live]) / dscale[live]
    assert (rel <= np.broadcast_to(allowed, x.shape)[live]).all(), \
        "gelu %s backward: max rel err %.3g at x=%r %s" % (approximate, rel.max(), x[live][rel.argmax()], SEED_NOTE)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_special_values(approximate):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3e38, -3e38, 1e-30, -1e-30], np.float32)
    y = K.gelu_forward(x, approximate)
    dx = K.gelu_backward(x, np.ones_like(x), approximate)
    np.testing.assert_array_equal(y[:9], np.array([np.inf, 0, np.nan, 0, 0, 1e30, 0, 3e38, 0], np.float32))
    np.testing.assert_allclose(y[9:], x[9:] * 0.5, rtol=1e-6)  # gelu(x) = x/2 near 0
    np.testing.assert_array_equal(dx[:9], np.array([1, 0, np.nan, 0.5, 0.5, 1, 0, 1, 0], np.float32))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_any_shape_and_upstream_gradient(approximate):
    rng = _rng(4)
    shape = tuple(int(n) for n in rng.integers(1, 9, size=3))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    x_strided = np.asfortranarray(x)  # non-contiguous input is accepted (copied)
    with poisoned_outputs():
        y = K.gelu_forward(x_strided, approximate)
        dx = K.gelu_backward(x, dy, approximate)
    want, dwant, _, _ = gelu_reference(x, approximate)
    _close(y, want, 1e-6, 2e-6, "gelu %s forward %s" % (approximate, shape))
    _close(dx, dy * dwant, 1e-6, 2e-6, "gelu %s backward %s" % (approximate, shape))


def test_gelu_rejects_bad_inputs():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="approximate"):
        K.gelu_forward(x, "sigmoid")
    with pytest.raises(TypeError, match="float32"):
        K.gelu_forward(x.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        K.gelu_backward(x, np.zeros(4, np.float32))


# ---- LayerNorm --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 17), (1, 384), (37, 1), (5, 64), (4, 100, 384)])
def test_layer_norm_matches_reference(shape):
    rng = _rng(5, *shape)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    weight = rng.standard_normal(shape[-1]).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    with poisoned_outputs():
        y, mean, rstd = K.layer_norm_forward(x, weight, bias, 1e-5)
        dx, dweight, dbias = K.layer_norm_backward(dy, x, weight, mean, rstd)
    ref = layer_norm_reference(x, weight, bias, 1e-5, dy)
    for name, got, want in zip(("y", "mean", "rstd", "dx"), (y, mean, rstd, dx), ref[:4]):
        assert got.shape == want.shape and got.dtype == np.float32, "%s %s" % (name, SEED_NOTE)
        _close(got, want, 1e-5, 1e-4, "layer_norm %s %s" % (name, shape))
    _close(dweight, ref[4], 1e-4, 1e-4, "layer_norm dweight %s" % (shape,))
    _close(dbias, ref[5], 1e-4, 1e-4, "layer_norm dbias %s" % (shape,))


def test_layer_norm_large_offset_keeps_variance():
    rng = _rng(6)
    x = (1000.0 + rng.standard_normal((8, 256))).astype(np.float32)  # |mean| >> std
    ones, zeros = np.ones(256, np.float32), np.zeros(256, np.float32)
    y, mean, rstd = K.layer_norm_forward(x, ones, zeros)
    ref = layer_norm_reference(x, ones, zeros, 1e-5, np.zeros_like(x))
    _close(y, ref[0], 2e-4, 1e-3, "layer_norm with offset 1000")


@pytest.mark.parametrize("scale", [1e20, 1e30])
def test_layer_norm_huge_scale_rows_are_normalised_not_nan(scale):
    """float32 squares of 1e20 overflow; such rows are redone in float64 (layer_norm.py), so the
    kernel gives the normalised row like the reference, forward and backward; normal rows beside
    them are unaffected."""
    rng = _rng(9)
    x = rng.standard_normal((4, 48)).astype(np.float32)
    x[1:3] *= np.float32(scale)
    weight, bias = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    with poisoned_outputs():
        y, mean, rstd = K.layer_norm_forward(x, weight, bias, 1e-5)
        dx, dweight, dbias = K.layer_norm_backward(dy, x, weight, mean, rstd)
    ref = layer_norm_reference(x, weight, bias, 1e-5, dy)
    for name, got, want in zip(("y", "mean", "rstd"), (y, mean, rstd), ref[:3]):
        _close(got, want, 1e-6 * np.abs(want).max(), 1e-4, "layer_norm %s at scale %g" % (name, scale))
    _close(dx, ref[3], 1e-5 * np.abs(ref[3]).max(), 1e-4, "layer_norm dx at scale %g" % scale)
    _close(dweight, ref[4], 1e-4, 1e-4, "layer_norm dweight at scale %g" % scale)
    _close(dbias, ref[5], 1e-4, 1e-4, "layer_norm dbias at scale %g" % scale)


def test_layer_norm_rejects_bad_inputs():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="weight"):
        K.layer_norm_forward(x, np.ones(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="float32"):
        K.layer_norm_forward(x.astype(np.float64), np.ones(4, np.float32), np.zeros(4, np.float32))


# ---- cross-entropy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("N,V,spread", [(64, 65, 1.0), (33, 1000, 5.0), (1, 1, 1.0), (17, 8000, 30.0)])
def test_cross_entropy_matches_reference(N, V, spread):
    rng = _rng(7, N, V)
    logits = (rng.standard_normal((N, V)) * spread).astype(np.float32)
    targets = rng.integers(0, V, N)
    targets[rng.random(N) < 0.3] = -100
    grad_scale = 1.0 / max(int((targets != -100).sum()), 1)
    with poisoned_outputs():
        loss_sum, n_counted, lse = K.cross_entropy_forward(logits, targets)
        dlogits = K.cross_entropy_backward(logits, targets, lse, grad_scale)
    want_sum, want_n, want_lse, want_grad = cross_entropy_reference(logits, targets, -100, grad_scale)
    assert n_counted == want_n and isinstance(loss_sum, float), SEED_NOTE
    _close(loss_sum, want_sum, 1e-6 * N, 1e-6, "cross_entropy loss_sum (%d, %d)" % (N, V))
    _close(lse, want_lse, 1e-6, 1e-5, "cross_entropy lse (%d, %d)" % (N, V))
    _close(dlogits, want_grad, 1e-6, 1e-5, "cross_entropy dlogits (%d, %d)" % (N, V))


def test_cross_entropy_all_ignored_and_custom_ignore_index():
    logits = _rng(8).standard_normal((4, 5)).astype(np.float32)
    targets = np.full(4, 7)
    loss_sum, n, lse = K.cross_entropy_forward(logits, targets, ignore_index=7)
    assert (loss_sum, n) == (0.0, 0), SEED_NOTE
    assert (K.cross_entropy_backward(logits, targets, lse, 1.0, ignore_index=7) == 0).all()


def test_cross_entropy_rejects_out_of_range_targets():
    logits = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="target 5 at row 1"):
        K.cross_entropy_forward(logits, np.array([0, 5, -100]))
    with pytest.raises(ValueError, match="target -1 at row 0"):
        K.cross_entropy_backward(logits, np.array([-1, 0, 0]), np.zeros(3, np.float32), 1.0)
    with pytest.raises(TypeError, match="integer"):
        K.cross_entropy_forward(logits, np.zeros(3, np.float32))
