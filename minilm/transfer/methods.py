"""The six ways to use a pretrained encoder for a classification task, as one switch.

    method     trains                                   trainable numbers (MiniLM-L6, 10 classes)
    zeroshot   nothing: the head is the class descriptions' embeddings          0
    features   the head, on features computed once by the frozen encoder        3,850
    partial    the last k blocks + the head                                      k x 1.8 M
    full       every weight + the head                                           22.7 M
    prompt     n soft-prompt vectors + the head (frozen encoder)                 n x 384 + 3,850
    lora       rank-r adapters on attention's query and value + the head          r x 18,432 + 3,850

`build_classifier(method, encoder, num_classes, config)` wraps the encoder and sets exactly
which parameters have requires_grad; everything else is frozen (its gradient is never even
computed: each op skips the gradients of inputs that do not require one).
"""
from minilm.transfer.classifier import SequenceClassifier
from minilm.transfer.lora import add_lora

METHODS = ("zeroshot", "features", "partial", "full", "prompt", "lora")


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"unknown transfer method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def build_classifier(method, encoder, num_classes, config, generator=None):
    """A SequenceClassifier around `encoder` with only `method`'s parameters trainable.

    config: a FinetuneConfig (dropout, layers for partial, prompt_tokens, lora_rank/alpha/targets).
    The encoder is changed in place (frozen, or given LoRA adapters).
    """
    check_method(method)
    prompt_tokens = config.prompt_tokens if method == "prompt" else 0
    if method == "lora":
        add_lora(encoder, config.lora_rank, config.lora_alpha, config.lora_targets, generator)
    model = SequenceClassifier(encoder, num_classes, dropout=config.dropout, prompt_tokens=prompt_tokens,
                               generator=generator)
    if method == "full":
        model.requires_grad_(True)
    elif method == "partial":
        n_blocks = len(encoder.blocks)
        if not 1 <= config.layers <= n_blocks:
            raise ValueError(f"partial fine-tuning: layers must be in 1..{n_blocks} for this "
                             f"{n_blocks}-block encoder, got {config.layers}")
        encoder.requires_grad_(False)
        for block in list(encoder.blocks)[n_blocks - config.layers:]:
            block.requires_grad_(True)
    elif method == "lora":
        for module in encoder.modules():
            for name, p in module._parameters.items():
                p.requires_grad = name.startswith("lora_")
    elif method == "zeroshot":                                                  # the head is written, not trained
        model.requires_grad_(False)
    else:                                                                        # features, prompt
        encoder.requires_grad_(False)
    return model
