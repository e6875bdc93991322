"""Tests for minilm.optim: each update against its published formula, against torch.optim
(when installed), checkpoints, parameter groups, clipping and the LR schedules."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from minilm.optim import (SGD, Adam, AdamW, Optimizer, WarmupCosine, clip_grad_norm_,
                          flatten_optimizer_state, lr_scheduler, param_groups_for_weight_decay,
                          unflatten_optimizer_state)
from minilm.optim.lr_scheduler import warmup_cosine


class P:
    """Stand-in for a parameter: .data, .grad, .requires_grad."""

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad


SHAPES = [(3, 4), (5,), (2, 3, 2)]


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [P(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def grad_sequence(n_steps, seed=1, dtype=np.float64):
    """n_steps lists of gradients, one per shape in SHAPES."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(n_steps)]


def run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()


# ----- independent reference formulas (textbook form, float64) ------------------------------
def ref_sgd(p0, grads, lr, momentum=0.0, dampening=0.0, wd=0.0, nesterov=False):
    p, buf = p0.copy(), None
    for t, g in enumerate(grads):
        g = g + wd * p
        if momentum:
            buf = g.copy() if t == 0 else momentum * buf + (1 - dampening) * g
            d = g + momentum * buf if nesterov else buf
        else:
            d = g
        p = p - lr * d
    return p


def ref_adam(p0, grads, lr, b1, b2, eps, wd, decoupled):
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p - lr * wd * p
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.05),
]

ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.1),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_formula(kw):
    params = make_params()
    p0 = [p.data.copy() for p in params]
    grads = grad_sequence(5)
    run(SGD(params, **kw), params, grads)
    for j, p in enumerate(params):
        expected = ref_sgd(p0[j], [g[j] for g in grads], kw["lr"], kw.get("momentum", 0.0),
                           kw.get("dampening", 0.0), kw.get("weight_decay", 0.0), kw.get("nesterov", False))
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_matches_formula(cls, kw):
    params = make_params()
    p0 = [p.data.copy() for p in params]
    grads = grad_sequence(6)
    run(cls(params, **kw), params, grads)
    b1, b2 = kw.get("betas", (0.9, 0.999))
    wd = kw.get("weight_decay", 0.0 if cls is Adam else 0.01)
    for j, p in enumerate(params):
        expected = ref_adam(p0[j], [g[j] for g in grads], kw["lr"], b1, b2, kw.get("eps", 1e-8),
                            wd, decoupled=cls is AdamW)
        np.testing.assert_allclose(p.data, expected, rtol=1e-10, atol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    # bias correction: after one step m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps)
    p = P(np.array([1.0, -2.0, 3.0]))
    p.grad = np.array([0.5, -4.0, 1e-3])
    Adam([p], lr=0.1, eps=1e-12).step()
    np.testing.assert_allclose(p.data, [0.9, -1.9, 2.9], rtol=1e-9)


def test_adam_and_adamw_differ_only_with_weight_decay():
    grads = grad_sequence(4)
    a, b = make_params(), make_params()
    run(Adam(a, lr=1e-2), a, grads)
    run(AdamW(b, lr=1e-2, weight_decay=0.0), b, grads)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.data, y.data)
    c, d = make_params(), make_params()
    run(Adam(c, lr=1e-2, weight_decay=0.5), c, grads)
    run(AdamW(d, lr=1e-2, weight_decay=0.5), d, grads)
    assert not np.allclose(c[0].data, d[0].data)


def test_updates_are_in_place_and_keep_float32():
    params = make_params(dtype=np.float32)
    arrays = [p.data for p in params]
    grads = grad_sequence(3, dtype=np.float32)
    for opt in (SGD(params, lr=0.1, momentum=0.9), Adam(params), AdamW(params)):
        run(opt, params, grads)
        for p, a in zip(params, arrays):
            assert p.data is a
            assert p.data.dtype == np.float32
        for s in opt.state.values():
            for v in s.values():
                if isinstance(v, np.ndarray):
                    assert v.dtype == np.float32


def test_step_does_not_modify_grad():
    params = make_params()
    grads = grad_sequence(1)
    for p, g in zip(params, grads[0]):
        p.grad = g.copy()
    for opt in (SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
                Adam(params, weight_decay=0.1), AdamW(params)):
        opt.step()
        for p, g in zip(params, grads[0]):
            np.testing.assert_array_equal(p.grad, g)


