"""Using a pretrained model: sentence embeddings from all-MiniLM-L6-v2 (more methods to come)."""
from minilm.transfer.encoder import SentenceEncoder, find_installed_minilm, mean_pool

__all__ = ["SentenceEncoder", "find_installed_minilm", "mean_pool"]
