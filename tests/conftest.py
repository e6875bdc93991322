"""Shared test set-up.

The kernel backend for a test run comes from MINILM_BACKEND (default: the
NumPy reference), so the same suite can be run once per backend:
    MINILM_BACKEND=numba python -m pytest tests/
"""
import os

import numpy as np
import pytest

import minilm


def pytest_configure(config):
    minilm.set_backend(os.environ.get("MINILM_BACKEND", "numpy"))


def pytest_report_header(config):
    return f"minilm kernel backend: {minilm.get_backend()}"


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not shared)."""
    seed = abs(hash(request.node.nodeid)) % (2 ** 32)
    return np.random.default_rng(seed)
