"""The `minilm export` command (filled in by the export work)."""


def add_parsers(sub):
    pass


HANDLERS = {}