# ----- against torch.optim ----------------------------------------------------------------
TORCH_CASES = [(SGD, kw) for kw in SGD_CASES] + [(Adam, kw) for kw in ADAM_CASES] + \
              [(AdamW, kw) for kw in ADAM_CASES] + [(AdamW, dict(lr=1e-2, weight_decay=0.3))]


@pytest.mark.parametrize("cls,kw", TORCH_CASES)
def test_matches_torch(cls, kw):
    torch = pytest.importorskip("torch", reason="torch is the optional oracle")
    params = make_params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    grads = grad_sequence(7)
    topt = getattr(torch.optim, cls.__name__)(tparams, **kw)
    run(cls(params, **kw), params, grads)
    for step_grads in grads:
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch", reason="torch is the optional oracle")
    grads = grad_sequence(1)[0]
    params = make_params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, tp, g in zip(params, tparams, grads):
        p.grad, tp.grad = g.copy(), torch.tensor(g)
    ours = clip_grad_norm_(params, 1.5)
    theirs = torch.nn.utils.clip_grad_norm_(tparams, 1.5)
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)


# ----- checkpoints ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=0.01),
    lambda ps: AdamW([{"params": ps[:2], "weight_decay": 0.1}, {"params": ps[2:], "lr": 5e-3}], lr=1e-2),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_gives_identical_next_step(make, dtype):
    grads = grad_sequence(4, dtype=dtype)
    a = make_params(dtype=dtype)
    opt_a = make(a)
    run(opt_a, a, grads[:3])

    # through the safetensors-style split: named arrays + JSON text
    tensors, meta = flatten_optimizer_state(opt_a.state_dict())
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    assert all(k.startswith("optim.") and k.count(".") == 2 for k in tensors)
    meta = json.loads(json.dumps(meta))

    b = [P(p.data.copy()) for p in a]
    # a fresh optimizer with different hyperparameters: loading must restore them
    opt_b = make(b)
    for g in opt_b.param_groups:
        g["lr"] = 123.0
    opt_b.load_state_dict(unflatten_optimizer_state(tensors, meta))
    run(opt_a, a, grads[3:])
    run(opt_b, b, grads[3:])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.data, y.data)
    assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def test_state_dict_is_a_snapshot():
    params = make_params()
    opt = Adam(params, lr=1e-2)
    run(opt, params, grad_sequence(2))
    sd = opt.state_dict()
    before = sd["state"][0]["exp_avg"].copy()
    run(opt, params, grad_sequence(1, seed=5))
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)
    assert sd["state"][0]["step"] == 2 and opt.state[0]["step"] == 3
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    json.dumps(sd["param_groups"])


