"""Checkpoint exchange with Hugging Face: GPT-2 and BERT-family folders (config.json + model.safetensors).

minilm's models are built from one TransformerBlock, so their parameter names
are minilm's own (blocks.0.self_attn.in_proj.weight, ...). Hugging Face's
models nest differently and name things their way. This module is the
dictionary between the two; the model files never see Hugging Face's names.

GPT-2 (GPT2LMHeadModel)                       minilm GPT
    transformer.wte / wpe / ln_f                  wte / wpe / ln_f
    transformer.h.N.ln_1, ln_2                    blocks.N.norm1, norm2
    transformer.h.N.attn.c_attn  (in, out)        blocks.N.self_attn.in_proj  (out, in): transposed
    transformer.h.N.attn.c_proj  (in, out)        blocks.N.self_attn.out_proj (out, in): transposed
    transformer.h.N.mlp.c_fc / c_proj (in, out)   blocks.N.ff.linear1 / linear2 (out, in): transposed
    lm_head.weight                                the tied wte: checked equal, dropped
GPT-2 stores its projections as `Conv1D`, a Linear whose weight is kept as
(in, out) (OpenAI's TensorFlow code used 1x1 convolutions); minilm's Linear
stores (out, in) like torch.nn.Linear, hence the transposes.

BERT (BertModel / BertForMaskedLM)            minilm BertModel / BertForMaskedLM
    embeddings.LayerNorm                          embeddings.norm
    encoder.layer.N.attention.self.query/key/value   blocks.N.self_attn.in_proj (stacked q; k; v)
    encoder.layer.N.attention.output.dense        blocks.N.self_attn.out_proj
    encoder.layer.N.attention.output.LayerNorm    blocks.N.norm1
    encoder.layer.N.intermediate.dense            blocks.N.ff.linear1
    encoder.layer.N.output.dense                  blocks.N.ff.linear2
    encoder.layer.N.output.LayerNorm              blocks.N.norm2
    pooler.dense                                  pooler
    cls.predictions.transform.dense / LayerNorm   transform / transform_norm
    cls.predictions.bias                          bias
    cls.predictions.decoder.weight / .bias        the tied word table / bias: checked equal, dropped

Both directions: ``load_hf_gpt2`` / ``BertModel.from_pretrained`` read such a folder,
``save_hf_gpt2`` / ``save_hf_bert`` (or ``save_hf`` for either) write one that
Hugging Face's GPT2LMHeadModel / BertModel / BertForMaskedLM load with
``from_pretrained`` (``minilm export`` does it for a run folder). A setting that
Hugging Face's config cannot say (GPT with bias=False) is refused, never dropped.
"""
import json
import os
import re
import warnings

import numpy as np

from minilm.io.atomic import atomic_write_text
from minilm.io.safetensors import load_file, save_file
from minilm.models.bert_config import BertConfig
from minilm.models.gpt_config import GPTConfig


def read_folder(folder, where):
    """(config.json as a dict, model.safetensors as {name: array}); FileNotFoundError naming the file."""
    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: {path} does not exist")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    return config, load_file(weights_path)


def write_folder(folder, config, state):
    """config.json + model.safetensors ({"format": "pt"} metadata, as transformers writes), each file atomic."""
    os.makedirs(folder, exist_ok=True)
    atomic_write_text(os.path.join(folder, "config.json"), json.dumps(config, indent=2) + "\n")
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def load_into(model, state, where):
    """model.load_state_dict(state) with errors that name the checkpoint; returns the model in eval mode."""
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from None
    return model.eval()


def pop_tied_copy(state, key, tied_to, where):
    """Remove `key` from a state dict if it is a copy of the tied weight `tied_to`.

    Checkpoints may store a tied weight twice (`lm_head.weight` next to the
    token table). minilm's models own that weight once, so the copy is dropped
    after checking it really is the same matrix: an untied head would be a
    different model.
    """
    if key not in state:
        return state
    state = dict(state)
    copy = np.asarray(state.pop(key))
    if tied_to in state:
        original = np.asarray(state[tied_to])
        if copy.shape != original.shape or not np.array_equal(copy, original):
            raise ValueError(f"{where}: {key!r} differs from {tied_to!r}; the model ties these two "
                             f"weights and cannot load an untied checkpoint")
    return state


