"""Matrix multiplication, batched and broadcasting like `numpy.matmul`.

C = A @ B  =>  dA = dC @ B^T,  dB = A^T @ dC  (on the last two axes), then
summed over any batch axes that were broadcast.
"""
import numpy as np

from minilm.autograd.function import Function, unbroadcast


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
        if k_a != k_b:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: "
                             f"{k_a} (last dim of the first) != {k_b} (dim -2 of the second)")
        self.a, self.b = a, b
        try:
            return a @ b
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {tuple(a.shape)} and {tuple(b.shape)} "
                             f"do not broadcast") from None

    def backward(self, g):
        a, b = self.a, self.b
        # Promote 1-D operands to matrices so one formula covers every case.
        a2 = a[None, :] if a.ndim == 1 else a          # (K,) -> (1, K)
        b2 = b[:, None] if b.ndim == 1 else b          # (K,) -> (K, 1)
        batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
        g2 = g.reshape(batch + (a2.shape[-2], b2.shape[-1]))              # (..., M, N)
        ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape)              # (..., M, K)
        gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape)              # (..., K, N)
        return ga.reshape(a.shape), gb.reshape(b.shape)


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,): a Linear layer as one 2-D matrix product.

    All leading axes are one batch of N = prod(...) rows, so the forward is a
    single (N, in) @ (in, out) GEMM instead of a batched matmul, and so is
    each gradient (g is dL/dy flattened to (N, out)):
        dx = g W            (N, out) @ (out, in)
        dW = g^T x          (out, N) @ (N, in): one GEMM, not one per batch element then a sum
        db = sum over rows of g
    """

    def forward(self, x, weight, bias=None):
        if weight.ndim != 2 or x.shape[-1] != weight.shape[1] or (bias is not None and bias.shape != weight.shape[:1]):
            raise ValueError(f"linear: input {tuple(x.shape)}, weight {tuple(weight.shape)} and bias "
                             f"{None if bias is None else tuple(bias.shape)} do not fit "
                             f"(expected (..., in), (out, in), (out,))")
        self.x2 = x.reshape(-1, x.shape[-1])                             # (..., in) -> (N, in)
        self.x_shape, self.weight, self.has_bias = x.shape, weight, bias is not None
        out = self.x2 @ weight.T                                         # (N, out)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        g2 = g.reshape(-1, g.shape[-1])                                  # (..., out) -> (N, out)
        needs_x, needs_w, needs_b = self.needs_grad
        dx = (g2 @ self.weight).reshape(self.x_shape) if needs_x else None
        dw = g2.T @ self.x2 if needs_w else None
        db = g2.sum(axis=0) if self.has_bias and needs_b else None
        return dx, dw, db
