"""`GPTConfig`: the hyperparameters of a GPT, its named sizes, and its cost formulas.

Parameter count (tied embeddings, biases on), with V = vocab_size,
P = block_size, C = n_embd, L = n_layer:

    N_total = V C + P C + L (12 C^2 + 13 C) + 2 C
              |     |        |                  final LayerNorm
              |     |        per block: c_attn 3C^2+3C, c_proj C^2+C, c_fc 4C^2+4C,
              |     |        mlp.c_proj 4C^2+C, two LayerNorms 4C
              |     position table
              token table, shared with the LM head

Without biases (bias=False): L (12 C^2 + 2 C) + C instead of the last two terms.
"Non-embedding" follows nanoGPT: the position table is left out, the token
table is kept because it is also the output layer.

FLOPs per token (Kaplan et al. 2020, PaLM appendix B, nanoGPT's estimate_mfu):
    training (forward + backward) = 6 N + 12 L C T
    forward only                  = 2 N +  4 L C T
with N the non-embedding parameters and T the context length: 2 FLOPs per
multiply-add of every weight, plus the attention scores QK^T and the
weighted sum PV, which grow with T and have no parameters.
"""
from dataclasses import asdict, dataclass, fields

# Named sizes. nano/mini are minGPT's gpt-nano/-mini widths; "baby" is minGPT's
# gpt-micro (nanoGPT's CPU example); small is nanoGPT's Shakespeare-char model; gpt2 is
# OpenAI's 124M GPT-2, the shape for loading its weights.
PRESETS = {
    "nano": dict(n_layer=3, n_head=3, n_embd=48, block_size=32),
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    "mini": dict(n_layer=6, n_head=6, n_embd=192, block_size=128),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}

_ACTIVATIONS = ("gelu_tanh", "gelu")


@dataclass
class GPTConfig:
    """vocab_size: tokens; n_layer blocks of n_head heads over n_embd channels; block_size: context.

    dropout: on the embeddings, the attention probabilities and each residual
    branch (GPT-2's embd_pdrop = attn_pdrop = resid_pdrop). bias: biases in the
    linear layers and LayerNorms. activation: "gelu_tanh" (GPT-2's
    approximation) or "gelu" (exact erf).
    """

    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.1
    bias: bool = True
    layer_norm_epsilon: float = 1e-5
    activation: str = "gelu_tanh"
    initializer_range: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"GPTConfig: activation must be one of {_ACTIVATIONS}, got {self.activation!r}")

    # ----- construction -----------------------------------------------------------------
    @classmethod
    def preset(cls, name, **overrides):
        """A named size (see PRESETS); vocab_size must be given except for "gpt2".

        GPTConfig.preset("baby", vocab_size=tokenizer.vocab_size, dropout=0.0)
        """
        if name not in PRESETS:
            raise ValueError(f"GPTConfig.preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = {**PRESETS[name], **overrides}
        if "vocab_size" not in values:
            raise ValueError(f"GPTConfig.preset({name!r}): pass vocab_size= (it depends on your tokenizer)")
        return cls(**values)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"GPTConfig.from_dict: unknown keys {unknown}")
        return cls(**values)

    def to_dict(self):
        return asdict(self)

    # ----- costs --------------------------------------------------------------------------
    @property
    def head_size(self):
        return self.n_embd // self.n_head

    def num_parameters(self, non_embedding=True):
        """The formula in the module docstring; equals GPT(self).num_parameters(non_embedding)."""
        c, layers = self.n_embd, self.n_layer
        if self.bias:
            body = layers * (12 * c * c + 13 * c) + 2 * c
        else:
            body = layers * (12 * c * c + 2 * c) + c
        total = self.vocab_size * c + body
        return total if non_embedding else total + self.block_size * c

    def flops_per_token(self, seq_len=None, training=True):
        """6N + 12 L C T (training) or 2N + 4 L C T (forward); T defaults to block_size."""
        t = self.block_size if seq_len is None else int(seq_len)
        n = self.num_parameters(non_embedding=True)
        attention = 4 * self.n_layer * self.n_embd * t
        return 3 * (2 * n + attention) if training else 2 * n + attention

    def report(self, name=None):
        """A few lines: the shape, the parameter counts, the memory and the FLOPs per token."""
        total, body = self.num_parameters(False), self.num_parameters(True)
        title = f"GPT {name}" if name else "GPT"
        return (f"{title}: {self.n_layer} layers, {self.n_head} heads, n_embd {self.n_embd}, "
                f"context {self.block_size}, vocab {self.vocab_size}\n"
                f"  parameters: {total:,} total, {body:,} without the position table "
                f"({4 * total / 2 ** 20:.1f} MiB in float32)\n"
                f"  FLOPs per token at context {self.block_size}: "
                f"{self.flops_per_token(training=True):,} training (6N + 12LCT), "
                f"{self.flops_per_token(training=False):,} forward (2N + 4LCT)")
