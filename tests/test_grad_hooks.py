"""Tensor.register_post_accumulate_grad_hook: when it fires, with what, in which order, and removal."""
import numpy as np
import pytest

from minilm import Tensor
from minilm.models import GPT, GPTConfig


def test_hook_fires_once_per_backward_with_the_final_grad():
    w = Tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.copy()))
    # w is used three times: the hook must wait for all three contributions, then fire once
    loss = (w * 2.0).sum() + (w * w).sum() + w.sum()
    loss.backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2.0 + 2 * w.data + 1.0)
    # a second backward accumulates into .grad, and the hook sees the sum (gradient accumulation)
    (w * 3.0).sum().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(seen[1], seen[0] + 3.0)


def test_hooks_fire_in_reverse_order_of_use():
    a, b, c = (Tensor(np.ones(2, dtype=np.float32), requires_grad=True) for _ in range(3))
    order = []
    for name, t in zip("abc", (a, b, c)):
        t.register_post_accumulate_grad_hook(lambda _t, name=name: order.append(name))
    x = Tensor(np.ones(2, dtype=np.float32))
    h = (x * a).tanh()           # a is used first...
    h = (h * b).tanh()
    h = (h * c).tanh()           # ...c last
    h.sum().backward()
    assert order == ["c", "b", "a"]


def test_a_models_last_layers_finish_first():
    """What data parallelism relies on: the final norm's grads are ready before the first block's."""
    config = GPTConfig.preset("nano", vocab_size=16, n_layer=2, dropout=0.0)
    model = GPT(config)
    names = {id(p): n for n, p in model.named_parameters()}
    order = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda t: order.append(names[id(t)]))
    idx = np.random.default_rng(0).integers(0, 16, (2, 8))
    model(idx, idx)[1].backward()
    assert sorted(order) == sorted(names.values())          # every parameter, once
    assert order.index("ln_f.weight") < order.index("blocks.1.norm1.weight") < order.index("blocks.0.norm1.weight")
    assert order[-1] in ("wte.weight", "wpe.weight")        # the embeddings are used first, finish last


def test_remove_stops_the_hook():
    w = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    keep = w.register_post_accumulate_grad_hook(lambda t: calls.append(2))
    w.sum().backward()
    assert calls == [1, 2]
    handle.remove()
    handle.remove()                                          # removing twice is harmless
    w.sum().backward()
    assert calls == [1, 2, 2]
    keep.remove()
    w.sum().backward()
    assert calls == [1, 2, 2]


def test_a_hook_may_modify_the_grad():
    w = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)

    def halve(t):
        t.grad = t.grad * 0.5

    w.register_post_accumulate_grad_hook(halve)
    (w * 4.0).sum().backward()
    np.testing.assert_allclose(w.grad, 2.0)


def test_grads_are_unchanged_by_hooks_and_by_the_leaf_order():
    """Hooks that only look change nothing; the same computation gives bit-identical grads with and without."""
    config = GPTConfig.preset("nano", vocab_size=16, n_layer=2, dropout=0.0)
    idx = np.random.default_rng(1).integers(0, 16, (2, 8))
    grads = []
    for with_hooks in (False, True):
        model = GPT(config, generator=np.random.default_rng(5))
        if with_hooks:
            for p in model.parameters():
                p.register_post_accumulate_grad_hook(lambda t: None)
        model(idx, idx)[1].backward()
        grads.append([p.grad.copy() for p in model.parameters()])
    for g0, g1 in zip(*grads):
        np.testing.assert_array_equal(g0, g1)


def test_only_leaves_that_require_grad_accept_a_hook():
    w = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (w * 2.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2, dtype=np.float32)).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook("not a function")
