"""`minilm export RUN --format hf --out DIR`: a trained run as a Hugging Face folder.

    minilm export runs/gpt-baby --format hf --out exported/gpt-baby
    python -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('exported/gpt-baby')"

The folder holds what `from_pretrained` reads, in Hugging Face's GPT-2 or BERT
layout (names and Conv1D transposes: minilm/models/hf.py):

    config.json              GPT2LMHeadModel (a GPT run) or BertForMaskedLM (a BERT run)
    model.safetensors        float32 weights, the tied output layer stored once
    minilm_tokenizer.json    the run's own tokenizer file, unchanged (same sha256)

The tokenizer is minilm's (characters or minilm's byte-level BPE): Hugging Face's
tokenizer classes do not read it, so it is deliberately *not* called
tokenizer.json, the name AutoTokenizer would try to parse. Encode text with
minilm (`load_tokenizer("minilm_tokenizer.json").encode(text)`) and hand the ids
to the Hugging Face model.

The folder appears complete or not at all (written under a temporary name, then
renamed: minilm.io.atomic_folder). --out must be a new or empty folder: an
export never mixes with, or replaces, files that are already there.
"""
import os
import shutil
from pathlib import Path

from minilm.io.atomic import atomic_folder
from minilm.models.hf import save_hf
from minilm.pretrain import load_pretrained
from minilm.run_folder import TOKENIZER_FILE, find_checkpoint

FORMATS = ("hf",)
EXPORTED_TOKENIZER = "minilm_tokenizer.json"


def _check_out(out):
    """--out must be a new folder or an empty one; a file, or a folder with files in it, is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty; export into a new or empty folder")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"--out {out} lies under {folder}, which is a file, not a folder")
            break


def _tokenizer_file(run):
    """The run's tokenizer.json (run may be the run folder or its checkpoint/ folder, as load_pretrained takes)."""
    run = Path(run)
    return (run if find_checkpoint(run) is not None else run.parent) / TOKENIZER_FILE


def export_run(run, out, fmt="hf"):
    """Write the model of a `minilm train` run folder to `out` in format `fmt`; returns the written file names.

    GPT -> Hugging Face GPT2LMHeadModel, BERT -> BertForMaskedLM, with the run's tokenizer file beside them.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _check_out(out)
    model, tokenizer, _ = load_pretrained(run)     # checks the checkpoint and the tokenizer's sha256
    eos = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")
    with atomic_folder(out) as tmp:
        save_hf(model, tmp, eos_token_id=eos)
        shutil.copyfile(_tokenizer_file(run), tmp / EXPORTED_TOKENIZER)
    return sorted(os.listdir(out))


def add_parsers(sub):
    p = sub.add_parser("export", help="write a trained run as a Hugging Face folder (config.json + model.safetensors)",
                       description="Write the model of a run folder in Hugging Face's layout: a GPT as "
                                   "GPT2LMHeadModel, a BERT as BertForMaskedLM, loadable with transformers' "
                                   "from_pretrained(DIR). The run's tokenizer is copied beside it as "
                                   f"{EXPORTED_TOKENIZER} (minilm's format; Hugging Face's tokenizers do not read it).")
    p.add_argument("run", metavar="RUN", help="run folder written by `minilm train` (or its checkpoint/ folder)")
    p.add_argument("--format", dest="fmt", default="hf", metavar="FORMAT",
                   help=f"output format: {', '.join(FORMATS)} (Hugging Face transformers; the default)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to create (it must not exist, or be empty)")


def cmd_export(args):
    names = export_run(args.run, args.out, args.fmt)
    print(f"exported {args.run} to {args.out}: {', '.join(names)}")
    return 0


HANDLERS = {"export": cmd_export}
