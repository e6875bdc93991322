"""Time the CUDA kernels of minilm.kernels.cuda against plain CuPy array code.

    python benchmarks/bench_cuda.py [--repeats 20] [--config small|baby]

For every op, the hand-written kernel and a reference written with CuPy arrays (matmuls on
cuBLAS, softmax and element-wise chains as CuPy expressions) run on the same inputs; the
table shows the median GPU time of each (CUDA events), their ratio, and the largest absolute
difference between the two outputs (a timing of a wrong answer is worthless).

Prints "no GPU" and exits 0 when CuPy or a CUDA device is missing.
"""
import argparse
import math
import statistics
import sys

import numpy as np

CONFIGS = {
    # (B, H, T, D) for attention; the model width is H * D, the MLP width 4 H D
    "baby": dict(b=12, h=4, t=64, d=32, vocab=65),
    "small": dict(b=16, h=6, t=256, d=64, vocab=50257),
}


def gpu_time_ms(cupy, fn, repeats, warmup=3):
    """Median milliseconds of fn() on the GPU, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def references(cupy):
    """CuPy-array versions of every op: what one writes without a custom kernel."""
    from cupyx.scipy.special import erf

    def attention_fwd(q, k, v, causal):
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = (q @ k.swapaxes(-1, -2)) * scale                        # (B, H, T, T), cuBLAS
        if causal:
            t = s.shape[-1]
            s = cupy.where(cupy.tri(t, dtype=bool), s, -cupy.inf)
        s = s - s.max(axis=-1, keepdims=True)
        p = cupy.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        return p @ v, p

    def attention_bwd(q, k, v, p, dout):
        scale = 1.0 / math.sqrt(q.shape[-1])
        dv = p.swapaxes(-1, -2) @ dout
        dp = dout @ v.swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        return (ds @ k) * scale, (ds.swapaxes(-1, -2) @ q) * scale, dv

    def gelu_fwd(x, approximate):
        if approximate == "tanh":
            return 0.5 * x * (1 + cupy.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + erf(x * 0.7071067811865476))

    def gelu_bwd(x, dy, approximate):
        if approximate == "tanh":
            c = 0.7978845608
            th = cupy.tanh(c * (x + 0.044715 * x ** 3))
            return dy * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x))
        cdf = 0.5 * (1 + erf(x * 0.7071067811865476))
        return dy * (cdf + x * cupy.exp(-0.5 * x * x) * 0.3989422804014327)

    def layer_norm_bwd(dy, x, w, eps=1e-5):
        mean = x.mean(axis=-1, keepdims=True)
        rstd = 1.0 / cupy.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
        xhat = (x - mean) * rstd
        g = dy * w
        dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
        rows = tuple(range(x.ndim - 1))
        return dx, (dy * xhat).sum(axis=rows), dy.sum(axis=rows)

    def layer_norm_fwd(x, w, b, eps=1e-5):
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / cupy.sqrt(var + eps) * w + b

    def cross_entropy_fwd(logits, targets):
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + cupy.log(cupy.exp(logits - m).sum(axis=1))
        return (lse - logits[cupy.arange(logits.shape[0]), targets]).sum(), lse

    def cross_entropy_bwd(logits, targets, lse, scale):
        g = cupy.exp(logits - lse[:, None])
        g[cupy.arange(logits.shape[0]), targets] -= 1
        return g * scale

    return dict(attention_fwd=attention_fwd, attention_bwd=attention_bwd, gelu_fwd=gelu_fwd,
                gelu_bwd=gelu_bwd, layer_norm_fwd=layer_norm_fwd, layer_norm_bwd=layer_norm_bwd,
                cross_entropy_fwd=cross_entropy_fwd, cross_entropy_bwd=cross_entropy_bwd)


def max_diff(cupy, a, b):
    return float(cupy.abs(cupy.asarray(a, dtype=cupy.float32) - cupy.asarray(b, dtype=cupy.float32)).max())


def run(config, repeats):
    import cupy

    import minilm.kernels.cuda as K

    ref = references(cupy)
    rng = np.random.default_rng(0)
    b, h, t, d, vocab = (config[k] for k in ("b", "h", "t", "d", "vocab"))
    c = h * d

    def randn(*shape):
        return cupy.asarray(rng.standard_normal(shape).astype(np.float32))

    q, k, v, dout = randn(b, h, t, d), randn(b, h, t, d), randn(b, h, t, d), randn(b, h, t, d)
    x_mlp, dy_mlp = randn(b, t, 4 * c), randn(b, t, 4 * c)
    x_ln, dy_ln, w, bias = randn(b, t, c), randn(b, t, c), randn(c), randn(c)
    logits = randn(b * t, vocab)
    targets = cupy.asarray(rng.integers(0, vocab, size=b * t))

    rows = []

    def add(op, shape, ours, theirs, diff):
        t_ours = gpu_time_ms(cupy, ours, repeats)
        t_ref = gpu_time_ms(cupy, theirs, repeats)
        rows.append((op, shape, t_ours, t_ref, t_ref / t_ours, diff))

    for causal in (False, True):
        out, lse = K.attention_forward(q, k, v, causal=causal)
        r_out, p = ref["attention_fwd"](q, k, v, causal)
        add(f"attention fwd{' causal' if causal else ''}", (b, h, t, d),
            lambda: K.attention_forward(q, k, v, causal=causal),
            lambda: ref["attention_fwd"](q, k, v, causal), max_diff(cupy, out, r_out))
        grads = K.attention_backward(q, k, v, out, lse, dout, causal=causal)
        r_grads = ref["attention_bwd"](q, k, v, p, dout)
        add(f"attention bwd{' causal' if causal else ''}", (b, h, t, d),
            lambda: K.attention_backward(q, k, v, out, lse, dout, causal=causal),
            lambda: ref["attention_bwd"](q, k, v, p, dout),
            max(max_diff(cupy, g, r) for g, r in zip(grads, r_grads)))

    for approximate in ("none", "tanh"):
        add(f"gelu fwd {approximate}", x_mlp.shape,
            lambda: K.gelu_forward(x_mlp, approximate),
            lambda: ref["gelu_fwd"](x_mlp, approximate),
            max_diff(cupy, K.gelu_forward(x_mlp, approximate), ref["gelu_fwd"](x_mlp, approximate)))
        add(f"gelu bwd {approximate}", x_mlp.shape,
            lambda: K.gelu_backward(x_mlp, dy_mlp, approximate),
            lambda: ref["gelu_bwd"](x_mlp, dy_mlp, approximate),
            max_diff(cupy, K.gelu_backward(x_mlp, dy_mlp, approximate),
                     ref["gelu_bwd"](x_mlp, dy_mlp, approximate)))

    y, mean, rstd = K.layer_norm_forward(x_ln, w, bias, 1e-5)
    add("layer_norm fwd", x_ln.shape, lambda: K.layer_norm_forward(x_ln, w, bias, 1e-5),
        lambda: ref["layer_norm_fwd"](x_ln, w, bias), max_diff(cupy, y, ref["layer_norm_fwd"](x_ln, w, bias)))
    grads = K.layer_norm_backward(dy_ln, x_ln, w, mean, rstd)
    add("layer_norm bwd", x_ln.shape, lambda: K.layer_norm_backward(dy_ln, x_ln, w, mean, rstd),
        lambda: ref["layer_norm_bwd"](dy_ln, x_ln, w),
        max(max_diff(cupy, g, r) / max(1.0, float(cupy.abs(r).max()))
            for g, r in zip(grads, ref["layer_norm_bwd"](dy_ln, x_ln, w))))

    loss_sum, _, lse = K.cross_entropy_forward(logits, targets)
    r_loss, r_lse = ref["cross_entropy_fwd"](logits, targets)
    add("cross_entropy fwd", logits.shape, lambda: K.cross_entropy_forward(logits, targets),
        lambda: ref["cross_entropy_fwd"](logits, targets), max_diff(cupy, lse, r_lse))
    scale = 1.0 / logits.shape[0]
    add("cross_entropy bwd", logits.shape,
        lambda: K.cross_entropy_backward(logits, targets, lse, scale),
        lambda: ref["cross_entropy_bwd"](logits, targets, lse, scale),
        max_diff(cupy, K.cross_entropy_backward(logits, targets, lse, scale),
                 ref["cross_entropy_bwd"](logits, targets, lse, scale)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import minilm.kernels.cuda as K
    if not K.is_available():
        print("no GPU: CuPy with a CUDA device is needed for this benchmark")
        return 0
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print(f"device: {props['name'].decode()}, config {args.config} {CONFIGS[args.config]}, "
          f"median of {args.repeats} (ms, CUDA events)")
    rows = run(CONFIGS[args.config], args.repeats)
    print(f"{'op':<24} {'shape':<22} {'kernel ms':>10} {'cupy ms':>10} {'speed-up':>9} {'max |diff|':>11}")
    for op, shape, t_ours, t_ref, ratio, diff in rows:
        print(f"{op:<24} {str(shape):<22} {t_ours:>10.3f} {t_ref:>10.3f} {ratio:>8.2f}x {diff:>11.2e}")
    print("cross_entropy fwd includes a device->host sync (the target range check).")
    print("layer_norm bwd: max |diff| relative to the largest gradient (dweight sums all rows).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