def rename_keys(state, names, reverse=False):
    """Rename a state dict's keys by a table of (their name, our name) fragments; reverse=True: ours -> theirs.

    "{i}" in a fragment stands for a layer number; a fragment matches only
    from the start of a key or right after a dot, so "output.dense." never
    matches inside "attention.output.dense.". Values are not touched.
    """
    rules = []
    for theirs, ours in names:
        source, target = (ours, theirs) if reverse else (theirs, ours)
        pattern = re.compile(r"(?<![^.])" + re.escape(source).replace(r"\{i\}", r"(\d+)"))
        rules.append((pattern, target.replace("{i}", r"\1")))
    out = {}
    for key, value in state.items():
        for pattern, target in rules:
            key = pattern.sub(target, key, count=1)
        out[key] = value
    return out


# ----- GPT-2 ---------------------------------------------------------------------------------
GPT2_NAMES = [                     # (Hugging Face GPT-2, minilm), after the "transformer." prefix
    ("h.{i}.ln_1.", "blocks.{i}.norm1."),
    ("h.{i}.ln_2.", "blocks.{i}.norm2."),
    ("h.{i}.attn.c_attn.", "blocks.{i}.self_attn.in_proj."),
    ("h.{i}.attn.c_proj.", "blocks.{i}.self_attn.out_proj."),
    ("h.{i}.mlp.c_fc.", "blocks.{i}.ff.linear1."),
    ("h.{i}.mlp.c_proj.", "blocks.{i}.ff.linear2."),
]
_CONV1D = re.compile(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")


def _is_gpt2_naming(state):
    return any(k.startswith(("transformer.", "h.", "lm_head.")) for k in state)


def gpt2_state_dict_to_ours(state):
    """A Hugging Face GPT-2 state dict (GPT2LMHeadModel, or a bare GPT2Model as the hub's gpt2 stores it)
    under minilm's names, Conv1D weights transposed; a state dict already in minilm's names passes through.

    The causal-mask buffers of older versions (h.N.attn.bias, h.N.attn.masked_bias) are not
    parameters and are dropped; `lm_head.weight` must equal the token table (tied) and is dropped.
    """
    if not _is_gpt2_naming(state):
        return state
    token_table = "transformer.wte.weight" if "transformer.wte.weight" in state else "wte.weight"
    state = pop_tied_copy(state, "lm_head.weight", token_table, "GPT.load_state_dict")
    out = {}
    for key, value in state.items():
        bare = key[len("transformer."):] if key.startswith("transformer.") else key
        if re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", bare):
            continue
        if _CONV1D.search("." + bare):
            value = np.ascontiguousarray(np.asarray(value).T)                    # (in, out) -> (out, in)
        out[key] = value
    return rename_keys({k.removeprefix("transformer."): v for k, v in out.items()}, GPT2_NAMES)


def gpt2_state_dict_to_hf(state):
    """minilm GPT names -> GPT2LMHeadModel names with Conv1D (in, out) weights (lm_head left tied, unsaved)."""
    out = {"transformer." + k: v for k, v in rename_keys(state, GPT2_NAMES, reverse=True).items()}
    return {k: np.ascontiguousarray(np.asarray(v).T) if _CONV1D.search(k) else v for k, v in out.items()}


_HF_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                        "gelu": "gelu"}


