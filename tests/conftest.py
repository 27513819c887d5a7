"""Shared fixtures and independent oracles for the foundation tests.

Everything in here is deliberately independent of ``mpi_enum``: forward passes, region
half-spaces, volumes and the ``.nnet`` parser are re-implemented from the definitions in
``shared/CONTRACT.md`` so that they can serve as oracles for the product code.

The shared yardstick ``naive_enum.py`` lives in ``<workspace>/shared/bench`` (found as
``Path(__file__).resolve().parents[2] / "shared"``); tests that need it are skipped with a
reason when it is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "bench"
INPUTS = REPO / "inputs"


# ----------------------------------------------------------------------------- programs

def cli_cmd():
    """The ``mpi-enum`` console script next to this interpreter, else ``python -m mpi_enum``."""
    exe = Path(sys.executable).parent / "mpi-enum"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpi_enum"]


def mpiexec_cmd():
    return shutil.which("mpiexec.mpich") or shutil.which("mpiexec")


def _env():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_cli(args, timeout=300, cwd=None, check=False):
    """Run ``mpi-enum ARGS`` in a subprocess; returns CompletedProcess (text)."""
    p = subprocess.run(cli_cmd() + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       cwd=cwd, env=_env(), stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"mpi-enum {' '.join(map(str, args))} failed with {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def run_mpi(n, args, timeout=300, cwd=None, check=False):
    """Run ``mpiexec -n N mpi-enum ARGS``; skips if no MPI launcher is installed."""
    mpx = mpiexec_cmd()
    if mpx is None:
        pytest.skip("no mpiexec.mpich / mpiexec on PATH")
    p = subprocess.run([mpx, "-n", str(n)] + cli_cmd() + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"mpiexec -n {n} mpi-enum {' '.join(map(str, args))} failed with {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


# ----------------------------------------------------------------------------- networks

def random_net(seed, d, widths, n_out=1, bias_scale=0.5):
    """He-initialised random ReLU MLP (:func:`mpi_enum.model.network.random_mlp`): lists Ws (out, in), bs."""
    from mpi_enum.model.network import random_mlp

    arrs = random_mlp(d, widths, seed=seed, n_out=n_out, bias_scale=bias_scale)
    n = len(widths) + 1
    return [arrs[f"W{i}"] for i in range(n)], [arrs[f"b{i}"] for i in range(n)]


def save_npz(path, Ws, bs, lo=None, hi=None):
    arrs = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        arrs[f"W{i}"] = np.asarray(W, dtype=np.float64)
        arrs[f"b{i}"] = np.asarray(b, dtype=np.float64)
    if lo is not None:
        arrs["input_lo"] = np.asarray(lo, dtype=np.float64)
        arrs["input_hi"] = np.asarray(hi, dtype=np.float64)
    np.savez(path, **arrs)
    return Path(path)


def load_npz_arrays(path):
    """Independent reader of the CONTRACT §1 .npz format: (Ws, bs, lo, hi)."""
    with np.load(path) as z:
        n = 0
        while f"W{n}" in z.files:
            n += 1
        Ws = [np.array(z[f"W{i}"], dtype=np.float64) for i in range(n)]
        bs = [np.array(z[f"b{i}"], dtype=np.float64) for i in range(n)]
        lo = np.array(z["input_lo"], dtype=np.float64) if "input_lo" in z.files else None
        hi = np.array(z["input_hi"], dtype=np.float64) if "input_hi" in z.files else None
    return Ws, bs, lo, hi


def preacts(Ws, bs, X):
    """Pre-activations of all hidden neurons, layer-major, (n, N)."""
    h = np.atleast_2d(np.asarray(X, dtype=np.float64))
    out = []
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = h @ W.T + b
        out.append(z)
        h = np.maximum(z, 0.0)
    return np.concatenate(out, axis=1)


def forward(Ws, bs, X):
    h = np.atleast_2d(np.asarray(X, dtype=np.float64))
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W.T + b
        if i < len(Ws) - 1:
            h = np.maximum(h, 0.0)
    return h


def patterns_of(Ws, bs, X):
    """0/1 uint8 patterns (n, N); ties (exactly 0) are inactive."""
    return (preacts(Ws, bs, X) > 0).astype(np.uint8)


def region_affine(Ws, bs, bits):
    """Pre-activation of every hidden neuron on the region of ``bits``: z = A x + c; (A (N, d), c (N,))."""
    bits = np.asarray(bits, dtype=np.float64)
    d = Ws[0].shape[1]
    M, m = np.eye(d), np.zeros(d)
    As, cs, off = [], [], 0
    for W, b in zip(Ws[:-1], bs[:-1]):
        A, c = W @ M, W @ m + b
        As.append(A)
        cs.append(c)
        mask = bits[off: off + W.shape[0]]
        off += W.shape[0]
        M, m = A * mask[:, None], c * mask
    return np.vstack(As), np.concatenate(cs)


def region_layer_maps(Ws, bs, bits):
    """The masked affine map after each hidden layer: list of (M_l (w_l, d), m_l)."""
    bits = np.asarray(bits, dtype=np.float64)
    d = Ws[0].shape[1]
    M, m = np.eye(d), np.zeros(d)
    out, off = [], 0
    for W, b in zip(Ws[:-1], bs[:-1]):
        mask = bits[off: off + W.shape[0]]
        off += W.shape[0]
        M, m = (W @ M) * mask[:, None], (W @ m + b) * mask
        out.append((M, m))
    return out


def region_halfspaces(A, c, bits):
    """Rows (n, v0) with n . x + v0 <= 0 describing the (closed) region; constant rows dropped."""
    bits = np.asarray(bits).astype(bool)
    sgn = np.where(bits, -1.0, 1.0)  # active: -(A x + c) <= 0; inactive: A x + c <= 0
    Hn, H0 = A * sgn[:, None], c * sgn
    keep = np.linalg.norm(Hn, axis=1) > 1e-14 * max(1.0, np.abs(Hn).max())
    return Hn[keep], H0[keep]


def box_halfspaces(lo, hi):
    d = len(lo)
    return np.vstack([np.eye(d), -np.eye(d)]), np.concatenate([-np.asarray(hi), np.asarray(lo)])


def chebyshev_center(Hn, H0):
    """Largest inscribed ball of {n . x + v0 <= 0} by scipy's linprog: (centre, radius)."""
    from scipy.optimize import linprog

    k = Hn.shape[1]
    nrm = np.linalg.norm(Hn, axis=1)
    res = linprog(np.r_[np.zeros(k), -1.0], A_ub=np.hstack([Hn, nrm[:, None]]), b_ub=-H0,
                  bounds=[(None, None)] * k + [(0, None)], method="highs")
    assert res.status == 0, res.message
    return res.x[:k], res.x[k]


