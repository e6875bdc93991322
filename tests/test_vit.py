"""The Vision Transformer: patch extraction, gradients of the patch embedding, the ViT and the image-to-text
model, shape errors, the digits app's text side and split, and (with scikit-learn) a short real training run."""
import numpy as np
import pytest

from minilm.apps import digits as dg
from minilm.autograd import gradcheck
from minilm.models.vit import ImageEncoder, ImageToText, PatchEmbedding, ViTClassifier, ViTConfig, patchify
from minilm.tensor import Tensor


def _rng(seed=0):
    return np.random.default_rng(seed)


def _hand_patches(images, ph, pw):
    """The definition, as loops: patch (r, c) of the grid, flattened in (channel, row, column) order."""
    b, ch, h, w = images.shape
    out = []
    for i in range(b):
        rows = []
        for r in range(h // ph):
            for c in range(w // pw):
                rows.append(images[i, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw].reshape(-1))
        out.append(rows)
    return np.array(out)


@pytest.mark.parametrize("shape,patch", [((2, 1, 8, 8), 2), ((3, 2, 4, 6), (2, 3)), ((1, 3, 6, 6), 3)])
def test_patchify_equals_a_hand_loop(shape, patch):
    x = _rng(1).standard_normal(shape)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    got = patchify(Tensor(x), patch).numpy()
    assert got.shape == (shape[0], (shape[2] // ph) * (shape[3] // pw), shape[1] * ph * pw)
    assert np.array_equal(got, _hand_patches(x, ph, pw))


def test_patch_embedding_is_a_linear_map_of_each_hand_cut_patch():
    emb = PatchEmbedding((4, 6), (2, 3), in_channels=2, embed_dim=5, generator=_rng(2))
    x = _rng(3).standard_normal((2, 2, 4, 6)).astype(np.float32)
    want = _hand_patches(x, 2, 3) @ emb.proj.weight.data.T + emb.proj.bias.data
    assert np.allclose(emb(x).numpy(), want, atol=1e-5)
    assert emb.num_patches == 4 and emb.grid == (2, 2)


def test_patch_embedding_equals_a_strided_conv2d():
    """The docstring's claim: Linear on (C, p, p)-ordered patches = Conv2d(kernel_size = stride = p)."""
    torch = pytest.importorskip("torch", reason="torch is the oracle for the Conv2d equivalence")
    emb = PatchEmbedding(8, 2, in_channels=3, embed_dim=4, generator=_rng(4))
    conv = torch.nn.Conv2d(3, 4, kernel_size=2, stride=2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(emb.proj.weight.data.reshape(4, 3, 2, 2)))
        conv.bias.copy_(torch.from_numpy(emb.proj.bias.data))
    x = _rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = conv(torch.from_numpy(x)).flatten(2).transpose(1, 2).detach().numpy()       # (B, D, 4, 4) -> (B, 16, D)
    assert np.allclose(emb(x).numpy(), want, atol=1e-5)


def test_patch_embedding_gradcheck_wrt_images_and_weights():
    emb = PatchEmbedding((4, 6), (2, 3), in_channels=2, embed_dim=3, generator=_rng(6)).double()
    x = Tensor(_rng(7).standard_normal((2, 2, 4, 6)), requires_grad=True)
    assert gradcheck(lambda x, w, b: emb(x), [x, emb.proj.weight, emb.proj.bias])


def _tiny_config(**kw):
    sizes = dict(image_size=4, patch_size=2, num_classes=3, d_model=8, nhead=2, num_layers=1, dim_feedforward=16)
    sizes.update(kw)
    return ViTConfig(**sizes)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_tiny_vit_gradcheck_wrt_images_and_parameters(pool):
    model = ViTClassifier(_tiny_config(pool=pool), generator=_rng(8)).double()
    enc = model.encoder
    enc.pos_embed.data[...] = _rng(9).standard_normal(enc.pos_embed.shape) * 0.5   # not ~0: checked for real
    x = Tensor(_rng(10).standard_normal((2, 4, 4)), requires_grad=True)
    params = [enc.pos_embed, enc.patch_embed.proj.weight, enc.layers[0].self_attn.in_proj.weight,
              enc.norm.weight, model.head.weight]
    if pool == "cls":
        enc.cls_token.data[...] = _rng(11).standard_normal(enc.cls_token.shape)
        params.append(enc.cls_token)
    assert gradcheck(lambda x, *p: model(x), [x] + params)
    labels = np.array([2, 0])
    assert gradcheck(lambda x, *p: model(x, labels=labels)[1], [x] + params)


def test_tiny_image_to_text_gradcheck_wrt_images_and_parameters():
    model = ImageToText(_tiny_config(), vocab_size=7, num_decoder_layers=1, max_len=6, generator=_rng(12)).double()
    model.encoder.pos_embed.data[...] = _rng(13).standard_normal(model.encoder.pos_embed.shape) * 0.5
    x = Tensor(_rng(14).standard_normal((2, 4, 4)), requires_grad=True)
    tgt_in = np.array([[1, 3, 4, 5], [1, 6, 0, 0]])
    targets = np.array([[3, 4, 5, 2], [6, 2, -100, -100]])
    dec = model.decoder.decoder_layers[0]
    params = [model.encoder.pos_embed, model.encoder.patch_embed.proj.weight, dec.multihead_attn.in_proj.weight,
              dec.self_attn.in_proj.weight, model.decoder.tgt_embed.weight, model.decoder.lm_head.weight]
    # a seeded subset of 40 elements per tensor keeps this fast; every tensor is still covered
    assert gradcheck(lambda x, *p: model(x, tgt_in, targets=targets)[1], [x] + params, max_elements=40)
    # the loss reaches the image only through cross-attention: its gradient is not zero
    assert np.abs(x.grad).sum() > 0


def test_encoder_memory_and_cross_attention_shapes():
    cfg = _tiny_config()
    enc = ImageEncoder(cfg, cls_token=True, generator=_rng(15))
    x = _rng(16).standard_normal((3, 4, 4)).astype(np.float32)
    out, weights = enc(x, need_weights=True)
    assert out.shape == (3, 5, 8) and weights[0].shape == (3, 2, 5, 5)       # [CLS] + 4 patches
    model = ImageToText(cfg, vocab_size=7, generator=_rng(17))
    memory = model.encode(x)
    assert memory.shape == (3, 4, 8)                                          # one vector per patch, no [CLS]
    logits, cross = model.decode(np.ones((3, 2), np.int64), memory, need_weights=True)
    assert logits.shape == (3, 2, 7) and cross[0].shape == (3, 2, 2, 4)
    assert np.allclose(cross[0].sum(-1), 1.0, atol=1e-5)
    # a different image gives different logits: the decoder reads the memory
    other = model.decode(np.ones((3, 2), np.int64), model.encode(x[::-1].copy())).numpy()
    assert not np.allclose(logits.numpy(), other)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        PatchEmbedding(8, 3)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        patchify(Tensor(np.zeros((1, 1, 5, 4))), 2)
    emb = PatchEmbedding(8, 2, embed_dim=4, generator=_rng(18))
    with pytest.raises(ValueError, match="built for 8x8"):
        emb(np.zeros((2, 6, 6), np.float32))
    with pytest.raises(ValueError, match="add a batch axis"):
        emb(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="have 3 channels, the model expects 1"):
        emb(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="no channel axis"):
        PatchEmbedding(8, 2, in_channels=3)(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(TypeError, match="must be numbers"):
        emb(np.array([[["a"] * 8] * 8]))
    with pytest.raises(ValueError, match="not divisible by nhead"):
        ViTConfig(d_model=10, nhead=4)
    with pytest.raises(ValueError, match="pool must be"):
        ViTConfig(pool="max")
    model = ViTClassifier(_tiny_config(), generator=_rng(19))
    with pytest.raises(IndexError, match=r"labels must lie in \[0, 3\)"):
        model(np.zeros((2, 4, 4), np.float32), labels=np.array([0, 3]))


def test_config_round_trips_through_json():
    cfg = _tiny_config(image_size=(4, 6), patch_size=(2, 3))
    assert ViTConfig.from_json(cfg.to_json()) == cfg


def test_text_batch_and_decoding_round_trip():
    tgt_in, targets = dg.text_batch([7, 1])
    assert dg.decode_ids(tgt_in[0, 1:].tolist() + [dg.EOS_ID]) == "seven"
    assert dg.decode_ids(targets[0].tolist()) == "seven"
    assert tgt_in[1].tolist()[:5] == [dg.BOS_ID] + dg.encode_word("one") + [dg.PAD_ID]
    assert targets[1].tolist()[:5] == dg.encode_word("one") + [dg.EOS_ID, -100]
    assert tgt_in.shape == (2, dg.MAX_WORD) and dg.MAX_WORD == 6                # "three", "seven", "eight" + <eos>
    with pytest.raises(ValueError, match="outside the digit words' letters"):
        dg.encode_word("twelve!")


def test_random_shift_moves_each_image_by_at_most_one_pixel():
    x = _rng(20).random((50, 8, 8)).astype(np.float32)
    y = dg.random_shift(x, _rng(21), 1)
    for a, b in zip(x, y):
        padded = np.pad(a, 1)
        assert any(np.array_equal(b, padded[1 + dy:9 + dy, 1 + dx:9 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert not np.array_equal(x, y)


def test_stratified_split_is_disjoint_complete_and_balanced():
    labels = np.repeat(np.arange(4), [10, 20, 30, 41])
    tr, te = dg.stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels)
    assert np.bincount(labels[te]).tolist() == [2, 4, 6, 8]
    assert np.array_equal(dg.stratified_split(labels, 0.2, seed=3)[1], te)   # seeded: the same split again
    assert not np.array_equal(dg.stratified_split(labels, 0.2, seed=4)[1], te)


def test_digits_smoke_load_and_learn():
    """With scikit-learn: the real data load and split; a short ViT run is far above chance."""
    pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install scikit-learn)")
    data = dg.load()
    assert data.train_images.shape == (1438, 8, 8) and data.test_images.shape == (359, 8, 8)
    assert data.train_images.min() == 0.0 and data.train_images.max() == 1.0
    assert np.bincount(data.test_labels).min() >= 35
    model = dg.new_classifier(seed=0, num_layers=1)
    dg.train_classifier(model, data, steps=200, lr=3e-3, log=None)
    assert dg.accuracy(model, data.test_images, data.test_labels) > 0.3      # chance is 0.1
    words = dg.greedy_words(dg.new_image_to_text(seed=0, num_layers=1), data.test_images[:3])
    assert len(words) == 3 and all(isinstance(w, str) for w in words)


def test_attention_on_ink_and_the_cross_attention_plot():
    model = dg.new_image_to_text(seed=0, num_layers=1, d_model=16, nhead=2, dim_feedforward=32)
    ones, zeros = np.ones((3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32)
    by_step, share = dg.attention_on_ink(model, ones)
    assert share == 1.0 and np.allclose(by_step, 1.0, atol=1e-5)             # all weight is on ink
    by_step, share = dg.attention_on_ink(model, zeros)
    assert share == 0.0 and np.allclose(by_step, 0.0)
    half = zeros.copy()
    half[:, :4] = 1.0                                                         # ink in the top two patch rows
    by_step, share = dg.attention_on_ink(model, half)
    assert share == 0.5 and all(0.0 < v < 1.0 for v in by_step)
    chars, w = dg.cross_attention(model, half[0])
    assert w.shape == (len(chars), 4, 4) and np.allclose(w.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert chars[-1] == dg.EOS
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, dg.MAX_WORD + 1)
    got_chars, got_w = dg.plot_cross_attention(axes, model, half[0])
    plt.close(fig)
    assert got_chars == chars and np.allclose(got_w, w)


def test_arrays_take_the_models_dtype_and_tensors_are_kept():
    emb = PatchEmbedding(4, 2, embed_dim=3, generator=_rng(22))
    assert emb(np.ones((1, 4, 4), np.float64)).dtype == np.float32
    assert emb(np.full((1, 4, 4), 255, np.uint8)).dtype == np.float32
    assert emb.double()(np.ones((1, 4, 4), np.float32)).dtype == np.float64
