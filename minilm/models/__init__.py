"""The models: the seed's TransformerModel, GPT (GPT-2's shape), BERT (Hugging Face's names), the
encoder-decoder Seq2SeqTransformer, and the Vision Transformer (ViTClassifier, ImageToText).

    from minilm.models import GPT, GPTConfig
    model = GPT(GPTConfig.preset("baby", vocab_size=65))
    logits, loss = model(idx, targets)
"""
from minilm.models.bert import BertForMaskedLM, BertModel, BertModelOutput
from minilm.models.bert_config import BertConfig
from minilm.models.gpt import GPT
from minilm.models.hf import load_hf_gpt2, save_hf_gpt2
from minilm.models.gpt_config import GPTConfig
from minilm.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from minilm.models.transformer import TransformerModel, generate_square_subsequent_mask
from minilm.models.vit import ImageEncoder, ImageToText, PatchEmbedding, ViTClassifier, ViTConfig

__all__ = ["TransformerModel", "generate_square_subsequent_mask", "GPT", "GPTConfig", "load_hf_gpt2",
           "save_hf_gpt2", "BertConfig", "BertModel", "BertModelOutput", "BertForMaskedLM",
           "Seq2SeqConfig", "Seq2SeqTransformer", "PatchEmbedding", "ViTConfig", "ViTClassifier",
           "ImageEncoder", "ImageToText"]
