"""Shared test set-up.

The kernel backend for a test run comes from MINILM_BACKEND (default: the
NumPy reference), so the same suite can be run once per backend:
    MINILM_BACKEND=numba python -m pytest tests/

Every test starts from the same global state whatever ran before it: the
backend chosen for the run, and minilm's default generator reseeded (modules
built without a generator draw their weights from it). The `rng` fixture is
seeded from a stable hash of the test id (not Python's `hash()`, which changes
per process), and a failing test's report shows the seed. Hypothesis tests are
derandomized too (the same examples every run); HYPOTHESIS_PROFILE=default
brings back random exploration.
"""
import os
import sys
import zlib
from pathlib import Path

# `python -m pytest` puts the repository root on sys.path, and there the top-level kernels/ folder
# (installed as minilm.kernels) would be found as `kernels`, shadowing the PyPI package of that name
# that transformers 5 imports. minilm is imported from its installation (`pip install -e .`) instead.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import minilm  # noqa: E402
except ImportError as err:
    raise ImportError("minilm is not installed: run `pip install -e \".[test,fast]\"` in the repository "
                      "first (README, 'Two commands')") from err
from minilm import backend as _backend  # noqa: E402
from minilm import random as _random  # noqa: E402

GLOBAL_SEED = 0

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:
    pass
else:
    _hypothesis_settings.register_profile("minilm", derandomize=True, database=None)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minilm"))


def pytest_configure(config):
    minilm.set_backend(os.environ.get("MINILM_BACKEND", "numpy"))


def pytest_report_header(config):
    return f"minilm kernel backend: {minilm.get_backend()}"


def stable_seed(text):
    """The same 32-bit seed for the same text on every run and machine."""
    return zlib.crc32(text.encode("utf-8"))


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Reseed minilm's default generator before each test; put the backend back after it.

    A test that switches the backend (the CLI's --backend, set_backend) would
    otherwise leave every later test running on it, and weights drawn from the
    default generator would depend on which tests ran first.
    """
    before = {key: _backend._state[key] for key in ("requested", "name", "kernels")}
    _random.manual_seed(GLOBAL_SEED)
    yield
    _backend._state.update(before)
    _random.manual_seed(GLOBAL_SEED)


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's id (reproducible, not shared)."""
    seed = stable_seed(request.node.nodeid)
    request.node.user_properties.append(("rng seed", seed))
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Add the rng seed (and the backend) to a failing test's report, so it can be replayed."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seeds = [value for key, value in item.user_properties if key == "rng seed"]
        if seeds:
            report.sections.append(("minilm rng", f"rng fixture seed: {seeds[0]} "
                                    f"(np.random.default_rng({seeds[0]})); backend: {minilm.get_backend()}"))