def convex_volume(Hn, H0, interior=None):
    """k-volume (k = 1, 2, 3) of the bounded polytope {n . x + v0 <= 0}.

    k = 1: an interval computed directly.  k >= 2: scipy HalfspaceIntersection + ConvexHull with
    ``interior`` as the interior point (a Chebyshev centre from linprog when it is not given or
    Qhull rejects it).
    """
    from scipy.spatial import ConvexHull, HalfspaceIntersection
    from scipy.spatial import QhullError

    k = Hn.shape[1]
    if k == 1:
        a = Hn[:, 0]
        lo = max([-v / x for x, v in zip(a, H0) if x < 0] or [-np.inf])
        hi = min([-v / x for x, v in zip(a, H0) if x > 0] or [np.inf])
        if np.any((a == 0) & (H0 > 0)):
            return 0.0
        return max(0.0, hi - lo)
    hs = np.hstack([Hn, H0[:, None]])
    tries = [interior] if interior is not None else []
    tries.append(None)
    for pt in tries:
        if pt is None:
            pt, r = chebyshev_center(Hn, H0)
            if r <= 0:
                return 0.0
        try:
            verts = HalfspaceIntersection(hs, np.asarray(pt, dtype=np.float64)).intersections
            return float(ConvexHull(verts).volume)
        except (QhullError, ValueError):
            continue
    return 0.0


