"""minilm.kernels.cpu on a read-only install, run by an unprivileged user without a writable home.

That is how a system-wide `pip install` is used: Numba's default cache locations (next to the
source, ~/.cache/numba) are all unwritable, and `njit(cache=True)` would raise "no locator
available" at import.  The kernels must still import, compile, run and give correct results.

The check copies the installed package tree (minilm/ with kernels/ mapped as minilm/kernels),
makes it read-only, and runs a child Python as the user `nobody` with HOME=/nonexistent:
  1. with a writable temp dir: every kernel runs, results match NumPy, and the compile cache
     lands in the private per-user folder <TMPDIR>/minilm-numba-<uid>;
  2. with no writable folder at all: the kernels still run (uncached) after one RuntimeWarning.
Switching to `nobody` needs root.  When the Python installation itself is inside a folder
`nobody` cannot enter (e.g. pyenv under /root), the child gets a private mount namespace
(`unshare -m`) in which only that folder is made enterable; nothing changes outside the child.
"""
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("numba")

import minilm  # noqa: E402
import minilm.kernels  # noqa: E402

CHILD = r'''
import json, math, os, sys, warnings
site, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, site)
if mode == "no-writable-folder":
    import tempfile
    tempfile.tempdir = os.path.join(site, "no-such-folder")  # gettempdir() now points nowhere writable
import numpy as np
result = {"uid": os.getuid(), "errors": {}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minilm.kernels.cpu as K
    from numba.core.dispatcher import Dispatcher
    result["file"] = K.__file__
    result["compiled_at_import"] = [
        f"{mod.__name__}.{name}" for mod in list(sys.modules.values())
        if getattr(mod, "__name__", "").startswith("minilm.kernels.cpu")
        for name, obj in vars(mod).items() if isinstance(obj, Dispatcher) and obj.signatures]
    rng = np.random.default_rng(0)
    err = result["errors"]

    x = rng.standard_normal((3, 7), dtype=np.float32)
    x64 = x.astype(np.float64)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x64 / math.sqrt(2)))
    pdf = np.exp(-x64 ** 2 / 2) / math.sqrt(2 * math.pi)
    err["gelu_forward"] = float(np.abs(K.gelu_forward(x) - x64 * cdf).max())
    err["gelu_backward"] = float(np.abs(K.gelu_backward(x, np.ones_like(x)) - (cdf + x64 * pdf)).max())

    if mode == "full":
        u = math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)
        err["gelu_tanh_forward"] = float(np.abs(K.gelu_forward(x, "tanh") - 0.5 * x64 * (1 + np.tanh(u))).max())
        du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x64 ** 2)
        dtanh = 0.5 * (1 + np.tanh(u)) + 0.5 * x64 * (1 - np.tanh(u) ** 2) * du
        err["gelu_tanh_backward"] = float(np.abs(K.gelu_backward(x, np.ones_like(x), "tanh") - dtanh).max())

        w, b = rng.standard_normal(7, dtype=np.float32), rng.standard_normal(7, dtype=np.float32)
        y, mean, rstd = K.layer_norm_forward(x, w, b)
        xhat = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
        err["layer_norm_forward"] = float(np.abs(y - (xhat * w + b)).max())
        dy = rng.standard_normal(x.shape, dtype=np.float32)
        dx, dw, db = K.layer_norm_backward(dy, x, w, mean, rstd)
        g = dy * w.astype(np.float64)
        rs = 1 / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
        dx_ref = rs * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
        err["layer_norm_backward"] = max(float(np.abs(dx - dx_ref).max()), float(np.abs(dw - (dy * xhat).sum(0)).max()),
                                         float(np.abs(db - dy.sum(0)).max()))

        t = np.array([0, 6, -100])
        loss_sum, n, lse = K.cross_entropy_forward(x, t)
        lse_ref = np.log(np.exp(x64).sum(-1))
        loss_ref = lse_ref[0] - x64[0, 0] + lse_ref[1] - x64[1, 6]
        err["cross_entropy_forward"] = max(abs(loss_sum - loss_ref), abs(n - 2))
        dl = K.cross_entropy_backward(x, t, lse, 0.5)
        dl_ref = np.exp(x64 - lse_ref[:, None]) * 0.5
        dl_ref[0, 0] -= 0.5
        dl_ref[1, 6] -= 0.5
        dl_ref[2] = 0
        err["cross_entropy_backward"] = float(np.abs(dl - dl_ref).max())

        for T in (5, 9):  # 5 queries take the row path, 9 the tiled kernel
            q, k, v, do = (rng.standard_normal((1, 2, T, 3), dtype=np.float32) for _ in range(4))
            mask = np.ones((1, T), bool)
            mask[0, 2] = False
            out, lse = K.attention_forward(q, k, v, causal=True, key_mask=mask)
            dq, dk, dv = K.attention_backward(q, k, v, out, lse, do, causal=True, key_mask=mask)
            q64, k64, v64, do64 = (a.astype(np.float64) for a in (q, k, v, do))
            s = q64 @ k64.swapaxes(-1, -2) / math.sqrt(3)
            s = np.where(np.tril(np.ones((T, T), bool)) & mask[0], s, -np.inf)
            peak = s.max(-1, keepdims=True)
            p = np.exp(s - peak)
            total = p.sum(-1, keepdims=True)
            p /= total
            dp = do64 @ v64.swapaxes(-1, -2)
            ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / math.sqrt(3)
            err["attention_forward_T%d" % T] = max(float(np.abs(out - p @ v64).max()),
                                                   float(np.abs(lse - (peak + np.log(total))[..., 0]).max()))
            err["attention_backward_T%d" % T] = max(float(np.abs(dq - ds @ k64).max()),
                                                    float(np.abs(dk - ds.swapaxes(-1, -2) @ q64).max()),
                                                    float(np.abs(dv - p.swapaxes(-1, -2) @ do64).max()))
result["warnings"] = [str(w.message) for w in caught]
print(json.dumps(result))
'''


