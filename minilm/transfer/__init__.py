"""Using a pretrained model: sentence embeddings, zero-shot, feature extraction, partial and full
fine-tuning, prompt tuning and LoRA, all on all-MiniLM-L6-v2 (or any BERT folder)."""
from minilm.transfer.classifier import SequenceClassifier, SoftPrompt, count_parameters, masked_mean
from minilm.transfer.encoder import SentenceEncoder, find_installed_minilm, mean_pool
from minilm.transfer.finetune import DEFAULTS, FinetuneConfig, train_classifier
from minilm.transfer.lora import LoRALinear, add_lora, merge_lora
from minilm.transfer.methods import METHODS, build_classifier
from minilm.transfer.run import TransferRun, load_classifier, run_transfer
from minilm.transfer.tasks import Task, load_task

__all__ = ["SentenceEncoder", "find_installed_minilm", "mean_pool", "SequenceClassifier", "SoftPrompt",
           "count_parameters", "masked_mean", "DEFAULTS", "FinetuneConfig", "train_classifier", "LoRALinear",
           "add_lora", "merge_lora", "METHODS", "build_classifier", "TransferRun", "load_classifier",
           "run_transfer", "Task", "load_task"]
