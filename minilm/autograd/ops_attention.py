"""Scaled dot-product attention, the plain NumPy reference (Vaswani et al. 2017, eq. 1).

    S = Q K^T * scale          (B, H, Tq, Tk), scale = 1 / sqrt(D)
    S = S masked to -inf where a query may not look (causal, padding, attn_mask)
    P = softmax(S, axis=-1)
    O = P V                    (B, H, Tq, D)

Backward, with dO given:
    dV = P^T dO
    dP = dO V^T
    dS = P * (dP - rowsum(dP * P))      (the softmax Jacobian-vector product)
    dQ = dS K * scale,   dK = dS^T Q * scale

This version keeps P (Tq x Tk per head) for the backward pass; the fused
kernels in `minilm.kernels` recompute it from a saved log-sum-exp instead.
A query row that may see no key at all (a fully padded row) outputs zeros
and passes no gradient, rather than NaN.
"""
from minilm.autograd.function import Function
from minilm.backend import get_kernel


def build_attention_mask(xp, tq, tk, causal, attn_mask):
    """Combine the causal rule and a boolean mask (True = may attend) into one bool array or None.

    Causal: query i sits at absolute position i + (tk - tq), so it may see keys
    j <= i + (tk - tq). With tq == tk that is the usual lower triangle; with
    tq < tk (decoding with a KV cache) the new queries see the whole past.
    """
    mask = None
    if causal:
        mask = xp.tril(xp.ones((tq, tk), dtype=bool), k=tk - tq)      # (Tq, Tk)
    if attn_mask is not None:
        attn_mask = xp.asarray(attn_mask, dtype=bool)
        mask = attn_mask if mask is None else (mask & attn_mask)
    return mask


def key_padding_view(attn_mask, batch, tk):
    """If attn_mask only says which keys are real, i.e. its shape is (B, 1, 1, Tk), return (B, Tk)."""
    if attn_mask is None:
        return None
    if attn_mask.ndim == 4 and attn_mask.shape[1:3] == (1, 1) and attn_mask.shape[0] in (1, batch) \
            and attn_mask.shape[3] == tk and attn_mask.dtype == bool:
        return attn_mask.reshape(attn_mask.shape[0], tk)
    return False


class ScaledDotProductAttention(Function):
    def forward(self, q, k, v, attn_mask=None, causal=False, scale=None, keep_weights=False):
        xp = self.xp
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise ValueError(f"scaled_dot_product_attention: expected (B, H, T, D) inputs, got "
                             f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
        if q.shape[-1] != k.shape[-1] or k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
            raise ValueError(f"scaled_dot_product_attention: incompatible shapes q {tuple(q.shape)}, "
                             f"k {tuple(k.shape)}, v {tuple(v.shape)}")
        batch, _, tq, d = q.shape
        tk = k.shape[2]
        if causal and tq > tk:
            raise ValueError(f"scaled_dot_product_attention: causal attention needs Tq <= Tk, got {tq} > {tk}")
        self.scale = float(d ** -0.5 if scale is None else scale)
        self.q, self.k, self.v, self.causal = q, k, v, causal

        key_mask = key_padding_view(attn_mask, batch, tk)
        kernel = None if (keep_weights or key_mask is False) else get_kernel("attention_forward", q, k, v)
        self.kernel_backward = get_kernel("attention_backward", q, k, v) if kernel is not None else None
        if kernel is not None:
            if key_mask is not None and key_mask.shape[0] != batch:
                key_mask = xp.broadcast_to(key_mask, (batch, tk))
            self.key_mask = None if key_mask is None else xp.ascontiguousarray(key_mask)
            out, self.lse = kernel(q, k, v, causal=causal, key_mask=self.key_mask, scale=self.scale)
            self.out = out
            return out

        scores = (q @ k.swapaxes(-1, -2)) * self.scale                    # (B, H, Tq, Tk)
        mask = build_attention_mask(xp, tq, tk, causal, attn_mask)
        if mask is not None:
            scores = xp.where(mask, scores, -xp.inf)
        row_max = scores.max(axis=-1, keepdims=True)                       # (B, H, Tq, 1)
        row_max = xp.where(xp.isfinite(row_max), row_max, 0)               # fully masked rows
        p = xp.exp(scores - row_max)
        denom = p.sum(axis=-1, keepdims=True)
        p = p / xp.where(denom > 0, denom, 1)                              # empty rows stay 0
        self.p = p.astype(q.dtype, copy=False)
        out = self.p @ v                                                   # (B, H, Tq, D)
        return (out, self.p) if keep_weights else out

    def backward(self, g):
        if self.kernel_backward is not None:
            dq, dk, dv = self.kernel_backward(self.q, self.k, self.v, self.out, self.lse, g,
                                              causal=self.causal, key_mask=self.key_mask,
                                              scale=self.scale)
            return dq, dk, dv
        p = self.p
        dv = p.swapaxes(-1, -2) @ g                                        # (B, H, Tk, D)
        dp = g @ self.v.swapaxes(-1, -2)                                   # (B, H, Tq, Tk)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        dq = (ds @ self.k) * self.scale
        dk = (ds.swapaxes(-1, -2) @ self.q) * self.scale
        return dq, dk, dv