def test_load_state_dict_rejects_mismatches():
    params = make_params()
    opt = Adam(params)
    run(opt, params, grad_sequence(1))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="groups"):
        Adam([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="params"):
        Adam(params[:2]).load_state_dict(sd)
    other = [P(np.zeros((7,))) for _ in SHAPES]
    with pytest.raises(ValueError, match="shape"):
        Adam(other).load_state_dict(sd)
    with pytest.raises(ValueError, match="form"):
        unflatten_optimizer_state({"optim.x.exp_avg": np.zeros(1)}, {"param_groups": []})
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        Adam(params).load_state_dict({"state": {}})
    with pytest.raises(ValueError, match="group 0 is not a dict"):
        Adam(params).load_state_dict({"state": {}, "param_groups": [[0, 1, 2]]})


def test_state_dict_numbers_parameters_across_groups():
    """As in PyTorch: the parameters are numbered 0, 1, 2, ... through the groups in order."""
    params = make_params()
    opt = SGD([{"params": params[:1]}, {"params": params[1:2]}, {"params": params[2:]}], lr=0.1)
    n = len(params)
    assert [g["params"] for g in opt.state_dict()["param_groups"]] == [[0], [1], list(range(2, n))]


# ----- groups, skipping, zero_grad, validation -----------------------------------------------
def test_param_groups_with_different_lr_and_weight_decay():
    grads = grad_sequence(3)
    params = make_params()
    p0 = [p.data.copy() for p in params]
    opt = AdamW([{"params": params[:1], "lr": 0.05, "weight_decay": 0.2},
                 {"params": params[1:], "weight_decay": 0.0}], lr=0.01)
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    run(opt, params, grads)
    np.testing.assert_allclose(params[0].data, ref_adam(p0[0], [g[0] for g in grads], 0.05, 0.9, 0.999,
                                                        1e-8, 0.2, True), rtol=1e-10)
    for j in (1, 2):
        np.testing.assert_allclose(params[j].data, ref_adam(p0[j], [g[j] for g in grads], 0.01, 0.9, 0.999,
                                                            1e-8, 0.0, True), rtol=1e-10)


def test_none_grads_and_frozen_params_are_skipped():
    params = make_params()
    params[1].requires_grad = False
    before = [p.data.copy() for p in params]
    for cls in (SGD, Adam, AdamW):
        opt = cls(params, lr=0.1) if cls is SGD else cls(params, lr=0.1, weight_decay=0.1)
        params[0].grad = None
        params[1].grad = np.ones(SHAPES[1])
        params[2].grad = np.ones(SHAPES[2])
        opt.step()
        np.testing.assert_array_equal(params[0].data, before[0])
        np.testing.assert_array_equal(params[1].data, before[1])
        assert not np.array_equal(params[2].data, before[2])
        assert set(opt.state) <= {2}
        before[2] = params[2].data.copy()


def test_zero_grad():
    params = make_params()
    for p, g in zip(params, grad_sequence(1)[0]):
        p.grad = g
    opt = SGD(params, lr=0.1)
    grad_arrays = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(params, grad_arrays):
        assert p.grad is g and not p.grad.any()
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_constructor_errors():
    params = make_params()
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([{"params": params[:2]}, {"params": params[1:]}], lr=0.1)
    with pytest.raises(TypeError, match="single parameter"):
        SGD(params[0], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        Adam(params, lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        AdamW(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="shape"):
        params[0].grad = np.ones((2, 2))
        SGD(params, lr=0.1).step()
    with pytest.raises(TypeError, match="base class"):
        Optimizer(params, {"lr": 0.1}).step()


def test_param_groups_for_weight_decay():
    rng = np.random.default_rng(0)
    named = {
        "transformer.wte.weight": P(rng.standard_normal((10, 4))),
        "transformer.wpe.weight": P(rng.standard_normal((8, 4))),
        "bert.embeddings.word_embeddings.weight": P(rng.standard_normal((10, 4))),
        "h.0.ln_1.weight": P(rng.standard_normal((4,))),
        "h.0.ln_1.bias": P(rng.standard_normal((4,))),
        "encoder.layer.0.output.LayerNorm.weight": P(rng.standard_normal((4,))),
        "h.0.attn.c_attn.weight": P(rng.standard_normal((4, 12))),
        "h.0.attn.c_attn.bias": P(rng.standard_normal((12,))),
        "h.0.mlp.c_fc.weight": P(rng.standard_normal((4, 16))),
        "blocks.0.norm_gain2d": P(rng.standard_normal((2, 4))),    # 2-D but a norm by name
        "kiln.weight": P(rng.standard_normal((4, 4))),             # "ln" inside a word: decays
        "frozen.weight": P(rng.standard_normal((4, 4)), requires_grad=False),
    }
    items = list(named.items()) + [("lm_head.weight", named["transformer.wte.weight"])]   # tied
    decay, no_decay = param_groups_for_weight_decay(items, 0.1)
    ids = lambda ps: {id(p) for p in ps}   # noqa: E731
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([named["h.0.attn.c_attn.weight"], named["h.0.mlp.c_fc.weight"],
                                        named["kiln.weight"]])
    expected_no = ["transformer.wte.weight", "transformer.wpe.weight",
                   "bert.embeddings.word_embeddings.weight", "h.0.ln_1.weight", "h.0.ln_1.bias",
                   "encoder.layer.0.output.LayerNorm.weight", "h.0.attn.c_attn.bias", "blocks.0.norm_gain2d"]
    assert ids(no_decay["params"]) == ids([named[n] for n in expected_no])
    assert len(no_decay["params"]) == len(expected_no)       # the tied weight appears once
    opt = AdamW([decay, no_decay], lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    from_dict = param_groups_for_weight_decay(named, 0.1)          # a dict name -> param works too
    assert ids(from_dict[0]["params"]) == ids(decay["params"])
    with pytest.raises(TypeError, match="pairs"):
        param_groups_for_weight_decay(list(named), 0.1)
    none = param_groups_for_weight_decay(named, 0)                   # 0 is allowed: no decay at all
    assert none[0]["weight_decay"] == 0.0 and ids(none[0]["params"]) == ids(decay["params"])
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups_for_weight_decay(named, -0.1)


# ----- clip_grad_norm_ --------------------------------------------------------------------
def test_clip_grad_norm_math():
    params = [P(np.zeros(2)), P(np.zeros((2, 2))), P(np.zeros(3))]
    params[0].grad = np.array([3.0, 0.0])
    params[1].grad = np.array([[0.0, 4.0], [0.0, 0.0]])
    params[2].grad = None
    assert clip_grad_norm_(params, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(params[0].grad, [3.0, 0.0])          # below max_norm: untouched
    assert clip_grad_norm_(params, 1.0) == pytest.approx(5.0)           # returns the norm before clipping
    np.testing.assert_allclose(params[0].grad, [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad, [[0.0, 0.8], [0.0, 0.0]], rtol=1e-6)
    new_norm = math.sqrt(sum(float(np.sum(p.grad ** 2)) for p in params if p.grad is not None))
    assert new_norm == pytest.approx(1.0, rel=1e-5) and new_norm <= 1.0


def test_clip_grad_norm_nonfinite_leaves_grads():
    params = [P(np.zeros(3)), P(np.zeros(2))]
    params[0].grad = np.array([1.0, np.nan, 2.0])
    params[1].grad = np.array([100.0, 100.0])
    norm = clip_grad_norm_(params, 1.0)
    assert math.isnan(norm)
    np.testing.assert_array_equal(params[1].grad, [100.0, 100.0])
    params[0].grad = np.array([np.inf, 0.0, 0.0])
    assert clip_grad_norm_(params, 1.0) == math.inf
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(params, 0.0)
    assert clip_grad_norm_([P(np.zeros(2))], 1.0) == 0.0


# ----- schedules --------------------------------------------------------------------------
def test_warmup_cosine_values():
    kw = dict(base_lr=1.0, warmup_steps=10, max_steps=110, min_lr=0.1)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(0.5)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)               # end of warmup: the peak
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)              # middle: (base + min) / 2
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)              # end: min_lr
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)
    lrs = [warmup_cosine(s, **kw) for s in range(200)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))             # strictly up during warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))             # never up afterwards
    assert min(lrs[10:]) == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)


