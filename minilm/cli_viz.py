"""The `minilm viz` commands (filled in by the interpretability work)."""


def add_parsers(sub):
    pass


HANDLERS = {}
