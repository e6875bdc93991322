"""Run the CUDA C kernels of kernels/cuda/ on the CPU (cuda_emu.h, emu_runtime.py), and the
float64 references and parity cases shared by tests/test_cuda_emulated.py and
tests/test_cuda_gpu.py (reference.py, parity.py)."""