def test_schedule_errors():
    with pytest.raises(ValueError, match="max_steps"):
        warmup_cosine(0, base_lr=1.0, warmup_steps=10, max_steps=10)
    with pytest.raises(ValueError, match="step"):
        warmup_cosine(-1, base_lr=1.0, warmup_steps=1, max_steps=10)
    with pytest.raises(ValueError, match="min_lr"):
        warmup_cosine(0, base_lr=1.0, warmup_steps=1, max_steps=10, min_lr=2.0)
    # the scheduler checks its arguments when built, naming itself (not the function it calls later)
    opt = SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match="WarmupCosine: max_steps=5 must be larger than warmup_steps=10"):
        WarmupCosine(opt, warmup_steps=10, max_steps=5)
    with pytest.raises(ValueError, match="WarmupCosine: warmup_steps"):
        WarmupCosine(opt, warmup_steps=-1, max_steps=5)


def test_warmup_cosine_scheduler_drives_groups():
    params = make_params()
    opt = AdamW([{"params": params[:1], "lr": 1.0}, {"params": params[1:], "lr": 0.5}])
    sched = WarmupCosine(opt, warmup_steps=4, max_steps=20, min_lr_ratio=0.1)
    seen = [sched.get_last_lr()]
    for _ in range(25):
        sched.step()
        seen.append(sched.get_last_lr())
    for step, (a, b) in enumerate(seen):
        expected = warmup_cosine(step, base_lr=1.0, warmup_steps=4, max_steps=20, min_lr=0.1)
        assert a == pytest.approx(expected) and b == pytest.approx(0.5 * expected)
    assert [g["lr"] for g in opt.param_groups] == seen[-1]
    assert lr_scheduler.WarmupCosine is WarmupCosine


def test_warmup_cosine_matches_torch_lambdalr():
    torch = pytest.importorskip("torch", reason="torch is the optional oracle")
    f = lambda s: warmup_cosine(s, base_lr=1.0, warmup_steps=3, max_steps=12, min_lr=0.2)   # noqa: E731
    ours = WarmupCosine(SGD(make_params(), lr=0.3), warmup_steps=3, max_steps=12, min_lr_ratio=0.2)
    topt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.3)
    theirs = torch.optim.lr_scheduler.LambdaLR(topt, f)
    for _ in range(15):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr())
        topt.step()
        ours.step()
        theirs.step()


