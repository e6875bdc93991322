#!/usr/bin/env bash
# One-shot GPU check of DistributedDataParallel(backend="nccl") (issue 14). Installs nothing.
#
# Run from the root of the minilm repository on a machine with CuPy (with NCCL), mpi4py and mpirun:
#     bash scripts/gpu_check_nccl.sh          # about a minute on one GPU after CuPy's kernel cache is warm
# It runs tests/mpi_scripts/nccl_equivalence.py under `mpirun -n 1` (the plumbing: NCCL unique id sent over
# MPI, a buffer on the device all-reduced on the side stream, result = input; then DDP on one GPU against the
# same model trained alone) and, with >= 2 GPUs, `mpirun -n 2`; then pytest tests/test_distributed_nccl.py
# (which runs them again and asserts). Exit status 0: all passed; 1: something failed; 3: no GPU, nothing ran.
set -u
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
PY=${PYTHON:-python3}
MPIRUN=${MPIRUN:-$(command -v mpirun || command -v mpiexec || echo mpirun)}
ROOT_FLAG=""
if [ "$(id -u)" = 0 ] && "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then ROOT_FLAG="--allow-run-as-root"; fi
[ -f tests/mpi_scripts/nccl_equivalence.py ] || { echo "run me from the minilm repository root"; exit 2; }

echo "== environment"
nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
"$PY" - <<'EOF'
import sys
print("python", sys.version.split()[0])
try:
    import cupy
    print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount())
    from cupy.cuda import nccl
    print("nccl available", nccl.available, "version", nccl.get_version() if nccl.available else None)
except Exception as err:
    print("cupy/nccl problem:", repr(err))
from minilm.distributed import nccl as n
print("minilm.distributed.nccl.unavailable_reason():", n.unavailable_reason())
EOF
"$MPIRUN" --version 2>&1 | head -2
NGPU=$("$PY" -c "import cupy; print(cupy.cuda.runtime.getDeviceCount())" 2>/dev/null || echo 0)
echo "GPUs: $NGPU"

status=0
for ranks in 1 2; do
    if [ "$ranks" -gt "$NGPU" ]; then echo "== mpirun -n $ranks: skipped ($NGPU GPU(s); NCCL wants one per rank)"; continue; fi
    echo "== mpirun -n $ranks tests/mpi_scripts/nccl_equivalence.py"
    start=$(date +%s)
    timeout 300 "$MPIRUN" $ROOT_FLAG -n "$ranks" "$PY" tests/mpi_scripts/nccl_equivalence.py
    rc=$?
    echo "-- exit status $rc after $(( $(date +%s) - start )) s"
    [ "$rc" = 0 ] || status=1
done

echo "== pytest tests/test_distributed_nccl.py"
timeout 600 "$PY" -m pytest -q -rs tests/test_distributed_nccl.py || status=1
if [ "$NGPU" -lt 1 ]; then echo "== gpu_check: NOT RUN (no GPU usable by CuPy here; the gpu tests skipped)"; exit 3; fi
echo "== gpu_check: $([ "$status" = 0 ] && echo PASSED || echo FAILED)"
exit "$status"
