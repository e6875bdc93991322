"""The encoder-decoder Transformer: cross-attention's gradients, the decoder's masks, decoding, learning."""
import numpy as np
import pytest

import minilm
from minilm.apps import translate as tr
from minilm.autograd import gradcheck
from minilm.models import Seq2SeqConfig, Seq2SeqTransformer
from minilm.nn import MultiHeadAttention, masks
from minilm.nn.transformer_block import TransformerDecoderBlock
from minilm.optim import AdamW
from minilm.tensor import Tensor


def _rng(seed=0):
    return np.random.default_rng(seed)


def _memory_mask(b=2, s=5):
    keep = np.ones((b, s), dtype=bool)
    keep[1, 3:] = False                                                       # second source is 3 long
    return keep, masks.padding_mask(keep, (b, s), "test")


def test_cross_attention_gradcheck_wrt_x_memory_and_weights():
    mha = MultiHeadAttention(8, 2, generator=_rng(1)).double()
    mha.in_proj.bias.data[...] = _rng(2).standard_normal(24)                 # non-zero biases get checked too
    x = Tensor(_rng(3).standard_normal((2, 4, 8)), requires_grad=True)
    mem = Tensor(_rng(4).standard_normal((2, 5, 8)), requires_grad=True)
    _, mask = _memory_mask()
    params = [mha.in_proj.weight, mha.in_proj.bias, mha.out_proj.weight, mha.out_proj.bias]
    assert gradcheck(lambda x, m, *p: mha(x, mask=mask, memory=m), [x, mem] + params)
    # a padded memory position gets no gradient: the queries never read it
    mha.zero_grad()
    mem.grad = None
    mha(x, mask=mask, memory=mem).sum().backward()
    assert np.all(mem.grad[1, 3:] == 0) and np.any(mem.grad[0, 3:] != 0)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_gradcheck(norm_first):
    block = TransformerDecoderBlock(8, 2, dim_feedforward=16, dropout=0.0, norm_first=norm_first,
                                    generator=_rng(5)).double()
    x = Tensor(_rng(6).standard_normal((2, 3, 8)), requires_grad=True)
    mem = Tensor(_rng(7).standard_normal((2, 5, 8)), requires_grad=True)
    _, mask = _memory_mask()
    params = [block.multihead_attn.in_proj.weight, block.self_attn.in_proj.weight, block.norm2.weight]
    assert gradcheck(lambda x, m, *p: block(x, m, memory_mask=mask), [x, mem] + params)


def test_cross_attention_uses_in_proj_row_blocks_and_rejects_bad_memory():
    mha = MultiHeadAttention(8, 2, generator=_rng(8))
    x = _rng(9).standard_normal((1, 3, 8)).astype(np.float32)
    y = mha(Tensor(x), memory=Tensor(x)).numpy()
    assert np.allclose(y, mha(Tensor(x)).numpy(), atol=1e-6)                # memory = x: self-attention
    with pytest.raises(ValueError, match="memory must have shape"):
        mha(Tensor(x), memory=Tensor(np.zeros((2, 3, 8), np.float32)))
    with pytest.raises(ValueError, match="kv_cache is for self-attention"):
        mha(Tensor(x), memory=Tensor(x), kv_cache=minilm.nn.KVCache(8))


def test_fused_and_reference_cross_attention_agree():
    """The Numba kernels take the cross-attention path too (Tq != Tk, key-padding mask): same numbers."""
    pytest.importorskip("numba")
    mha = MultiHeadAttention(16, 4, generator=_rng(10))
    x, mem = (Tensor(_rng(s).standard_normal(shape).astype(np.float32)) for s, shape in
              ((11, (2, 3, 16)), (12, (2, 5, 16))))
    _, mask = _memory_mask()
    minilm.set_backend("numpy")
    reference = mha(x, mask=mask, memory=mem).numpy()
    minilm.set_backend("numba")                                               # conftest restores the backend
    assert np.allclose(mha(x, mask=mask, memory=mem).numpy(), reference, atol=1e-5)