def test_duck_typed_parameters_and_the_repr():
    """Anything with .data and .grad is a parameter (no requires_grad attribute needed: it then updates)."""
    p = SimpleNamespace(data=np.ones(3), grad=np.full(3, 2.0))
    q = SimpleNamespace(data=np.ones((2, 2)), grad=np.ones((2, 2)))
    opt = SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1 * 2.0)
    np.testing.assert_allclose(q.data, 1 - 0.5)
    text = repr(opt)
    assert text.startswith("SGD (") and "group 0: 1 params" in text and "group 1: 1 params" in text
    assert "lr=0.5" in text


def test_adam_arguments_are_checked_and_defaults_are_pytorchs():
    params = make_params()
    for bad, match in ((dict(eps=-1e-8), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
                       (dict(betas=(0.9,)), "pair"), (dict(betas=0.9), "pair"),
                       (dict(betas=(1.0, 0.999)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]")):
        for cls in (Adam, AdamW):
            with pytest.raises(ValueError, match=match):
                cls(params, **bad)
    # torch.optim.Adam / AdamW defaults, so code ported from PyTorch behaves the same
    assert Adam(params).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    assert AdamW(params).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def test_clip_scale_is_max_norm_over_norm_plus_eps():
    p = P(np.zeros(2))
    p.grad = np.array([3.0, 4.0])                                     # norm 5
    assert clip_grad_norm_([p], 1.0) == 5.0
    np.testing.assert_array_equal(p.grad, np.array([3.0, 4.0]) * (1.0 / (5.0 + 1e-6)))   # default eps 1e-6
    p.grad = np.array([3.0, 4.0])
    clip_grad_norm_(p, 1.0, eps=0.5)                                  # one parameter on its own works too
    np.testing.assert_array_equal(p.grad, np.array([3.0, 4.0]) * (1.0 / 5.5))


def test_schedule_edges_base_lr_and_a_flat_schedule():
    # the warm-up scales with base_lr (not just step / warmup_steps)
    assert warmup_cosine(1, base_lr=3e-4, warmup_steps=4, max_steps=10) == pytest.approx(0.75e-4)
    # min_lr == base_lr is allowed: constant after the warm-up
    assert [warmup_cosine(s, base_lr=0.1, warmup_steps=2, max_steps=6, min_lr=0.1) for s in range(2, 8)] \
        == pytest.approx([0.1] * 6)
    with pytest.raises(ValueError, match="base_lr"):
        warmup_cosine(0, base_lr=True, warmup_steps=1, max_steps=10)
    opt = SGD(make_params(), lr=0.1)
    WarmupCosine(opt, warmup_steps=2, max_steps=6, min_lr_ratio=1.0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        WarmupCosine(opt, warmup_steps=2, max_steps=6, min_lr_ratio=1.5)


def test_state_dict_hyperparameters_become_json_types_and_parameters_need_data_and_grad():
    params = make_params()
    opt = SGD([{"params": params, "name": "decay", "tag": None, "k": np.int64(3), "scale": np.float32(0.5)}], lr=0.1)
    group = json.loads(json.dumps(opt.state_dict()))["param_groups"][0]
    assert group["name"] == "decay" and group["tag"] is None
    assert group["k"] == 3 and type(group["k"]) is int and group["scale"] == 0.5
    with pytest.raises(TypeError, match="JSON"):
        SGD([{"params": params, "odd": object()}], lr=0.1).state_dict()
    for half in (SimpleNamespace(data=np.ones(2)), SimpleNamespace(grad=None)):
        with pytest.raises(TypeError, match=r"\.data and \.grad"):
            SGD([half], lr=0.1)


def test_no_decay_rule_for_matrices_named_like_layer_norms_and_duck_typed_params():
    named = [("h.0.ln_1.weight", SimpleNamespace(data=np.ones((2, 2)), grad=None)),   # a 2-D "ln" gain
             ("kiln.weight", SimpleNamespace(data=np.ones((2, 2)), grad=None)),        # "ln" inside a word
             ("mlp.c_fc.weight", SimpleNamespace(data=np.ones((2, 2)), grad=None))]
    decay, no_decay = param_groups_for_weight_decay(named, 0.1)
    assert [p for p in no_decay["params"]] == [named[0][1]]
    assert [p for p in decay["params"]] == [named[1][1], named[2][1]]     # no requires_grad attribute: kept


def test_sgd_arguments_are_checked():
    params = make_params()
    for bad, match in ((dict(lr=0.1, momentum=-0.5), "momentum"), (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
                       (dict(lr=0.1, momentum=0.9, dampening=1.5), "dampening")):
        with pytest.raises(ValueError, match=match):
            SGD(params, **bad)
    SGD(params, lr=0.1, momentum=0.9, dampening=1.0)                 # dampening 1 is allowed
