"""From logits to the next token: temperature, top-k, top-p (nucleus), sampling.

Every function takes logits of shape (V,) for one sequence or (B, V) for a
batch, and works along the last axis. Filters return a new array in which
the removed tokens have logit -inf (probability exactly 0 after softmax).

    p_i = exp(z_i / T) / sum_j exp(z_j / T)        temperature T > 0

T < 1 sharpens the distribution (T -> 0 approaches argmax), T > 1 flattens it.
Top-k (Fan et al. 2018, "Hierarchical Neural Story Generation") keeps the k
most likely tokens; top-p (Holtzman et al. 2020, "The Curious Case of Neural
Text Degeneration") keeps the smallest set of most likely tokens whose
probabilities add up to at least p. The order in `sample_next_token` is the
usual one (Hugging Face's too): temperature, then top-k, then top-p, then a
draw from the renormalized distribution.

Control (before all of that): ``logit_bias={id: b}`` adds b to a token's logit
(OpenAI's ``logit_bias`` API parameter; Hugging Face's SequenceBiasLogitsProcessor
for one-token sequences), and ``banned_tokens=[id, ...]`` sets logits to -inf, so a
banned token is never chosen, by sampling or by greedy decoding (Hugging Face's
``bad_words_ids`` for one-token words). A bias shifts a token's log-probability
before temperature: with T = 1, p_i becomes p_i e^b / sum_j p_j e^(b_j), so b = +10
multiplies the odds of token i by e^10 ~ 22,000 against any unbiased token, and a
bias of 0 changes nothing (the logits are bit for bit the same).

Ties: both filters keep every token whose logit equals the logit at the cut,
so equal logits are treated equally (no dependence on token order). With ties
at the cut, top-k can keep more than k tokens and top-p more than the
smallest set; without ties (the usual case for float logits) they keep
exactly k tokens / exactly the smallest set.
"""
import numbers

import numpy as np

from minilm.backend import is_cupy


def _as_logits(logits, fn):
    """A NumPy float array of shape (V,) or (B, V); CuPy arrays are copied to the host."""
    if is_cupy(logits):
        logits = logits.get()
    logits = np.asarray(logits)
    if logits.ndim not in (1, 2) or logits.shape[-1] == 0:
        raise ValueError(f"{fn}: logits must have shape (V,) or (B, V) with V >= 1, got {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    return logits


def softmax(logits, axis=-1):
    """Numerically stable softmax: exp(z - max z) / sum exp(z - max z); -inf logits get probability 0."""
    z = np.asarray(logits)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)          # a row of all -inf stays all -inf (-> nan), not nan early
    e = np.exp(z - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def apply_temperature(logits, temperature):
    """logits / temperature, for temperature > 0 (use greedy decoding for temperature 0).

    A very small temperature can overflow large logits to +-inf; `sample_next_token`
    subtracts the row max first, so there they become -inf (probability 0).
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"apply_temperature: temperature must be a number, got {temperature!r}")
    if not temperature > 0:
        raise ValueError(f"apply_temperature: temperature must be > 0, got {temperature!r} "
                         f"(temperature 0 means greedy: use sample_next_token(..., temperature=0))")
    logits = _as_logits(logits, "apply_temperature")
    t = np.asarray(temperature, dtype=logits.dtype)
    if t == 0:                                      # e.g. 1e-50 underflows to 0 in float32
        logits, t = logits.astype(np.float64), np.float64(temperature)
    with np.errstate(over="ignore"):                # a tiny T sends large |logits| to +-inf, as it should
        return logits / t


def top_k_filter(logits, k):
    """Keep the k largest logits of each row, set the rest to -inf (ties at the k-th value all kept).

    k >= V keeps everything.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"top_k_filter: k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"top_k_filter: k must be >= 1, got {k}")
    logits = _as_logits(logits, "top_k_filter")
    V = logits.shape[-1]
    if k >= V:
        return logits.copy()
    kth = np.partition(logits, V - k, axis=-1)[..., V - k:V - k + 1]     # (..., V) -> (..., 1)
    return np.where(logits < kth, -np.inf, logits).astype(logits.dtype, copy=False)


def top_p_filter(logits, p):
    """Nucleus filter: keep the smallest set of most likely tokens with total probability >= p.

    Sort the probabilities in decreasing order and keep token i while the mass
    of the tokens before it is still < p; the most likely token is always
    kept. Tokens tied with the last kept logit are kept too. p = 1 keeps
    everything. The mass is accumulated in float64.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"top_p_filter: p must be a number, got {p!r}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p_filter: p must be in (0, 1], got {p!r}")
    logits = _as_logits(logits, "top_p_filter")
    if p == 1.0:
        return logits.copy()
    sorted_logits = np.ascontiguousarray(np.sort(logits, axis=-1)[..., ::-1])   # (..., V) descending
    weights = np.exp(sorted_logits - sorted_logits[..., :1]).astype(np.float64)  # (..., V) unnormalized
    cum = np.cumsum(weights, axis=-1)                                    # (..., V)
    mass_before = (cum - weights) / cum[..., -1:]                        # (..., V) mass of the better tokens
    n_keep = np.maximum(np.sum(mass_before < p, axis=-1, keepdims=True), 1)   # (..., 1)
    cut = np.take_along_axis(sorted_logits, n_keep - 1, axis=-1)         # (..., 1) smallest kept logit
    return np.where(logits < cut, -np.inf, logits).astype(logits.dtype, copy=False)


def _token_ids(ids, vocab_size, where, what):
    """ids as an int64 array, each in [0, vocab_size); errors name the bad id and the vocabulary size."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{where}: {what} must be token ids (ints), got the text {ids!r}; "
                        f"encode it with the tokenizer first")
    if isinstance(ids, numbers.Integral) and not isinstance(ids, bool):
        ids = [ids]
    ids = list(ids)
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{where}: {what} must be int token ids, got {i!r}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"{where}: token id {int(i)} in {what} is out of range for a vocabulary "
                             f"of {vocab_size} tokens (ids 0..{vocab_size - 1})")
    return np.array(ids, dtype=np.int64)


