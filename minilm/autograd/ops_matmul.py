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