def gpt_config_from_hf(hf):
    """A GPTConfig from a Hugging Face GPT-2 config.json dict (n_layer, n_head, n_embd, n_positions, ...)."""
    missing = [k for k in ("vocab_size", "n_layer", "n_head", "n_embd") if k not in hf]
    if missing:
        raise KeyError(f"gpt_config_from_hf: config.json lacks {missing}")
    act = hf.get("activation_function", "gelu_new")
    if act not in _HF_GPT2_ACTIVATIONS:
        raise ValueError(f"gpt_config_from_hf: activation_function {act!r} is not supported "
                         f"(known: {sorted(_HF_GPT2_ACTIVATIONS)})")
    if hf.get("tie_word_embeddings", True) is not True:
        raise ValueError("gpt_config_from_hf: tie_word_embeddings=False; minilm's GPT always ties "
                         "the LM head to the token embedding")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag, False):
            raise ValueError(f"gpt_config_from_hf: {flag}=True is not supported")
    if hf.get("scale_attn_weights", True) is not True:
        raise ValueError("gpt_config_from_hf: scale_attn_weights=False is not supported")
    return GPTConfig(vocab_size=int(hf["vocab_size"]), n_layer=int(hf["n_layer"]), n_head=int(hf["n_head"]),
                     n_embd=int(hf["n_embd"]), block_size=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
                     dropout=float(hf.get("resid_pdrop", 0.1)),
                     layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
                     activation=_HF_GPT2_ACTIVATIONS[act],
                     initializer_range=float(hf.get("initializer_range", 0.02)))


def gpt_config_to_hf(config, eos_token_id=None):
    """A Hugging Face GPT2Config-style dict, for config.json next to model.safetensors.

    eos_token_id: the tokenizer's end-of-text id, or None when it has none (a character
    tokenizer); GPT-2 uses the same token to begin and end a text. Without it written
    explicitly, transformers would assume GPT-2's own 50256.
    """
    if not config.bias:
        raise ValueError("gpt_config_to_hf: Hugging Face GPT-2 has no bias=False variant (its config cannot "
                         "say that the linear layers and LayerNorms have no bias); export a model with bias=True")
    if eos_token_id is not None and not 0 <= eos_token_id < config.vocab_size:
        raise ValueError(f"gpt_config_to_hf: eos_token_id {eos_token_id} is not in the vocabulary of "
                         f"{config.vocab_size} tokens")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": config.vocab_size, "n_layer": config.n_layer, "n_head": config.n_head,
            "n_embd": config.n_embd, "n_positions": config.block_size, "n_ctx": config.block_size,
            "n_inner": None, "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout, "layer_norm_epsilon": config.layer_norm_epsilon,
            "activation_function": "gelu_new" if config.activation == "gelu_tanh" else "gelu",
            "initializer_range": config.initializer_range, "tie_word_embeddings": True,
            "bos_token_id": eos_token_id, "eos_token_id": eos_token_id}


def load_hf_gpt2(folder, generator=None):
    """A GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors), in eval mode."""
    from minilm.models.gpt import GPT                                          # gpt.py imports this module
    hf_config, state = read_folder(folder, "load_hf_gpt2")
    model = GPT(gpt_config_from_hf(hf_config), generator=generator)
    return load_into(model, state, f"load_hf_gpt2({os.path.join(folder, 'model.safetensors')})")


def save_hf_gpt2(model, folder, eos_token_id=None):
    """Write config.json + model.safetensors in Hugging Face GPT2LMHeadModel form (lm_head stays tied)."""
    write_folder(folder, gpt_config_to_hf(model.config, eos_token_id), gpt2_state_dict_to_hf(model.state_dict()))


# ----- BERT ----------------------------------------------------------------------------------
BERT_NAMES = [                     # (Hugging Face BERT, minilm); query/key/value are stacked separately
    ("embeddings.LayerNorm.", "embeddings.norm."),
    ("encoder.layer.{i}.attention.output.dense.", "blocks.{i}.self_attn.out_proj."),
    ("encoder.layer.{i}.attention.output.LayerNorm.", "blocks.{i}.norm1."),
    ("encoder.layer.{i}.intermediate.dense.", "blocks.{i}.ff.linear1."),
    ("encoder.layer.{i}.output.dense.", "blocks.{i}.ff.linear2."),
    ("encoder.layer.{i}.output.LayerNorm.", "blocks.{i}.norm2."),
    ("pooler.dense.", "pooler."),
    ("cls.predictions.transform.dense.", "transform."),
    ("cls.predictions.transform.LayerNorm.", "transform_norm."),
]
_QKV = re.compile(r"^(.*)encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$")


def _is_bert_naming(state):
    return any(".encoder.layer." in "." + k or k.startswith("cls.") or "LayerNorm" in k for k in state)


