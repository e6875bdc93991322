"""Running a script under `mpirun -n N` from a test: the skip reasons, the launch, the results.

MPI cannot be started twice inside the pytest process, so the MPI tests run
scripts (tests/mpi_scripts/, or the `minilm` command) as subprocesses. The
scripts print one line per passed check, "ok <json with a 'check' key>",
and "ALL OK" last; on a failure they abort every rank, so a test never hangs.
"""
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

LAUNCHER = shutil.which("mpirun") or shutil.which("mpiexec")
# one thread per rank: two ranks with two BLAS threads each would fight over this machine's cores
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")


def missing():
    """Why MPI tests cannot run here, from what is installed (no subprocess: cheap enough for skipif), or None."""
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install "minilm[mpi]" or pip install mpi4py mpich)'
    if LAUNCHER is None:
        return "no mpirun/mpiexec on PATH (pip install mpich provides one)"
    return None


@functools.lru_cache(maxsize=None)
def unusable():
    """missing(), or whether mpi4py can load an MPI library, asked of a child process (once per session).

    Importing mpi4py.MPI here would start MPI inside the pytest process.
    """
    reason = missing()
    if reason:
        return reason
    probe = subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], capture_output=True, text=True,
                           timeout=60, env=ENV)
    if probe.returncode != 0:
        return f"mpi4py is installed but cannot load an MPI library: {probe.stderr.strip()[-300:]}"
    return None


def skip_unless_mpi():
    reason = unusable()
    if reason:
        pytest.skip(reason)


def launch(command, ranks, timeout, cwd=None):
    """subprocess.run of `command` (a list) under `mpirun -n ranks` (alone when ranks is None); fails on a timeout."""
    full = ([LAUNCHER, "-n", str(ranks)] if ranks else []) + list(command)
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(map(str, full))} did not finish in {timeout} s (a hang in a collective?):\n"
                    f"{err.stdout}\n{err.stderr}")


def run_script(script, ranks=2, timeout=120):
    """Run a tests/mpi_scripts/ script on `ranks` ranks; returns ({check name: result}, output, exit status)."""
    run = launch([sys.executable, str(script)], ranks, timeout, cwd=str(script.parent))
    checks = {r["check"]: r for r in (json.loads(line[3:]) for line in run.stdout.splitlines()
                                      if line.startswith("ok "))}
    return checks, run.stdout + run.stderr, run.returncode


def checks_of_passing_run(script, ranks=2, timeout=120):
    """run_script, skipping without a usable MPI and asserting that every check passed ("ALL OK")."""
    skip_unless_mpi()
    checks, output, status = run_script(script, ranks, timeout)
    assert status == 0 and "ALL OK" in output, f"exit status {status}:\n{output}"
    return checks