def _tiny_model(seed=0, **kw):
    cfg = Seq2SeqConfig(src_vocab_size=12, tgt_vocab_size=12, d_model=32, nhead=2, num_encoder_layers=1,
                        num_decoder_layers=2, dim_feedforward=64, **kw)
    return Seq2SeqTransformer(cfg, generator=_rng(seed)).eval()


def test_decoder_is_causal():
    model = _tiny_model()
    src = np.array([[3, 4, 5, 0]])
    tgt = np.array([[2, 6, 7, 8, 9]])
    before = model(src, tgt).numpy()
    tgt2 = tgt.copy()
    tgt2[0, 3:] = [10, 11]                                                    # change the future
    after = model(src, tgt2).numpy()
    assert np.array_equal(before[:, :3], after[:, :3])                        # earlier logits: unchanged
    assert not np.allclose(before[:, 3:], after[:, 3:])                       # the changed ones: changed


def test_padded_source_positions_do_not_change_the_output():
    model = _tiny_model()
    tgt = np.array([[2, 6, 7]])
    short = model(np.array([[3, 4, 5]]), tgt).numpy()
    padded = model(np.array([[3, 4, 5, 0, 0]]), tgt).numpy()                  # pad id 0: masked
    keep = np.array([[1, 1, 1, 0, 0]])
    junk = model(np.array([[3, 4, 5, 9, 11]]), tgt, src_mask=keep).numpy()    # masked junk tokens
    assert np.allclose(short, padded, atol=1e-5) and np.array_equal(padded, junk)


def test_beam_one_equals_greedy_and_beam_is_not_worse():
    model = tr.new_model(seed=3, num_encoder_layers=1, num_decoder_layers=1, d_model=32, nhead=2,
                         dim_feedforward=64, max_len=40).eval()
    for n in (7, 312_005, 10_010, 999_999, 48):
        src = tr.encode_sources([tr.nw.english(n)])
        for lang in tr.LANGS:
            greedy = tr.greedy_decode(model, src, lang, max_len=12)[0]
            assert tr.beam_search(model, src, lang, beam_size=1, max_len=12) == greedy


def test_target_padding_is_ignored_by_the_loss():
    model = _tiny_model()
    src = np.array([[3, 4, 5]])
    _, loss = model(src, np.array([[2, 6, 7]]), targets=np.array([[6, 7, 1]]))
    _, loss_padded = model(src, np.array([[2, 6, 7, 0]]), targets=np.array([[6, 7, 1, -100]]))
    assert np.isclose(loss.item(), loss_padded.item(), atol=1e-6)


def test_learns_to_reverse_a_short_sequence():
    """Reverse 3-5 digits: needs cross-attention to the right source position at each step."""
    rng = _rng(0)
    model = _tiny_model(seed=1).train()
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    def batch(size):
        lengths = rng.integers(3, 6, size)
        src = np.zeros((size, 5), np.int64)
        tgt_in = np.zeros((size, 6), np.int64)
        targets = np.full((size, 6), -100, np.int64)
        for i, n in enumerate(lengths):
            digits = rng.integers(3, 12, n)
            src[i, :n] = digits
            tgt_in[i, :n + 1] = [2, *digits[::-1]]                            # 2 = <bos>
            targets[i, :n + 1] = [*digits[::-1], 1]                           # 1 = <eos>
        return src, tgt_in, targets

    for _ in range(250):
        src, tgt_in, targets = batch(32)
        _, loss = model(src, tgt_in, targets=targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src, tgt_in, targets = batch(200)
    pred = model(src, tgt_in).numpy().argmax(-1)
    real = targets != -100
    assert (pred[real] == targets[real]).mean() > 0.97


def test_save_and_load_round_trip(tmp_path):
    model = tr.new_model(seed=4, num_encoder_layers=1, num_decoder_layers=1, d_model=32, nhead=2,
                         dim_feedforward=64).eval()
    path = tmp_path / "m.safetensors"
    tr.save_model(model, path)
    loaded = tr.load_model(path)
    src, tgt_in, _ = tr.make_batch([312_005, 7], ["zh", "de"])
    assert np.array_equal(model(src, tgt_in).numpy(), loaded(src, tgt_in).numpy())
    assert loaded.config == model.config
