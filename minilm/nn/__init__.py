"""Neural-network building blocks (the torch.nn names). `minilm.nn.functional` holds the ops."""
from minilm.nn import functional, masks
from minilm.nn.attention import KVCache, MultiHeadAttention
from minilm.nn.layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU
from minilm.nn.module import Module, ModuleList, Parameter, Sequential
from minilm.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from minilm.nn.transformer_block import FeedForward, TransformerBlock, TransformerDecoderBlock

__all__ = ["functional", "masks", "Module", "ModuleList", "Sequential", "Parameter", "Linear", "Embedding",
           "LayerNorm", "Dropout", "GELU", "ReLU", "Identity", "MultiHeadAttention", "KVCache",
           "FeedForward", "TransformerBlock", "TransformerDecoderBlock", "SinusoidalPositionalEncoding",
           "LearnedPositionalEmbedding", "sinusoidal_table"]
