"""Applications of the models in minilm, each a small real task with a measured result.

The seed's section 5 names the uses of a language model; each module here is
one of them, small enough to run on a laptop and scored against a baseline:

- ``search``: semantic search over text files with MiniLM sentence embeddings.
- ``word_senses``: picking a word's WordNet sense from an example sentence.
- ``number_words`` and ``translate``: English number words to Chinese numerals
  and German, with an encoder-decoder Transformer (cross-attention).
- ``code_completion``: completing Python functions, scored by ``ast.parse``.
- ``addition`` and ``hypernyms``: multi-digit addition (direct and with a
  scratchpad) and chaining WordNet's "X is a Y" facts.

Modules are imported on use (``from minilm.apps import search``), so importing
minilm does not load them.
"""
