"""Files: safetensors written and read by hand, atomic writes (files and whole folders), checkpoints (weights + config.json)."""

from minilm.io.atomic import atomic_folder, atomic_write_bytes, atomic_write_text, atomic_writer, completed_folder
from minilm.io.checkpoint import Checkpoint, add_prefix, load_checkpoint, save_checkpoint, take_prefix
from minilm.io.safetensors import load_file, load_metadata, read_header, save_file

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "atomic_folder",
    "completed_folder",
    "save_checkpoint",
    "load_checkpoint",
    "Checkpoint",
    "add_prefix",
    "take_prefix",
    "save_file",
    "load_file",
    "load_metadata",
    "read_header",
]
