#!/usr/bin/env bash
# NVRTC without a GPU: CuPy's low-level nvrtc bindings plus NVIDIA's NVRTC wheel let
# tests/test_cuda_compile.py compile every .cu for sm_80 and sm_90 and read the resource
# usage, with no device present (about 130 MB of wheels).
set -euo pipefail
python -m pip install -q cupy-cuda13x "cuda-toolkit[nvrtc]==13.*"
