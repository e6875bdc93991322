#!/usr/bin/env bash
# `pip install .` (not editable) into a fresh venv must work, and every module of minilm,
# including minilm.kernels (which lives in the top-level kernels/ folder), must import
# from a directory outside the checkout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(mktemp -d)/venv
python -m venv "$venv"
"$venv/bin/python" -m pip install -q "$repo[fast]"
cd "$(mktemp -d)"
"$venv/bin/python" - <<'PY'
import importlib, pkgutil, sys
import minilm
assert "site-packages" in minilm.__file__, minilm.__file__
names = [m.name for m in pkgutil.walk_packages(minilm.__path__, "minilm.")]
for name in names:
    importlib.import_module(name)
assert "minilm.kernels.cpu" in names and "minilm.kernels.cuda" in names, names
import minilm.kernels.cuda as cuda
from pathlib import Path
assert list(Path(cuda.__file__).parent.glob("*.cu")), "the .cu sources were not installed"
x = minilm.Tensor([[1.0, 2.0]], requires_grad=True)
(x * x).sum().backward()
assert x.grad.tolist() == [[2.0, 4.0]]
print(f"wheel install OK: {len(names)} modules import from {minilm.__file__}")
PY
