"""Write tests/fixtures/seed_model/seed_fixture.npz: the seed's PyTorch model, its weights and outputs.

The oracle is the seed article's TransformerModel (section 4), rebuilt here in
PyTorch exactly as the article defines it: sequence-first
nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout)
stacked num_layers times, an nn.Embedding scaled by sqrt(d_model), the
float32 sinusoidal PositionalEncoding buffer `pe` of shape (5000, 1, d_model),
and the init_weights U(-0.1, 0.1) / zero decoder bias. torch is needed only to
run this script (and the torch half of tests/test_models_seed.py):

    python scripts/make_seed_fixture.py

The .npz holds (all plain NumPy arrays, no pickle):
    state/<name>        every entry of seed_model.state_dict(), as torch.save writes it
    config              [vocab_size, d_model, nhead, num_layers]
    src                 (B, T) int64 token ids, batch-first (the seed itself gets src.T)
    causal_mask         (T, T) float32 0 / -inf, nn.Transformer.generate_square_subsequent_mask(T)
    logits              (B, T, V) eval-mode output without a mask, transposed to batch-first
    logits_causal       (B, T, V) eval-mode output with causal_mask
    torch_version       the version string of the torch that made it
"""
import argparse
import math
import os
import warnings

import numpy as np

CONFIG = dict(vocab_size=50, d_model=16, nhead=4, num_layers=2)   # tiny: the FFN width is fixed at 2048
BATCH, SEQ_LEN, SEED = 3, 7, 1234
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "tests", "fixtures", "seed_model", "seed_fixture.npz")


def build_seed_model(vocab_size, d_model=512, nhead=8, num_layers=6, dropout=0.1, seed=0):
    """The seed's TransformerModel and PositionalEncoding as PyTorch modules (the oracle)."""
    import torch
    from torch import nn

    class PositionalEncoding(nn.Module):
        def __init__(self, d_model, dropout=0.1, max_len=5000):
            super().__init__()
            self.dropout = nn.Dropout(p=dropout)
            pe = torch.zeros(max_len, d_model)
            position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
            div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
            pe[:, 0::2] = torch.sin(position * div_term)
            pe[:, 1::2] = torch.cos(position * div_term)
            self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))        # (max_len, 1, d_model)

        def forward(self, x):                                                  # x: (T, B, C)
            return self.dropout(x + self.pe[:x.size(0), :])

    class TransformerModel(nn.Module):
        def __init__(self, vocab_size, d_model=512, nhead=8, num_layers=6, dropout=0.1):
            super().__init__()
            self.model_type = "Transformer"
            self.pos_encoder = PositionalEncoding(d_model, dropout)
            layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=dropout)
            with warnings.catch_warnings():   # "enable_nested_tensor is True, but ... batch_first" notice
                warnings.simplefilter("ignore", UserWarning)
                self.transformer_encoder = nn.TransformerEncoder(layer, num_layers)
            self.encoder = nn.Embedding(vocab_size, d_model)
            self.d_model = d_model
            self.decoder = nn.Linear(d_model, vocab_size)
            self.init_weights()

        def init_weights(self):
            init_range = 0.1
            self.encoder.weight.data.uniform_(-init_range, init_range)
            self.decoder.bias.data.zero_()
            self.decoder.weight.data.uniform_(-init_range, init_range)

        def forward(self, src, src_mask=None):                                 # src: (T, B)
            src = self.encoder(src) * math.sqrt(self.d_model)
            src = self.pos_encoder(src)
            output = self.transformer_encoder(src, src_mask)
            return self.decoder(output)                                        # (T, B, V)

    torch.manual_seed(seed)
    return TransformerModel(vocab_size, d_model, nhead, num_layers, dropout)


def seed_outputs(model, src, causal):
    """Eval-mode outputs of the seed model for batch-first ids, returned batch-first (B, T, V)."""
    import torch
    model.eval()
    with torch.no_grad():
        ids = torch.as_tensor(np.ascontiguousarray(src.T))                     # (B, T) -> (T, B)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(src.shape[1]) if causal else None
        out = model(ids, mask)                                                 # (T, B, V)
    return out.numpy().transpose(1, 0, 2)                                      # (T, B, V) -> (B, T, V)


def main():
    import torch
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    model = build_seed_model(**CONFIG, seed=SEED)
    src = np.random.default_rng(SEED).integers(0, CONFIG["vocab_size"], size=(BATCH, SEQ_LEN))  # (B, T)
    arrays = {f"state/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    arrays["config"] = np.array([CONFIG[k] for k in ("vocab_size", "d_model", "nhead", "num_layers")])
    arrays["src"] = src.astype(np.int64)
    arrays["causal_mask"] = torch.nn.Transformer.generate_square_subsequent_mask(SEQ_LEN).numpy()
    arrays["logits"] = seed_outputs(model, src, causal=False)
    arrays["logits_causal"] = seed_outputs(model, src, causal=True)
    arrays["torch_version"] = np.array(torch.__version__)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