def bert_state_dict_to_ours(state, config, prefix=""):
    """A Hugging Face BERT state dict under minilm's names; one already in minilm's names passes through.

    prefix: "" for BertModel, "bert." for BertForMaskedLM. query, key and value
    are stacked into one in_proj (rows q; k; v, as MultiHeadAttention splits them).
    `embeddings.position_ids` (a buffer 0..P-1, not a parameter) is checked and dropped;
    the MLM decoder's tied weight and bias are checked equal to the word table / bias and dropped.
    """
    state = pop_tied_copy(state, "cls.predictions.decoder.weight", f"{prefix}embeddings.word_embeddings.weight",
                          "BertForMaskedLM.load_state_dict")
    state = pop_tied_copy(state, "cls.predictions.decoder.bias", "cls.predictions.bias",
                          "BertForMaskedLM.load_state_dict")
    key = f"{prefix}embeddings.position_ids"
    if key in state:
        ids = np.asarray(state.pop(key))
        if ids.reshape(-1).tolist() != list(range(ids.size)) or ids.size != config.max_position_embeddings:
            raise ValueError(f"load_state_dict: {key!r} of shape {ids.shape} is not "
                             f"0..{config.max_position_embeddings - 1}; minilm's BERT always uses "
                             f"absolute positions 0, 1, 2, ...")
    if not _is_bert_naming(state):
        return state
    out, qkv = {}, {}
    for key, value in state.items():
        if key.endswith((".gamma", ".beta")):                                  # TF-era LayerNorm names
            key = key[: key.rfind(".")] + (".weight" if key.endswith(".gamma") else ".bias")
        key = "bias" if key == "cls.predictions.bias" else key                 # the MLM output bias
        match = _QKV.match(key)
        if match:
            head, layer, which, kind = match.groups()
            qkv.setdefault((head, layer, kind), {})[which] = np.asarray(value)
        else:
            out[key] = value
    for (head, layer, kind), parts in qkv.items():
        name = f"{head}blocks.{layer}.self_attn.in_proj.{kind}"
        missing = [w for w in ("query", "key", "value") if w not in parts]
        if missing:
            raise KeyError(f"load_state_dict: layer {layer} has no attention.self.{missing[0]}.{kind}")
        out[name] = np.concatenate([parts["query"], parts["key"], parts["value"]], axis=0)  # (3H, H) or (3H,)
    return rename_keys(out, BERT_NAMES)


_IN_PROJ = re.compile(r"^(.*)blocks\.(\d+)\.self_attn\.in_proj\.(weight|bias)$")


def bert_state_dict_to_hf(state):
    """minilm BERT names -> Hugging Face's (in_proj split back into query, key, value); the inverse
    of bert_state_dict_to_ours, for writing a checkpoint other BERT code can read."""
    out = {}
    for key, value in rename_keys(state, BERT_NAMES, reverse=True).items():
        key = "cls.predictions.bias" if key == "bias" else key
        match = _IN_PROJ.match(key)
        if not match:
            out[key] = value
            continue
        head, layer, kind = match.groups()
        for which, part in zip(("query", "key", "value"), np.split(np.asarray(value), 3, axis=0)):
            out[f"{head}encoder.layer.{layer}.attention.self.{which}.{kind}"] = part
    return out


def bert_config_from_hf(hf):
    """A BertConfig from a Hugging Face BERT config.json dict; keys minilm does not use are ignored.

    Settings that would change the computation and that minilm does not
    implement (relative position embeddings, a decoder) raise ValueError.
    """
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"bert_config_from_hf: position_embedding_type "
                         f"{hf['position_embedding_type']!r} is not supported (only 'absolute')")
    if hf.get("is_decoder", False) or hf.get("add_cross_attention", False):
        raise ValueError("bert_config_from_hf: decoder / cross-attention BERTs are not supported")
    known = set(BertConfig.__dataclass_fields__)
    return BertConfig(**{k: v for k, v in hf.items() if k in known})