def parse_nnet(path):
    """Independent parser of the Reluplex ``.nnet`` text format.

    Returns a namespace with the raw (normalised-input) layers Ws, bs, and mins, maxs, means,
    ranges (the latter two with d + 1 entries: the last is the output's), plus ``folded()``:
    the equivalent network on raw inputs, W0 / range and b0 - W0 @ (mean / range)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        rows.append([float(t) for t in line.split(",") if t.strip()])
    n_layers, d, n_out = (int(v) for v in rows[0][:3])
    sizes = [int(v) for v in rows[1]]
    assert len(sizes) == n_layers + 1 and sizes[0] == d and sizes[-1] == n_out
    mins, maxs, means, ranges = (np.array(r) for r in rows[3:7])
    Ws, bs, pos = [], [], 7
    for li in range(n_layers):
        Ws.append(np.array(rows[pos: pos + sizes[li + 1]]))
        pos += sizes[li + 1]
        bs.append(np.array([r[0] for r in rows[pos: pos + sizes[li + 1]]]))
        pos += sizes[li + 1]
    assert pos == len(rows), "trailing lines in the .nnet file"

    def folded():
        mu, rg = means[:d], ranges[:d]
        return [Ws[0] / rg] + Ws[1:], [bs[0] - Ws[0] @ (mu / rg)] + bs[1:]

    return SimpleNamespace(Ws=Ws, bs=bs, mins=mins, maxs=maxs, means=means, ranges=ranges, d=d, sizes=sizes,
                           folded=folded)


# ----------------------------------------------------------------------------- results

def read_result(path):
    """The result file as a namespace: attrs, bits (n, N) uint8, points, radius, ranks, layers."""
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        N = int(np.sum(attrs["hidden_widths"]))
        packed = f["regions/pattern"][()]
        bits = np.unpackbits(packed, axis=1)[:, :N] if len(packed) else np.zeros((0, N), np.uint8)
        return SimpleNamespace(
            attrs=attrs, N=N, packed=packed, bits=bits,
            points=f["regions/interior_point"][()], radius=f["regions/radius"][()],
            ranks=f["regions/affine_rank"][()], layer_counts=f["layers/n_regions"][()])


def pattern_set(bits):
    return {bytes(row) for row in np.asarray(bits, dtype=np.uint8)}


def assert_unique(bits):
    s = pattern_set(bits)
    assert len(s) == len(bits), f"{len(bits) - len(s)} duplicate patterns"


def region_affine_batch(Ws, bs, bits):
    """:func:`region_affine` for many patterns at once: A (n, N, d), c (n, N)."""
    bits = np.asarray(bits, dtype=np.float64)
    n, d = len(bits), Ws[0].shape[1]
    M = np.broadcast_to(np.eye(d), (n, d, d))
    m = np.zeros((n, d))
    As, cs, off = [], [], 0
    for W, b in zip(Ws[:-1], bs[:-1]):
        wp = M.shape[1]  # one GEMM: A[i] = W @ M[i] for every i
        A = (W @ M.transpose(1, 0, 2).reshape(wp, n * d)).reshape(W.shape[0], n, d).transpose(1, 0, 2)
        c = m @ W.T + b
        As.append(A)
        cs.append(c)
        mask = bits[:, off: off + W.shape[0]]
        off += W.shape[0]
        M, m = A * mask[:, :, None], c * mask
    return np.concatenate(As, axis=1), np.concatenate(cs, axis=1)


def check_interior(Ws, bs, res, basis=None, domain_hs=None, rel=1e-6, chunk=2000):
    """CONTRACT §3 for every stored region: the forward pattern at the interior point equals the
    stored pattern, with every hidden pre-activation at least radius * ||gradient|| away from 0
    (gradients projected on ``basis``, the orthonormal directions of a slice, when given); the
    ball also stays in the domain ``domain_hs`` = (Hn, H0) (rows n . x + v0 <= 0)."""
    Z = preacts(Ws, bs, res.points)
    got = (Z > 0).astype(np.uint8)
    bad = np.flatnonzero(np.any(got != res.bits, axis=1))
    assert bad.size == 0, f"{bad.size} interior points do not reproduce their pattern (first: region {bad[:5]})"
    assert np.all(res.radius > 0), "non-positive radius"
    worst = np.inf
    for s in range(0, len(res.bits), chunk):
        sl = slice(s, s + chunk)
        A, _ = region_affine_batch(Ws, bs, res.bits[sl])  # (n, N, d)
        G = A if basis is None else A @ basis
        g = np.linalg.norm(G, axis=2)
        r = res.radius[sl]
        inf = np.isinf(r)
        if inf.any():
            # an unbounded region holding arbitrarily large balls: only constant neurons allowed
            scale = np.maximum(1.0, np.abs(A[inf]).max(axis=(1, 2)))
            assert np.all(g[inf] <= 1e-12 * scale[:, None]), "radius inf but a neuron cuts the region"
        rr = np.where(inf, 0.0, r)
        need = rr[:, None] * g * (1 - rel) - 1e-12
        margin = np.abs(Z[sl]) - need
        i, j = np.unravel_index(np.argmin(margin), margin.shape)
        worst = min(worst, float(margin[i, j]))
        assert margin[i, j] >= 0, (f"region {s + i}: pre-activation {j} is {abs(Z[s + i, j]):.3e} from 0 but "
                                   f"radius * ||grad|| = {need[i, j]:.3e}")
        if domain_hs is not None:
            Hn, H0 = domain_hs
            Gd = Hn if basis is None else Hn @ basis
            slack = -(res.points[sl] @ Hn.T + H0) - rr[:, None] * np.linalg.norm(Gd, axis=1) * (1 - rel) + 1e-12
            assert np.all(slack[~inf] >= 0), f"a radius ball leaves the domain (regions {s + np.flatnonzero(np.any(slack < 0, axis=1))[:5]})"
    return worst


# ----------------------------------------------------------------------------- yardstick

def naive_module():
    if not (BENCH / "naive_enum.py").exists():
        pytest.skip(f"the shared yardstick {BENCH / 'naive_enum.py'} is missing")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import naive_enum

    return naive_enum


def naive_patterns(Ws, bs, lo, hi):
    """The yardstick's pattern set (as bytes) over the box [lo, hi]."""
    ne = naive_module()
    pats, _ = ne.enumerate_regions([np.asarray(W) for W in Ws], [np.asarray(b) for b in bs],
                                   np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    return {bytes(np.array(p, dtype=np.uint8)) for p in pats}, len(pats)


# ----------------------------------------------------------------------------- background yardstick

BENCH_NET = "bench_d2_16x3.npz"


def _bench_net_path():
    for p in (INPUTS / BENCH_NET, BENCH / "nets" / BENCH_NET):
        if p.exists():
            return p
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under ``mpiexec`` every rank runs pytest: give each rank its own ``--junitxml`` report
    (``REPORT.rankR`` for R > 0) so that rank 0's report, which tests/run_suites.py counts, is
    never overwritten.  The rank comes from the process manager (hydra's PMI_RANK)."""
    xml = getattr(config.option, "xmlpath", None)
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK")
    if xml and rank not in (None, "", "0"):
        config.option.xmlpath = f"{xml}.rank{rank}"


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    """Start the yardstick on bench_d2_16x3 in the background when its test is selected.

    It takes about a minute; running it beside the rest of the suite (the machine has 2 cores)
    keeps the whole suite short.  The test waits for it and compares pattern sets.
    """
    if config.option.collectonly:
        return
    bench = [it for it in items if getattr(it, "originalname", it.name) == "test_bench_d2_16x3_matches_naive"]
    if not bench:
        return
    for it in bench:  # run it last, so that the yardstick has the whole suite's time to finish
        items.remove(it)
        items.append(it)
    net = _bench_net_path()
    if net is None or not (BENCH / "naive_enum.py").exists():
        return
    import tempfile

    tmp = tempfile.mkdtemp(prefix="mpi_enum_naive_")
    out = Path(tmp) / "patterns.npy"
    proc = subprocess.Popen([sys.executable, str(BENCH / "naive_enum.py"), str(net), "--patterns", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            stdin=subprocess.DEVNULL)
    config._mpi_enum_bg_naive = SimpleNamespace(proc=proc, out=out, tmp=tmp, net=net)


def pytest_sessionfinish(session, exitstatus):
    bg = getattr(session.config, "_mpi_enum_bg_naive", None)
    if bg is None:
        return
    if bg.proc.poll() is None:
        bg.proc.kill()
        bg.proc.wait()
    shutil.rmtree(bg.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def bg_naive_bench(request):
    bg = getattr(request.config, "_mpi_enum_bg_naive", None)
    if bg is None:
        if _bench_net_path() is None:
            pytest.skip(f"{BENCH_NET} not found in inputs/ or shared/bench/nets/")
        naive_module()  # skips with a reason when the yardstick is missing
        pytest.skip("background yardstick was not started")
    return bg


@pytest.fixture(scope="session")
def naive():
    return naive_module()


@pytest.fixture(scope="session")
def mpiexec():
    mpx = mpiexec_cmd()
    if mpx is None:
        pytest.skip("no mpiexec.mpich / mpiexec on PATH")
    return mpx


@pytest.fixture(scope="session")
def data_dir():
    """tests/data, with its fixture networks (re)generated deterministically when missing."""
    sys.path.insert(0, str(DATA))
    try:
        import make_data
    finally:
        sys.path.remove(str(DATA))
    make_data.ensure(DATA)
    return DATA


@pytest.fixture(scope="session")
def acas_nnet():
    for p in (INPUTS / "acasxu_1_1.nnet", SHARED / "data" / "acasxu" / "ACASXU_run2a_1_1_batch_2000.nnet"):
        if p.exists():
            return p
    pytest.skip("acasxu_1_1.nnet not found in inputs/")
