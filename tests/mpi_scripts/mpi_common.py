"""What the tests/mpi_scripts/ scripts share: the tiny models, the error check, the report, the abort.

Each script runs under `mpirun -n N python tests/mpi_scripts/<script>.py`
(its own folder is then on sys.path, so `import mpi_common` finds this file).
Rank 0 prints one line per passed check, "ok <json>", and "ALL OK" last;
any exception aborts every rank (MPI_Abort) with a non-zero status, so the
calling test never hangs in a collective that one rank left.
"""
import json
import sys
import traceback

import numpy as np

from minilm.models import GPT, BertConfig, BertForMaskedLM, GPTConfig

VOCAB, SEQ, MASK_ID = 40, 16, 1


def gpt_model():
    cfg = GPTConfig.preset("nano", vocab_size=VOCAB, n_layer=2, n_embd=32, n_head=2, block_size=SEQ, dropout=0.0)
    return GPT(cfg, generator=np.random.default_rng(11))


def bert_model():
    cfg = BertConfig.preset("bert-tiny", vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                            num_attention_heads=2, max_position_embeddings=SEQ,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg, generator=np.random.default_rng(12))


def gpt_batches(micro_batch, seed=0, count=None):
    """Global micro-batches of random tokens (`count` of them, or without end): the same on every rank."""
    rng = np.random.default_rng(seed)
    drawn = 0
    while count is None or drawn < count:
        x = rng.integers(2, VOCAB, (micro_batch, SEQ + 1))
        yield {"idx": x[:, :-1], "targets": x[:, 1:]}
        drawn += 1


def bert_batches(micro_batch, seed=1, count=None):
    """MLM micro-batches: 25% of positions masked (at least one per row, so every shard counts some)."""
    rng = np.random.default_rng(seed)
    drawn = 0
    while count is None or drawn < count:
        ids = rng.integers(2, VOCAB, (micro_batch, SEQ))
        masked = rng.random(ids.shape) < 0.25
        masked[np.arange(len(ids)), rng.integers(0, SEQ, len(ids))] = True
        yield {"input_ids": np.where(masked, MASK_ID, ids), "labels": np.where(masked, ids, -100)}
        drawn += 1


def gpt_loss(model, batch):
    return model(batch["idx"], batch["targets"])[1], None


def bert_loss(model, batch):
    """The mean over masked positions, and how many there are (to weight the shards, see shard_loss_scale)."""
    return model(batch["input_ids"], labels=batch["labels"])[1], int((batch["labels"] != -100).sum())


def expect_error(fn, error, text):
    """Call fn; it must raise `error` with `text` in its message, which is returned."""
    try:
        fn()
    except error as err:
        assert text in str(err), f"expected {text!r} in the error, got: {err}"
        return str(err)
    raise AssertionError(f"expected {error.__name__} containing {text!r}, nothing was raised")


def report(comm, result):
    """Rank 0 prints one passed check."""
    if comm.Get_rank() == 0:
        print("ok", json.dumps(result), flush=True)


def report_all(comm, results):
    """Rank 0 prints every passed check, then ALL OK."""
    for result in results:
        report(comm, result)
    if comm.Get_rank() == 0:
        print("ALL OK", flush=True)


def run(main):
    """main(), and on any exception: print it, then abort every rank."""
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        from minilm.distributed import world
        world().Abort(1)
