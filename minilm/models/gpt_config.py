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

# Named sizes. nano/micro/mini are minGPT's gpt-nano/-micro/-mini widths; "baby" is
# our benchmark's name for micro; small is nanoGPT's Shakespeare-char model; gpt2 is
# OpenAI's 124M GPT-2, the shape for loading its weights.
PRESETS = {
    "nano": dict(n_layer=3, n_head=3, n_embd=48, block_size=32),
    "micro": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
    "mini": dict(n_layer=6, n_head=6, n_embd=192, block_size=128),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}

_ACTIVATIONS = ("gelu_tanh", "gelu")
# Hugging Face's activation_function names -> ours.
_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                   "gelu": "gelu"}


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

        GPTConfig.preset("micro", vocab_size=tokenizer.vocab_size, dropout=0.0)
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

    @classmethod
    def from_hf_config(cls, hf):
        """Read a Hugging Face GPT-2 config.json dict (n_layer, n_head, n_embd, n_positions, ...)."""
        missing = [k for k in ("vocab_size", "n_layer", "n_head", "n_embd") if k not in hf]
        if missing:
            raise KeyError(f"GPTConfig.from_hf_config: config.json lacks {missing}")
        act = hf.get("activation_function", "gelu_new")
        if act not in _HF_ACTIVATIONS:
            raise ValueError(f"GPTConfig.from_hf_config: activation_function {act!r} is not supported "
                             f"(known: {sorted(_HF_ACTIVATIONS)})")
        if hf.get("tie_word_embeddings", True) is not True:
            raise ValueError("GPTConfig.from_hf_config: tie_word_embeddings=False; minilm's GPT always ties "
                             "the LM head to the token embedding")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if hf.get(flag, False):
                raise ValueError(f"GPTConfig.from_hf_config: {flag}=True is not supported")
        if hf.get("scale_attn_weights", True) is not True:
            raise ValueError("GPTConfig.from_hf_config: scale_attn_weights=False is not supported")
        return cls(vocab_size=int(hf["vocab_size"]), n_layer=int(hf["n_layer"]), n_head=int(hf["n_head"]),
                   n_embd=int(hf["n_embd"]), block_size=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
                   dropout=float(hf.get("resid_pdrop", 0.1)),
                   layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
                   activation=_HF_ACTIVATIONS[act], initializer_range=float(hf.get("initializer_range", 0.02)))

    def to_hf_config(self):
        """A Hugging Face GPT2Config-style dict, for writing config.json next to model.safetensors."""
        if not self.bias:
            raise ValueError("GPTConfig.to_hf_config: Hugging Face GPT-2 has no bias=False variant")
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "vocab_size": self.vocab_size, "n_layer": self.n_layer, "n_head": self.n_head,
                "n_embd": self.n_embd, "n_positions": self.block_size, "n_ctx": self.block_size,
                "n_inner": None, "resid_pdrop": self.dropout, "embd_pdrop": self.dropout,
                "attn_pdrop": self.dropout, "layer_norm_epsilon": self.layer_norm_epsilon,
                "activation_function": "gelu_new" if self.activation == "gelu_tanh" else "gelu",
                "initializer_range": self.initializer_range, "tie_word_embeddings": True}

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