def bert_config_to_hf(config, architecture):
    """A Hugging Face BertConfig-style dict: BertConfig's fields already carry Hugging Face's names.

    A pad_token_id outside the vocabulary (minilm's way of saying "no padding row") is
    written as null: Hugging Face builds its word table with padding_idx=pad_token_id,
    which must be a token id or None.
    """
    values = config.to_dict()
    if not 0 <= values["pad_token_id"] < config.vocab_size:
        values["pad_token_id"] = None
    return {"architectures": [architecture], "model_type": "bert", **values,
            "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
            "tie_word_embeddings": True}


def save_hf_bert(model, folder):
    """Write a minilm BertModel or BertForMaskedLM as a Hugging Face folder of the same class.

    The reverse of load_bert_model / load_bert_for_masked_lm: names mapped by
    bert_state_dict_to_hf (in_proj split into query, key, value). The MLM decoder is
    the word table (tied), so, as in Hugging Face's own files, it is not stored twice.
    A BertModel built without its pooler loads in transformers with
    BertModel.from_pretrained(folder, add_pooling_layer=False).
    """
    from minilm.models.bert import BertForMaskedLM, BertModel                 # bert.py imports this module
    if isinstance(model, BertForMaskedLM):
        architecture = "BertForMaskedLM"
    elif isinstance(model, BertModel):
        architecture = "BertModel"
    else:
        raise TypeError(f"save_hf_bert: expected a BertModel or BertForMaskedLM, got {type(model).__name__}")
    write_folder(folder, bert_config_to_hf(model.config, architecture), bert_state_dict_to_hf(model.state_dict()))


def save_hf(model, folder, eos_token_id=None):
    """save_hf_gpt2 for a GPT, save_hf_bert for a BertModel / BertForMaskedLM; other models are refused."""
    from minilm.models.bert import BertForMaskedLM, BertModel
    from minilm.models.gpt import GPT
    if isinstance(model, GPT):
        return save_hf_gpt2(model, folder, eos_token_id)
    if isinstance(model, (BertModel, BertForMaskedLM)):
        return save_hf_bert(model, folder)
    raise TypeError(f"save_hf: {type(model).__name__} has no Hugging Face layout here "
                    f"(GPT -> GPT2LMHeadModel, BertModel / BertForMaskedLM -> the same classes)")


def load_bert_model(cls, folder, add_pooling_layer=None, generator=None):
    """BertModel.from_pretrained: a BertModel folder, or one with "bert."-prefixed names whose
    "cls." heads are then left out with a warning. The pooler is built when the checkpoint has one,
    unless add_pooling_layer=False (its weights are then not loaded)."""
    where = f"BertModel.from_pretrained({folder})"
    hf_config, state = read_folder(folder, "BertModel.from_pretrained")
    if any(k.startswith("bert.") for k in state):
        heads = sorted(k for k in state if not k.startswith("bert."))
        if heads:
            warnings.warn(f"{where}: ignoring {len(heads)} head weights "
                          f"({', '.join(heads[:4])}{', ...' if len(heads) > 4 else ''})")
        state = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    if add_pooling_layer is None:
        add_pooling_layer = any(k.startswith("pooler.") for k in state)
    elif not add_pooling_layer:                      # asked for no pooler: its weights are not needed
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    model = cls(bert_config_from_hf(hf_config), add_pooling_layer=add_pooling_layer, generator=generator)
    return load_into(model, state, where)


def load_bert_for_masked_lm(cls, folder, generator=None):
    """BertForMaskedLM.from_pretrained: a BertForMaskedLM / BertForPreTraining folder (the pooler and
    the next-sentence head of the latter are left out with a warning)."""
    where = f"BertForMaskedLM.from_pretrained({folder})"
    hf_config, state = read_folder(folder, "BertForMaskedLM.from_pretrained")
    if not any(k.startswith("cls.predictions.") for k in state):
        raise KeyError(f"{where}: the checkpoint has no MLM head (no cls.predictions.* keys); "
                       f"load it with BertModel.from_pretrained")
    unused = sorted(k for k in state if k.startswith(("bert.pooler.", "cls.seq_relationship.")))
    if unused:
        warnings.warn(f"{where}: ignoring {', '.join(unused)}")
        state = {k: v for k, v in state.items() if k not in unused}
    return load_into(cls(bert_config_from_hf(hf_config), generator=generator), state, where)