def logit_controls(vocab_size, banned_tokens=None, logit_bias=None, where="logit_controls"):
    """The (V,) float64 vector that banned_tokens and logit_bias add to the logits, or None for neither.

    logit_bias: a mapping {token id: finite bias}. banned_tokens: token ids (an int is one id);
    a banned token gets -inf, whatever its bias. Raises for an id outside [0, vocab_size), a
    non-finite bias (ban a token with banned_tokens instead of a bias of -inf), and a ban of
    every token (nothing could be chosen).
    """
    if banned_tokens is None and logit_bias is None:
        return None
    add = np.zeros(vocab_size, dtype=np.float64)
    if logit_bias is not None:
        if not hasattr(logit_bias, "items"):
            raise TypeError(f"{where}: logit_bias must be a mapping {{token id: bias}}, "
                            f"got {type(logit_bias).__name__}")
        ids = _token_ids(list(logit_bias), vocab_size, where, "logit_bias")
        for i, b in zip(ids.tolist(), logit_bias.values()):
            if isinstance(b, bool) or not isinstance(b, numbers.Real):
                raise TypeError(f"{where}: logit_bias[{i}] must be a number, got {b!r}")
            if not np.isfinite(b):
                raise ValueError(f"{where}: logit_bias[{i}] = {b!r} is not finite; "
                                 f"to forbid a token, pass it in banned_tokens")
            add[i] = b
    if banned_tokens is not None:
        banned = _token_ids(banned_tokens, vocab_size, where, "banned_tokens")
        add[banned] = -np.inf
        if np.isneginf(add).all():
            raise ValueError(f"{where}: banned_tokens bans all {vocab_size} tokens; no token could be chosen")
    return add


def apply_logit_controls(logits, banned_tokens=None, logit_bias=None):
    """logits (V,) or (B, V) with logit_bias added and banned tokens at -inf (a new array, same dtype).

    The sum is taken in the logits' dtype. A bias so large that a logit overflows
    to +inf (beyond ~3e38 in float32) is an error, not a silent NaN later.
    """
    logits = _as_logits(logits, "apply_logit_controls")
    add = logit_controls(logits.shape[-1], banned_tokens, logit_bias, "apply_logit_controls")
    return logits.copy() if add is None else _add_controls(logits, add, "apply_logit_controls")


def _add_controls(logits, add, where):
    with np.errstate(over="ignore"):
        out = logits + add.astype(logits.dtype)                            # (..., V) + (V,)
    if np.isposinf(out).any():
        tokens = sorted(set(np.nonzero(np.isposinf(out))[-1].tolist()))
        raise ValueError(f"{where}: logit_bias overflows the {logits.dtype} logits of token(s) {tokens[:5]} "
                         f"to +inf; use a smaller bias")
    return out


def _inverse_cdf(weights, r):
    """For each row, the index i with C[i-1] <= r < C[i], C the running sum of weights (B, n).

    A token of weight 0 has C[i] == C[i-1], so it is never returned; if r
    rounded up to (or past) the row total, the last index with weight > 0 is.
    """
    cdf = np.cumsum(weights.astype(np.float64), axis=-1)                  # (B, n)
    k = np.sum(cdf <= r[:, None], axis=-1)                                # (B,)
    past_end = k == weights.shape[-1]                     # only then can k miss a positive weight
    if past_end.any():
        k[past_end] = weights.shape[-1] - 1 - np.argmax(weights[past_end, ::-1] > 0, axis=-1)
    return k


