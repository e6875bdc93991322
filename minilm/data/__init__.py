"""Text in, batches out: corpora, downloads, train/validation splits, token arrays, AR and MLM batches."""

from minilm.data.ar_batches import ARBatcher, iter_eval_batches
from minilm.data.corpora import fortune_records, fortunes_zh_records, list_corpora, load_corpus, pydoc_text, read_text_path, stdlib_text
from minilm.data.download import REGISTRY, ChecksumMismatchError, DownloadError, download, fetch
from minilm.data.errors import CorpusNotInstalledError
from minilm.data.mlm_batches import MLMBatcher
from minilm.data.mlm_masking import mask_tokens
from minilm.data.split import split_text
from minilm.data.token_arrays import cached_token_array, encode_to_array, token_cache_key
from minilm.data.wn_noun10 import LabelledTexts, load_wn_noun10
from minilm.data.wordnet import LEXNAMES, Synset, read_synsets, wordnet_text

__all__ = [
    "load_corpus",
    "list_corpora",
    "pydoc_text",
    "stdlib_text",
    "fortune_records",
    "fortunes_zh_records",
    "read_text_path",
    "read_synsets",
    "wordnet_text",
    "load_wn_noun10",
    "LabelledTexts",
    "Synset",
    "LEXNAMES",
    "CorpusNotInstalledError",
    "download",
    "fetch",
    "REGISTRY",
    "DownloadError",
    "ChecksumMismatchError",
    "split_text",
    "encode_to_array",
    "token_cache_key",
    "cached_token_array",
    "ARBatcher",
    "iter_eval_batches",
    "mask_tokens",
    "MLMBatcher",
]
