"""The compiled kernel (the one search) against the test oracle and the benchmark yardstick.

Every case must give IDENTICAL pattern sets (and per-layer counts and affine ranks) to the
oracle ``tests/reference_engine.py`` (the same search in Python, every LP by HiGHS), and, on
[-1, 1]^d boxes (where the engine's normalised coordinates are the input coordinates, so the
tolerance means the same), to the yardstick ``../shared/bench/naive_enum.py``.  Input dimensions
above ``DENSE_LP_MAX_K`` (33, 64) exercise the path where every LP goes to HiGHS through the
kernel's callback, with the path rows' ids.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from mpi_enum.engine import native, search
from mpi_enum.engine.search import Engine, enumerate_serial
from mpi_enum.engine.work import WorkItem
from mpi_enum.model.domain import box_domain, line_domain, plane_domain, unbounded_domain
from mpi_enum.model.network import Network
from mpi_enum.model.problem import Problem
from reference_engine import ReferenceEngine
import reference_engine

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "bench"
K = native._kernel


def naive():
    if not (BENCH / "naive_enum.py").exists():
        pytest.skip(f"yardstick not found at {BENCH}/naive_enum.py")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import naive_enum

    return naive_enum


def rand_net(rng, d, widths, scale=1.0):
    sizes = [d] + list(widths) + [1]
    Ws = [rng.normal(size=(sizes[i + 1], sizes[i])) * np.sqrt(2.0 / sizes[i]) * scale for i in range(len(sizes) - 1)]
    bs = [rng.normal(size=sizes[i + 1]) * 0.3 for i in range(len(sizes) - 1)]
    return Network(Ws, bs)


def cube(d):
    return box_domain(-np.ones(d), np.ones(d))


def cube_polytope(d):
    """[-1, 1]^d as a polytope with one redundant row: not a box domain, so for d > 32 every LP
    goes to HiGHS (box domains use the kernel's box LP first)."""
    from mpi_enum.model.domain import polytope_domain

    A = np.vstack([np.eye(d), -np.eye(d), np.ones((1, d)) / np.sqrt(d)])
    b = np.concatenate([np.ones(2 * d), [2.0 * np.sqrt(d)]])
    return polytope_domain(A, b, d)


def run(problem, cls=Engine, budget=None):
    eng = cls(problem)
    out = {}

    def emit(bits, yc, r, ranks):
        assert bits not in out, "a region was emitted twice"
        out[bits] = (np.array(yc), r, tuple(int(x) for x in ranks))

    if budget is None:
        assert eng.explore(eng.root_item(), emit) == []
    else:  # budgeted: exercise the frontier, through encode/decode as the MPI driver does
        k, N = problem.k, problem.N
        todo = [eng.root_item()]
        while todo:
            item = todo.pop()
            rec = item.encode(k)
            size = WorkItem.record_size(k, N)
            assert rec.size <= size
            rec = np.concatenate([rec, np.zeros(size - rec.size)])  # fixed-size records, as sent
            todo.extend(eng.explore(WorkItem.decode(rec, k), emit, budget=budget, poll=lambda: None, poll_every=7))
    return out, eng.stats


def check_same(problem, budget=None, check_balls=True, cls=Engine, ball_tol=1e-9):
    """``ball_tol``: how far an emitted ball may stick out of the domain (the HiGHS centres of the
    k > 32 path satisfy the rows to HiGHS's primal feasibility tolerance, 1e-7, only)."""
    ref, st_ref = run(problem, ReferenceEngine)
    fast, st_fast = run(problem, cls, budget=budget)
    assert set(fast) == set(ref)
    for b in ref:
        assert fast[b][2] == ref[b][2], "affine ranks differ"
    if budget is None:
        assert st_fast.layer_counts.tolist() == st_ref.layer_counts.tolist()
    if check_balls:
        net, dom = problem.net, problem.domain
        for b, (yc, r, _) in fast.items():
            assert r > problem.tol
            x = dom.to_x(yc[None, :])
            assert net.patterns(x)[0].astype(np.uint8).tobytes() == b, "emitted centre is not in its region"
            if dom.G.size:
                assert np.all(dom.G @ yc + r <= dom.h + ball_tol)
    return ref, st_fast


# ----------------------------------------------------------------------------- the module itself
def test_one_engine_no_kernel_choice():
    p = Problem(rand_net(np.random.default_rng(0), 2, [3]), cube(2))
    eng = Engine(p)
    assert eng.kernel == "c" and eng.dense_lp and eng.poll_every_hint == 256
    with pytest.raises(TypeError):
        Engine(p, "lp")
    for gone in ("choose_kernel", "KERNELS", "C_KERNEL_MAX_K", "LPEngine", "CEngine"):
        assert not hasattr(search, gone), gone


def test_decision_constants_come_from_the_module():
    names = set(K.DECISIONS)
    assert {"CONST_NEURON_REL", "RANK_REL", "RANK_ZERO_REL", "GS_DEP", "RATIO_MIN", "DROP_MARGIN", "BAND_REL",
            "BAND_ABS", "DENSE_LP_MAX_K", "BALL_CAP"} <= names
    for n in names:
        assert isinstance(getattr(K, n), (int, float)) and K.DECISIONS[n]
    assert K.DROP_MARGIN == 1e-7 and K.BAND_REL == 0.5 and K.BAND_ABS == 1e-13 and K.DENSE_LP_MAX_K == 32
    assert Engine.BAND_REL == K.BAND_REL and Engine.DENSE_LP_MAX_K == K.DENSE_LP_MAX_K
    assert reference_engine.DROP_MARGIN == K.DROP_MARGIN and reference_engine.RANK_REL == K.RANK_REL
    assert K.STATS[:6] == ("nodes", "lps", "regions", "cert_both", "screened", "lp_fallbacks")


def test_built_from_the_sources_on_disk(tmp_path):
    assert set(K.SOURCES_SHA256) == {"enum_kernel.c", "boxlp.c", "vrep.c", "pymodule.c", "kernel.h", "boxlp.h", "vrep.h",
                                     "decisions.h"}
    assert native.stale_sources() == []
    src = tmp_path / "kernel"
    shutil.copytree(native.KERNEL_SOURCES, src)
    with open(src / "decisions.h", "a") as f:
        f.write("/* edited */\n")
    assert native.stale_sources(str(src)) == ["decisions.h"]


def _import_from_copy(tmp_path, with_kernel, edit=None):
    """Import mpi_enum.engine from a copy of the package (site disabled: no editable finder)."""
    pkg = Path(native.__file__).resolve().parents[1]
    dst = tmp_path / "mpi_enum"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    if with_kernel:
        shutil.copy(K.__file__, dst / "engine")
    if edit:
        with open(dst / "engine" / "kernel" / edit, "a") as f:
            f.write("/* edited */\n")
    paths = [str(tmp_path), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    code = f"import sys; sys.path[:0] = {paths!r}; import mpi_enum.engine; print('imported')"
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)


def test_missing_kernel_names_the_fix(tmp_path):
    res = _import_from_copy(tmp_path, with_kernel=False)
    assert res.returncode != 0
    assert "the compiled kernel mpi_enum.engine._kernel is missing" in res.stderr
    assert "pip install" in res.stderr and "./setup.sh" in res.stderr


def test_stale_kernel_names_the_fix(tmp_path):
    ok = _import_from_copy(tmp_path / "a", with_kernel=True)
    assert ok.returncode == 0 and "imported" in ok.stdout, ok.stderr
    res = _import_from_copy(tmp_path / "b", with_kernel=True, edit="enum_kernel.c")
    assert res.returncode != 0
    assert "older than mpi_enum/engine/kernel/enum_kernel.c" in res.stderr and "pip install" in res.stderr


def _kernel_args(problem):
    p, dom = problem, problem.domain
    return (p.k, list(p.widths), np.concatenate([W.ravel() for W in p.Ws]), np.concatenate(p.bs),
            np.asarray(p.wscale, dtype=float), dom.G.ravel().copy(), dom.h.copy(), dom.y_lo, dom.y_hi, p.tol)


def test_kernel_rejects_bad_arguments():
    p = Problem(rand_net(np.random.default_rng(1), 3, [4, 3]), cube(3))
    args = list(_kernel_args(p))
    kern = native.Kernel(*args, None)
    assert (kern.k, kern.L, kern.N) == (3, 2, 7)
    bad = list(args)
    bad[2] = args[2][:-1]  # W one value short
    with pytest.raises(ValueError, match="W"):
        native.Kernel(*bad, None)
    bad = list(args)
    bad[2] = args[2].astype(np.float32)
    with pytest.raises(TypeError, match="W"):
        native.Kernel(*bad, None)
    bad = list(args)
    bad[1] = [4, 0]
    with pytest.raises(ValueError, match="width"):
        native.Kernel(*bad, None)
    with pytest.raises(TypeError):
        native.Kernel(*args, "not callable")
    with pytest.raises(RuntimeError, match="start"):
        kern.run(10)
    with pytest.raises(ValueError):
        kern.start(8, b"\0" * 8, np.zeros(3), 0.5)  # deeper than N


def test_allocation_failure_is_a_memory_error():
    """Under an address-space limit a huge emit buffer cannot be allocated: MemoryError, and the
    process goes on (what the constructor got is freed)."""
    code = r"""
import resource, sys
import numpy as np
from mpi_enum.engine import native
k, widths = 8, [6, 5]
rng = np.random.default_rng(0)
W = rng.normal(size=6 * 8 + 5 * 6); b = rng.normal(size=11)
args = (k, widths, W, b, np.ones(2), np.zeros(0), np.zeros(0), -np.ones(k), np.ones(k), 1e-9, None)
vm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")][0] * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
for _ in range(50):
    try:
        native.Kernel(*args, emax=2**31 - 1)   # ebits alone: 2^31 * 11 bytes
        print("allocated"); sys.exit(1)
    except MemoryError:
        pass
kern = native.Kernel(*args, emax=64)
print("ok", kern.N)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["ok", "11"]


# ----------------------------------------------------------------------------- against the oracle
@pytest.mark.parametrize("seed", range(12))
def test_random_vs_reference(seed):
    rng = np.random.default_rng(100 + seed)
    d = int(rng.integers(1, 5))
    widths = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(1, 4)))]
    check_same(Problem(rand_net(rng, d, widths), cube(d), 1e-9))


@pytest.mark.parametrize("seed", range(4))
def test_sparse_layers_vs_reference(seed):
    """Layers at most half full (a convolution's or a pooling's matrix): the kernel's transition
    reads them by their nonzeros (CSR); patterns, ranks, layer counts and balls as the reference."""
    rng = np.random.default_rng(150 + seed)
    d = 2 + seed % 2
    net = rand_net(rng, d, [8, 9, 7])
    for l in (1, 2):
        W = net.weights[l]
        W[rng.random(W.shape) < 0.7] = 0.0
        W[0] = 0.0  # a row with no entry at all
    check_same(Problem(net, cube(d), 1e-9))
    check_same(Problem(net, cube(d), 1e-9), budget=7)


@pytest.mark.parametrize("seed", range(4))
def test_budgeted_frontier(seed):
    rng = np.random.default_rng(200 + seed)
    d = 2 + seed % 3
    check_same(Problem(rand_net(rng, d, [7, 6, 5]), cube(d)), budget=5 + 11 * seed)


@pytest.mark.parametrize("seed", range(6))
def test_random_vs_yardstick(seed):
    nv = naive()
    rng = np.random.default_rng(300 + seed)
    d = 1 + seed % 3
    net = rand_net(rng, d, [5, 4] if seed % 2 else [6])
    ref, _ = check_same(Problem(net, cube(d), 1e-9))
    pats, _ = nv.enumerate_regions(net.weights, net.biases, -np.ones(d), np.ones(d), tol=1e-9)
    assert {bytes(p) for p in pats} == set(ref)


def _degenerate_nets(rng, d=3, fan=8):
    # duplicated neurons (and a duplicated, negated one) in the first and second layer
    W0 = rng.normal(size=(5, d)); b0 = rng.normal(size=5) * 0.3
    W0 = np.vstack([W0, W0[1], -W0[2], 2.0 * W0[3]]); b0 = np.concatenate([b0, [b0[1], -b0[2], 2.0 * b0[3]]])
    W1 = rng.normal(size=(4, 8)); b1 = rng.normal(size=4) * 0.3
    W1 = np.vstack([W1, W1[0]]); b1 = np.append(b1, b1[0])
    yield "duplicates", Network([W0, W1, rng.normal(size=(1, 5))], [b0, b1, np.zeros(1)])
    # zero rows (constant neurons, positive and negative bias) and a zero column
    W0 = rng.normal(size=(6, d)); W0[1] = 0.0; W0[4] = 0.0; W0[:, 2] = 0.0
    b0 = rng.normal(size=6) * 0.3; b0[1] = 0.5; b0[4] = -0.5
    W1 = rng.normal(size=(5, 6)); W1[2] = 0.0
    yield "zero_rows", Network([W0, W1, rng.normal(size=(1, 5))], [b0, rng.normal(size=5) * 0.3, np.zeros(1)])
    # a dead layer (every neuron inactive everywhere) followed by a live one
    W0 = rng.normal(size=(6, d)); b0 = rng.normal(size=6) * 0.3
    W1 = rng.normal(size=(4, 6)) * 0.1; b1 = np.full(4, -10.0)
    W2 = rng.normal(size=(5, 4)); b2 = rng.normal(size=5)
    yield "dead_layer", Network([W0, W1, W2, rng.normal(size=(1, 5))], [b0, b1, b2, np.zeros(1)])
    # a layer that is active everywhere (affine pass-through), then a narrow one
    W1 = rng.normal(size=(4, 6)) * 0.01; b1 = np.full(4, 10.0)
    yield "all_active", Network([W0, W1, rng.normal(size=(2, 4)), rng.normal(size=(1, 2))],
                                [b0, b1, rng.normal(size=2) * 0.1, np.zeros(1)])
    # all hyperplanes through one point (a fan: highly degenerate vertex)
    W0 = rng.normal(size=(fan, d)); b0 = np.zeros(fan)
    yield "fan", Network([W0, rng.normal(size=(4, fan)), rng.normal(size=(1, 4))],
                         [b0, rng.normal(size=4) * 0.1, np.zeros(1)])


DEGENERATE = ["duplicates", "zero_rows", "dead_layer", "all_active", "fan"]


@pytest.mark.parametrize("which", DEGENERATE)
def test_degenerate_nets(which):
    net = dict(_degenerate_nets(np.random.default_rng(7)))[which]
    d = net.input_dim
    check_same(Problem(net, cube(d)))
    check_same(Problem(net, cube(d)), budget=9)


@pytest.mark.parametrize("seed", range(3))
def test_other_domains(seed):
    rng = np.random.default_rng(400 + seed)
    d = 4
    net = rand_net(rng, d, [6, 5])
    lo, hi = -np.ones(d) * 2, np.ones(d) * 1.5
    lo[1] = hi[1] = 0.3  # a fixed coordinate
    check_same(Problem(net, box_domain(lo, hi)))
    check_same(Problem(net, plane_domain(rng.normal(size=(3, d)), d)))
    check_same(Problem(net, line_domain(rng.normal(size=(2, d)) * 2, d)))
    check_same(Problem(net, unbounded_domain(d)))
    check_same(Problem(net, unbounded_domain(d)), budget=6)


@pytest.mark.parametrize("tol", [1e-10, 1e-9, 1e-8, 1e-7])
def test_tolerances(tol):
    net = rand_net(np.random.default_rng(500), 3, [8, 8])
    check_same(Problem(net, cube(3), tol))


def test_dense_lp_against_scipy():
    """The kernel's LP (dense solver, certified band, HiGHS fallback) against scipy's HiGHS."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(600)
    for trial in range(60):
        k = int(rng.integers(1, 7))
        eng = Engine(Problem(rand_net(rng, k, [3]), cube(k)))
        m = int(rng.integers(0, 3))  # path rows (<= N = 3)
        A = rng.normal(size=(m, k)); A /= np.linalg.norm(A, axis=1)[:, None]
        y0 = rng.uniform(-0.5, 0.5, size=k)
        c = A @ y0 + rng.uniform(0.01, 1.0, size=m)  # y0 strictly inside
        a = rng.normal(size=k); a /= np.linalg.norm(a)
        c0 = float(a @ y0 + rng.normal() * 0.7)
        t, yout = eng._kern.lp(np.ascontiguousarray(A).ravel(), c, a, c0, y0)
        yout = np.frombuffer(yout)
        R = np.vstack([np.eye(k), -np.eye(k), A, a[None, :]])
        b = np.concatenate([np.ones(2 * k), c, [c0]])
        res = linprog(np.r_[np.zeros(k), -1.0], A_ub=np.hstack([R, np.ones((len(R), 1))]), b_ub=b,
                      bounds=[(None, None)] * k + [(None, 1.0)], method="highs")
        assert res.status == 0
        tref = -res.fun
        if tref > 1e-9:
            assert abs(t - tref) < 1e-9, (trial, t, tref)
            assert np.all(R @ yout + t <= b + 1e-9)
        else:
            assert t <= 1e-9 and t >= tref - 1e-9


def test_bench_d2_vs_reference():
    net_path = BENCH / "nets" / "bench_d2_16x3.npz"
    if not net_path.exists():
        pytest.skip(f"{net_path} not found")
    from mpi_enum.loaders import load_network

    net = load_network(str(net_path))
    lo, hi = net.default_box()
    ref, _ = check_same(Problem(net, box_domain(lo, hi), 1e-9))
    assert len(ref) == 930


@pytest.mark.slow
def test_bench_d2_vs_yardstick():
    """About a minute: the yardstick's own run on bench_d2_16x3."""
    nv = naive()
    net_path = BENCH / "nets" / "bench_d2_16x3.npz"
    if not net_path.exists():
        pytest.skip(f"{net_path} not found")
    Ws, bs, lo, hi = nv.load_npz(str(net_path))
    pats, _ = nv.enumerate_regions(Ws, bs, lo, hi)
    net = Network([np.asarray(W, float) for W in Ws], [np.asarray(b, float) for b in bs])
    fast, _ = run(Problem(net, box_domain(lo, hi), 1e-9))
    assert {bytes(p) for p in pats} == set(fast)


class WideBand(Engine):
    BAND_REL = 1e7  # band = 0.01 at tol 1e-9: most dense-LP answers are not certified


class HighsOnly(Engine):
    DENSE_LP_MAX_K = 0  # no dense LP: as for k > 32 (HiGHS; on box domains the box LP first)
    VREP_MAX_K = 0  # and no vertex sets


class NoVertexSets(Engine):
    VREP_MAX_K = 0  # the LP path on box domains of low dimension


@pytest.mark.parametrize("k,widths", [(1, [5, 4]), (2, [7, 6]), (3, [6, 5, 4]), (4, [7, 6]), (5, [6, 5]),
                                      (6, [6, 4])])
def test_vertex_sets_decide_in_low_dimension(k, widths):
    """Box domains with k <= VREP_MAX_K: the vertex sets decide (almost no LPs), with the same
    patterns, layer counts, ranks and valid balls as the reference, and as the LP path; also
    from rebuilt work items (budget: every item's vertex set rebuilt from its path rows)."""
    p = Problem(rand_net(np.random.default_rng(40 + k), k, widths), cube(k))
    ref, st = check_same(p)
    assert Engine(p).vertex_sets and not NoVertexSets(p).vertex_sets
    assert st.vertex_decisions > 0 and st.vertex_lost == 0
    assert st.lps <= 1 + st.nodes // 50, "the vertex sets should leave almost nothing to the LPs"
    _, st_lp = check_same(p, cls=NoVertexSets)
    assert st_lp.vertex_decisions == 0 and st_lp.lps > st.lps
    check_same(p, budget=7)


def test_vertex_sets_only_where_they_apply():
    rng = np.random.default_rng(3)
    assert not Engine(Problem(rand_net(rng, 3, [4, 3]), cube_polytope(3))).vertex_sets  # not a box
    k = K.VREP_MAX_K + 1
    assert not Engine(Problem(rand_net(rng, k, [4, 3]), cube(k))).vertex_sets


@pytest.mark.parametrize("which,d", [("fan", 2), ("fan", 3), ("duplicates", 3)])
def test_vertex_sets_hand_degenerate_cells_to_the_lps(which, d):
    """Hyperplanes through a vertex (a fan through one point, duplicated neurons on a facet) make
    cells non-simple: those subtrees go back to the LPs, and the results stay exact."""
    rng = np.random.default_rng(8)
    if which == "fan":  # as in _degenerate_nets, for any d
        net = Network([rng.normal(size=(8, d)), rng.normal(size=(4, 8)), rng.normal(size=(1, 4))],
                      [np.zeros(8), rng.normal(size=4) * 0.1, np.zeros(1)])
    else:
        net = dict(_degenerate_nets(rng, d=d))[which]
    p = Problem(net, cube(d))
    _, st = check_same(p)
    assert st.vertex_lost > 0 and st.vertex_decisions > 0
    check_same(p, budget=5)


@pytest.mark.parametrize("which", ["random", "duplicates", "fan"])
@pytest.mark.parametrize("cls,box", [(WideBand, False), (HighsOnly, False), (HighsOnly, True)])
def test_forced_fallbacks(which, cls, box):
    """Sending (most or all) LPs to the HiGHS callback, or to the box LP, must not change the
    results (degenerate nets included)."""
    rng = np.random.default_rng(8)
    net = rand_net(rng, 3, [6, 5]) if which == "random" else dict(_degenerate_nets(rng))[which]
    p = Problem(net, cube(3) if (box or cls is WideBand) else cube_polytope(3))
    _, st = check_same(p, cls=cls)
    if box:
        assert st.lps > 1 and st.lp_fallbacks < st.lps - 1  # the box LP answered
    else:
        assert st.lp_fallbacks > 0
    if cls is HighsOnly and not box:
        assert st.lp_fallbacks == st.lps - 1  # all but the root ball (solved in Python)
    check_same(p, cls=cls, budget=8)


def test_emit_batch():
    rng = np.random.default_rng(9)
    p = Problem(rand_net(rng, 2, [6, 5]), cube(2))
    ref, _ = run(p, ReferenceEngine)
    for cls in (Engine, ReferenceEngine):
        eng = cls(p)
        got = {}

        def batch(bits, Y, R, RK):
            assert bits.shape[1] == p.N and Y.shape[1] == p.k and RK.shape[1] == p.L
            for q in range(len(bits)):
                got[bits[q].tobytes()] = tuple(int(x) for x in RK[q])

        todo = [eng.root_item()]
        while todo:
            todo.extend(eng.explore(todo.pop(), None, budget=13, emit_batch=batch))
        assert set(got) == set(ref)
        assert all(got[b] == ref[b][2] for b in ref)


def test_enumerate_serial():
    p = Problem(rand_net(np.random.default_rng(10), 3, [5, 4]), cube(3))
    out, st = enumerate_serial(p)
    ref, _ = run(p, ReferenceEngine)
    assert {b for b, *_ in out} == set(ref) and st.regions == len(ref)


# ----------------------------------------------------------------------------- k > DENSE_LP_MAX_K
HIGHS_FEAS = 1e-7  # HiGHS's primal feasibility tolerance (its centres meet the rows to this)

@pytest.mark.parametrize("k,widths", [(33, [5, 4]), (64, [4, 3]), (64, [6])])
def test_high_dimension_through_highs(k, widths):
    rng = np.random.default_rng(700 + k + len(widths))
    p = Problem(rand_net(rng, k, widths), cube_polytope(k))
    assert not Engine(p).dense_lp and Engine(p).poll_every_hint == 16
    ref, st = check_same(p, ball_tol=HIGHS_FEAS)
    assert len(ref) > 1 and st.lp_fallbacks == st.lps - 1 > 0
    check_same(p, budget=5, ball_tol=HIGHS_FEAS)


@pytest.mark.parametrize("k,widths", [(33, [5, 4]), (64, [4, 3]), (64, [6]), (200, [5, 4])])
def test_high_dimension_box_lp(k, widths):
    """Box domains with k > 32: the box LP (the box as bounds; bounded dual simplex) decides,
    certified; pattern sets, layer counts, ranks and balls equal the HiGHS reference's."""
    rng = np.random.default_rng(760 + k + len(widths))
    p = Problem(rand_net(rng, k, widths), cube(k))
    ref, st = check_same(p)
    assert len(ref) > 1 and st.lps > 0 and st.lp_fallbacks < st.lps  # the box LP answered
    check_same(p, budget=5)


@pytest.mark.parametrize("k,widths", [(10, [7, 6]), (16, [6, 5]), (32, [5, 4])])
def test_box_lp_replaces_the_dense_lp_above_boxlp_min_k(k, widths):
    """On box domains with BOXLP_MIN_K < k <= DENSE_LP_MAX_K the box LP decides, not the dense
    LP; on the same net over the same cube as a polytope (not a box) the dense LP does; both
    equal the HiGHS reference."""
    from mpi_enum.engine import _kernel as K

    assert K.BOXLP_MIN_K < k <= K.DENSE_LP_MAX_K
    rng = np.random.default_rng(740 + k)
    net = rand_net(rng, k, widths)
    box, poly = Problem(net, cube(k)), Problem(net, cube_polytope(k))
    assert Engine(box).box_lp and not Engine(box).dense_lp
    assert Engine(poly).dense_lp and not Engine(poly).box_lp
    ref, st = check_same(box)
    assert len(ref) > 4 and st.lps > 1 and st.lp_fallbacks < st.lps - 1  # the box LP answered
    assert set(check_same(poly)[0]) == set(ref)
    small = Problem(rand_net(rng, K.BOXLP_MIN_K, [4]), cube(K.BOXLP_MIN_K))
    assert Engine(small).dense_lp and not Engine(small).box_lp


def test_box_lp_in_784_dimensions():
    """The reference paper's input size: a small net on [-1, 1]^784 (and a shifted box)."""
    rng = np.random.default_rng(790)
    net = rand_net(rng, 784, [4, 3])
    ref, st = check_same(Problem(net, cube(784)))
    assert len(ref) > 4 and st.lp_fallbacks < st.lps
    check_same(Problem(net, box_domain(np.zeros(784), np.ones(784))))


def test_high_dimension_other_domains():
    rng = np.random.default_rng(710)
    k = 40
    net = rand_net(rng, k, [4, 3])
    lo, hi = -np.ones(k) * 0.5, np.ones(k) * 2.0
    check_same(Problem(net, box_domain(lo, hi)), ball_tol=HIGHS_FEAS)
    check_same(Problem(net, unbounded_domain(k)), ball_tol=HIGHS_FEAS)


@pytest.mark.parametrize("which", DEGENERATE)
def test_high_dimension_degenerate(which):
    net = dict(_degenerate_nets(np.random.default_rng(720), d=34, fan=6))[which]
    check_same(Problem(net, cube_polytope(34)), ball_tol=HIGHS_FEAS)
    check_same(Problem(net, cube(34)))  # the box LP


@pytest.mark.parametrize("d,which", [(64, "duplicates"), (64, "zero_rows"), (64, "fan"),
                                     (784, "duplicates"), (784, "zero_rows")])  # fan at 784: 50 s
def test_high_dimension_degenerate_box(d, which):
    """The box LP and the subspace LP (2 n1 <= k) on degenerate rows at the reference paper's
    input sizes: the unit cube and a box with one fixed coordinate (the domain drops it)."""
    net = dict(_degenerate_nets(np.random.default_rng(730 + d), d=d, fan=6))[which]
    ref, st = check_same(Problem(net, cube(d)))
    assert len(ref) > 4 and st.lp_fallbacks < st.lps
    lo, hi = -np.ones(d), np.ones(d)
    lo[5] = hi[5] = 0.25  # a fixed coordinate
    check_same(Problem(net, box_domain(lo, hi)))


@pytest.mark.parametrize("d,widths", [(64, [5, 4]), (784, [4, 3])])
def test_high_dimension_vs_yardstick(d, widths):
    """The shared yardstick (its own LPs, none of our code) finds the same pattern set."""
    nv = naive()
    net = rand_net(np.random.default_rng(880 + d), d, widths)
    ref, _ = check_same(Problem(net, cube(d), 1e-9))
    pats, _ = nv.enumerate_regions(net.weights, net.biases, -np.ones(d), np.ones(d), tol=1e-9)
    assert len(ref) > 4 and {bytes(p) for p in pats} == set(ref)


class Recording(Engine):
    """Records every LP the kernel sends to HiGHS (ids, rows) before solving it."""

    def _lp_fallback(self):
        inner = super()._lp_fallback()
        self.calls = []

        def fb(ids, A, c, a, c0):
            self.calls.append((ids, np.frombuffer(A).reshape(len(ids), self.p.k).copy(), np.frombuffer(c).copy()))
            return inner(ids, A, c, a, c0)

        return fb


def test_row_ids_identify_the_rows():
    """The ids the kernel passes are 2*i+bit in path order, and equal id prefixes of consecutive
    LPs mean equal rows (what the HiGHS model's row cache relies on)."""
    rng = np.random.default_rng(730)
    k = 40
    p = Problem(rand_net(rng, k, [6, 5]), cube_polytope(k))
    eng = Recording(p)
    eng.explore(eng.root_item(), lambda *a: None)
    assert len(eng.calls) > 10
    W0 = p.Ws[0] / np.linalg.norm(p.Ws[0], axis=1)[:, None]
    b0 = p.bs[0] / np.linalg.norm(p.Ws[0], axis=1)
    reused = 0
    prev = None
    for ids, A, c in eng.calls:
        assert list(ids) == sorted(set(ids)) and all(0 <= i < 2 * p.N for i in ids)
        for q, rid in enumerate(ids):
            i, bit = divmod(rid, 2)
            if i < p.widths[0]:  # first-layer rows are known in closed form
                sign = -1.0 if bit else 1.0
                assert np.allclose(A[q], sign * W0[i]) and np.isclose(c[q], -sign * b0[i])
        if prev is not None:
            n = 0
            while n < min(len(ids), len(prev[0])) and ids[n] == prev[0][n]:
                n += 1
            assert np.array_equal(A[:n], prev[1][:n]) and np.array_equal(c[:n], prev[2][:n])
            reused += n
        prev = (ids, A, c)
    assert reused > 0


class FailingHighs(Engine):
    """The HiGHS fallback raises on its n-th call."""

    fail_at = 3

    def _lp_fallback(self):
        inner = super()._lp_fallback()
        self.n_calls = 0

        def fb(*args):
            self.n_calls += 1
            if self.n_calls == self.fail_at:
                raise KeyError("highs broke")
            return inner(*args)

        return fb


@pytest.mark.parametrize("budget", [None, 4])
def test_fallback_exception_propagates(budget):
    rng = np.random.default_rng(740)
    p = Problem(rand_net(rng, 40, [5, 4]), cube_polytope(40))
    eng = FailingHighs(p)
    todo = [eng.root_item()]
    with pytest.raises(KeyError, match="highs broke"):
        while todo:
            todo.extend(eng.explore(todo.pop(), lambda *a: None, budget=budget))
    assert eng.n_calls == FailingHighs.fail_at
    # the engine is usable again: a fresh start gives the reference result
    ref, _ = run(p, ReferenceEngine)
    got = set()
    eng.explore(eng.root_item(), lambda b, *a: got.add(b))
    assert got == set(ref)


def test_fallback_exception_propagates_from_a_rebuilt_item():
    """An exception in the LPs of a rebuilt work item (screening at start, or the search) propagates."""
    rng = np.random.default_rng(750)
    p = Problem(rand_net(rng, 40, [6, 5]), cube_polytope(40))
    eng = Engine(p)
    frontier = eng.explore(eng.root_item(), lambda *a: None, budget=3)
    assert frontier
    bad = FailingHighs(p)
    bad.fail_at = 1
    with pytest.raises(KeyError):
        for item in frontier:
            bad.explore(item, lambda *a: None)