def _draw_from_weights(weights, u, block=1024):
    """Index i of each row drawn with probability weights[i] / sum(weights).

    weights: (B, V), >= 0 with a positive sum in every row; u: (B,) uniform in [0, 1).
    Inverse CDF: r = u * total, then the token whose slice of the running sum
    holds r. A running sum over a 50k vocabulary is a slow sequential loop, so
    above `block` tokens it is done in two levels: block sums (vectorized)
    pick the block that holds r, then a running sum inside that one block
    picks the token.
    """
    B, V = weights.shape
    if V <= block:
        return _inverse_cdf(weights, u * weights.sum(axis=-1, dtype=np.float64))
    nb = -(-V // block)                                                   # ceil(V / block)
    if nb * block != V:
        padded = np.zeros((B, nb * block), dtype=weights.dtype)
        padded[:, :V] = weights                                           # zero weight: never chosen
        weights = padded                                                  # (B, V) -> (B, nb*block)
    blocks = weights.reshape(B, nb, block)                                # (B, nb*block) -> (B, nb, block)
    block_sums = blocks.sum(axis=-1, dtype=np.float64)                    # (B, nb, block) -> (B, nb)
    r = u * block_sums.sum(axis=-1)                                       # (B,)
    j = _inverse_cdf(block_sums, r)                                       # (B,) the block holding r
    rows = np.arange(B)
    r_in = r - (np.cumsum(block_sums, axis=-1) - block_sums)[rows, j]     # (B,) offset inside block j
    return j * block + _inverse_cdf(blocks[rows, j], r_in)                # (B, block) -> (B,) token ids


def sample_next_token(logits, rng, *, temperature=1.0, top_k=None, top_p=None, greedy=False,
                      banned_tokens=None, logit_bias=None):
    """Choose the next token from logits (V,) -> int, or (B, V) -> int64 array of shape (B,).

    logit_bias ({id: bias}) and banned_tokens (ids) adjust the logits first (see
    logit_controls); they apply to greedy decoding too.
    greedy=True or temperature == 0: the argmax (first index among ties); rng is not used.
    Otherwise: divide by temperature, apply top_k / top_p if given, take the
    softmax and draw one token per row by inverting the cumulative
    distribution (accumulated in float64) with one uniform number from `rng`
    (a numpy.random.Generator), so the same seed gives the same tokens.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"sample_next_token: rng must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(rng).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"sample_next_token: temperature must be a number, got {temperature!r}")
    if not temperature >= 0:
        raise ValueError(f"sample_next_token: temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"sample_next_token: top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"sample_next_token: top_p must be in (0, 1] or None, got {top_p!r}")
    logits = _as_logits(logits, "sample_next_token")
    if not np.isfinite(logits).all():
        if np.isnan(logits).any():
            raise ValueError(f"sample_next_token: logits of shape {logits.shape} contain NaN")
        if np.isposinf(logits).any():
            raise ValueError(f"sample_next_token: logits of shape {logits.shape} contain +inf")
        if np.isneginf(logits).all(axis=-1).any():
            raise ValueError(f"sample_next_token: a row of logits (shape {logits.shape}) is all -inf; "
                             f"no token can be chosen")
    add = logit_controls(logits.shape[-1], banned_tokens, logit_bias, "sample_next_token")
    if add is not None:
        logits = _add_controls(logits, add, "sample_next_token")
        if np.isneginf(logits).all(axis=-1).any():
            raise ValueError(f"sample_next_token: every token the model allows in a row (logits of shape "
                             f"{logits.shape}) is banned or biased down to -inf; no token can be chosen")
    single = logits.ndim == 1
    rows = logits.reshape(1, -1) if single else logits                  # (V,) -> (1, V)

    if greedy or temperature == 0:
        tokens = np.argmax(rows, axis=-1)                                 # (B, V) -> (B,)
    else:
        # shift before dividing: (z - max z) / T <= 0, so a tiny T gives -inf, never inf - inf = nan
        z = rows - rows.max(axis=-1, keepdims=True)                        # (B, V), max 0 per row
        if temperature != 1:
            z = apply_temperature(z, temperature)
        if top_k is not None:
            z = top_k_filter(z, top_k)
        if top_p is not None:
            z = top_p_filter(z, top_p)
        # unnormalized softmax (the row max is 0 and always survives the filters):
        # exp in the logits' dtype, sums in float64
        weights = np.exp(z)                                                # (B, V)
        tokens = _draw_from_weights(weights, rng.random(rows.shape[0]))   # (B, V) -> (B,)
    tokens = tokens.astype(np.int64, copy=False)
    return int(tokens[0]) if single else tokens
