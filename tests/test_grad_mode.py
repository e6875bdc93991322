"""no_grad / enable_grad (minilm/autograd/grad_mode.py): each restores the state it found,
so blocks nest, and an exception inside a block does not leave recording switched."""
import numpy as np
import pytest

import minilm


def records():
    """Does an op record the graph right now? (the output of x * 2 requires grad)"""
    x = minilm.Tensor(np.ones(2), requires_grad=True)
    return (x * 2).requires_grad


def test_no_grad_turns_recording_off_and_back_on():
    assert minilm.is_grad_enabled() and records()
    with minilm.no_grad():
        assert not minilm.is_grad_enabled() and not records()
    assert minilm.is_grad_enabled() and records()


def test_nested_no_grad_stays_off_until_the_outer_block_ends():
    with minilm.no_grad():
        with minilm.no_grad():
            assert not records()
        assert not records()              # the inner exit restores "off", not True
    assert records()


def test_enable_grad_inside_no_grad_and_no_grad_inside_enable_grad():
    with minilm.no_grad():
        with minilm.enable_grad():
            assert records()
            with minilm.no_grad():
                assert not records()
            assert records()
        assert not records()
    assert records()


def test_an_exception_inside_a_block_restores_the_previous_state():
    with pytest.raises(ValueError):
        with minilm.no_grad():
            raise ValueError("boom")
    assert records()
    with minilm.no_grad():
        with pytest.raises(KeyError):
            with minilm.enable_grad():
                raise KeyError("boom")
        assert not records()
        with pytest.raises(KeyError):
            with minilm.no_grad():
                raise KeyError("boom")
        assert not records()
    assert records()


def test_as_decorators():
    @minilm.no_grad()
    def off():
        return records()

    @minilm.enable_grad()
    def on():
        return records()

    assert off() is False and on() is True
    with minilm.no_grad():
        assert on() is True and off() is False
        assert not records()
    assert records()
