"""Fused ops: the same functions as the reference ops, computed by fast kernels.

Each class here is the twin of a reference op (ops_nn, ops_elementwise, and
the attention composed in nn.functional), but its forward and backward call
two kernels from `minilm.kernels` (Numba on CPU, CUDA on GPU) instead of
NumPy formulas. The kernels are passed in by `minilm.nn.functional`, which is
the only place that decides between reference and fused; these classes do no
deciding of their own. What each one saves for backward is what its kernel
needs, usually less than the reference keeps:

    FusedAttention     saves q, k, v, the output and the row log-sum-exp (B, H, Tq),
                       not the (B, H, Tq, Tk) probabilities: backward recomputes them
    FusedGELU          saves x; the kernel recomputes GELU'(x)
    FusedLayerNorm     saves x and the per-row mean and 1/std
    FusedCrossEntropy  saves the logits and the row log-sum-exp; the (N, V)
                       log-probabilities are never stored

The kernels compute the same function as the reference (tests/test_kernels_cpu.py
and tests/test_backend_parity.py check it on random inputs, forward and backward).
"""
from minilm.autograd.function import Function
from minilm.autograd.ops_nn import check_layer_norm_params, counted_targets


class FusedAttention(Function):
    """softmax(q k^T * scale, masked) v, in one kernel (FlashAttention-style: never stores P).

    Masks are the two a kernel can apply while it streams over keys: causal,
    and key padding (key_mask (B, Tk), True = a real key).
    """

    def forward(self, q, k, v, key_mask, causal, scale, kernels):
        self.kernel_backward = kernels[1]
        self.q, self.k, self.v, self.key_mask, self.causal, self.scale = q, k, v, key_mask, causal, scale
        self.out, self.lse = kernels[0](q, k, v, causal=causal, key_mask=key_mask, scale=scale)
        return self.out

    def backward(self, g):
        dq, dk, dv = self.kernel_backward(self.q, self.k, self.v, self.out, self.lse, g, causal=self.causal,
                                          key_mask=self.key_mask, scale=self.scale)
        return dq, dk, dv


class FusedGELU(Function):
    def forward(self, x, approximate, kernels):
        self.x, self.approximate, self.kernel_backward = x, approximate, kernels[1]
        return kernels[0](x, approximate)

    def backward(self, g):
        return (self.kernel_backward(self.x, g, self.approximate),)


class FusedLayerNorm(Function):
    def forward(self, x, weight, bias, eps, kernels):
        check_layer_norm_params(x, weight, bias)
        self.kernel_backward = kernels[1]
        y, self.mean, self.rstd = kernels[0](x, weight, bias, eps)
        self.x, self.weight = x, weight
        return y

    def backward(self, g):
        return self.kernel_backward(g, self.x, self.weight, self.mean, self.rstd)


class FusedCrossEntropy(Function):
    def forward(self, logits, targets, ignore_index, kernels):
        self.n_counted = int(counted_targets(logits, targets, ignore_index).sum())
        self.kernel_backward = kernels[1]
        loss_sum, _, self.lse = kernels[0](logits, targets, ignore_index=ignore_index)
        self.logits, self.targets, self.ignore_index = logits, targets, ignore_index
        return self.xp.asarray(loss_sum / max(self.n_counted, 1), dtype=logits.dtype)

    def backward(self, g):
        scale = float(g) / max(self.n_counted, 1)
        dlogits = self.kernel_backward(self.logits, self.targets, self.lse, scale,
                                       ignore_index=self.ignore_index)
        return dlogits, None