def _copy_read_only_tree(root):
    """root/site/minilm = the installed minilm/ plus kernels/ as minilm/kernels, all read-only."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    site = os.path.join(root, "site")
    target = os.path.join(site, "minilm")
    shutil.copytree(list(minilm.__path__)[0], target, ignore=ignore)
    shutil.rmtree(os.path.join(target, "kernels"), ignore_errors=True)
    shutil.copytree(list(minilm.kernels.__path__)[0], os.path.join(target, "kernels"), ignore=ignore)
    for folder, dirs, files in os.walk(site, topdown=False):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)
    os.chmod(root, 0o755)
    return site


def _unenterable_ancestor(path):
    """(folder, child) for the first ancestor of `path` that others cannot enter, else None."""
    parts = os.path.abspath(path).strip(os.sep).split(os.sep)
    for depth in range(1, len(parts)):
        folder = os.sep + os.sep.join(parts[:depth])
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder, os.path.join(folder, parts[depth])
    return None


def _as_nobody(argv, workdir):
    """A command line that runs argv as `nobody` (skips the test when that is impossible here)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("switching to the unprivileged user 'nobody' needs root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this system")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    drop = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups"]
    blocked = _unenterable_ancestor(sys.base_prefix)
    if blocked is None:
        return drop + argv
    if shutil.which("unshare") is None:
        pytest.skip("Python lives in %s, which 'nobody' cannot enter, and unshare is not installed" % blocked[0])
    folder, child = blocked
    stash = os.path.join(workdir, "stash")
    os.makedirs(stash, exist_ok=True)
    script = ('set -e; mount --make-rprivate /; mount --bind "$1" "$3"; '
              'mount -t tmpfs -o mode=0755 minilm-readonly-test "$2"; mkdir -p "$1"; mount --bind "$3" "$1"; '
              'shift 3; exec "$@"')
    return ["unshare", "--mount", "sh", "-c", script, "sh", child, folder, stash] + drop + argv


def _run_child(argv, env):
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def sandbox():
    root = tempfile.mkdtemp(prefix="minilm-readonly-")
    try:
        site = _copy_read_only_tree(root)
        tmp = os.path.join(root, "tmp")  # the child's TMPDIR, writable by nobody
        os.mkdir(tmp)
        os.chmod(tmp, 0o777)
        env = {"HOME": "/nonexistent", "PATH": "/usr/bin:/bin", "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1",
               "LANG": "C.UTF-8"}
        probe = _as_nobody([sys.executable, "-c", "import numpy, numba, os; print(os.getuid())"], root)
        rc, out, err = _run_child(probe, env)
        if rc != 0:
            pytest.skip("cannot run this Python as 'nobody' here (environment, not minilm): %s" % err.strip()[-500:])
        yield root, site, tmp, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_mode(sandbox, mode):
    root, site, tmp, env = sandbox
    rc, out, err = _run_child(_as_nobody([sys.executable, "-c", CHILD, site, mode], root), env)
    assert rc == 0, "child failed (rc %d):\n%s\n%s" % (rc, out[-2000:], err[-4000:])
    return json.loads(out.strip().splitlines()[-1])


def test_read_only_install_caches_in_private_temp_folder(sandbox):
    root, site, tmp, env = sandbox
    result = _run_mode(sandbox, "full")
    assert result["uid"] == pwd.getpwnam("nobody").pw_uid
    assert result["file"].startswith(site), "child imported %s, not the read-only copy" % result["file"]
    assert result["compiled_at_import"] == [], "importing compiled kernels: %s" % result["compiled_at_import"]
    expected = {"gelu_forward", "gelu_backward", "gelu_tanh_forward", "gelu_tanh_backward", "layer_norm_forward",
                "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward", "attention_forward_T5",
                "attention_backward_T5", "attention_forward_T9", "attention_backward_T9"}
    assert set(result["errors"]) == expected
    for name, error in result["errors"].items():
        assert error < 1e-4, "%s differs from the NumPy reference by %g" % (name, error)
    assert not [w for w in result["warnings"] if "no writable folder" in w], result["warnings"]
    cache = os.path.join(tmp, "minilm-numba-%d" % result["uid"])
    index_files = [f for _, _, files in os.walk(cache) for f in files if f.endswith(".nbi")]
    assert len(index_files) >= 10, "expected Numba cache index files in %s, found %s" % (cache, index_files)
    assert not os.path.exists(os.path.join(site, "minilm", "kernels", "cpu", "__pycache__"))


def test_no_writable_folder_still_runs_uncached(sandbox):
    result = _run_mode(sandbox, "no-writable-folder")
    assert result["file"].startswith(sandbox[1])
    assert [w for w in result["warnings"] if "no writable folder" in w], result["warnings"]
    for name, error in result["errors"].items():
        assert error < 1e-4, "%s differs from the NumPy reference by %g" % (name, error)
