"""The fast C kernel against the reference LP kernel and the benchmark yardstick.

Every fast path must give IDENTICAL pattern sets (and per-layer counts and affine ranks) to the
reference kernel ``Engine(problem, kernel="lp")``, and, on [-1, 1]^d boxes (where the engine's
normalised coordinates are the input coordinates, so the tolerance means the same), to the
yardstick ``../shared/bench/naive_enum.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mpi_enum import kernel_c
from mpi_enum.domain import box_domain, line_domain, plane_domain, unbounded_domain
from mpi_enum.engine import CEngine, Engine, LPEngine, Problem, WorkItem, choose_kernel
from mpi_enum.network import Network

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "bench"

needs_c = pytest.mark.skipif(kernel_c.load() is None, reason=f"C kernel unavailable: {kernel_c.error()}")


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


def run(problem, kernel, budget=None):
    eng = Engine(problem, kernel)
    out = {}

    def emit(bits, yc, r, ranks):
        assert bits not in out, "a region was emitted twice"
        out[bits] = (np.array(yc), r, ranks)

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


def check_same(problem, budget=None, check_balls=True):
    ref, st_ref = run(problem, "lp")
    fast, st_fast = run(problem, "c", budget=budget)
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
                assert np.all(dom.G @ yc + r <= dom.h + 1e-9)
    return ref


def test_kernel_choice():
    net = rand_net(np.random.default_rng(0), 2, [3])
    p = Problem(net, box_domain(-np.ones(2), np.ones(2)))
    assert isinstance(Engine(p, "lp"), LPEngine)
    assert choose_kernel(p, "lp") == "lp"
    if kernel_c.load() is not None:
        assert isinstance(Engine(p), CEngine)
        assert isinstance(Engine(p, "c"), CEngine)
    with pytest.raises(ValueError):
        Engine(p, "nonsense")


@needs_c
@pytest.mark.parametrize("seed", range(12))
def test_random_vs_reference(seed):
    rng = np.random.default_rng(100 + seed)
    d = int(rng.integers(1, 5))
    widths = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(1, 4)))]
    net = rand_net(rng, d, widths)
    check_same(Problem(net, box_domain(-np.ones(d), np.ones(d)), 1e-9))


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_budgeted_frontier(seed):
    rng = np.random.default_rng(200 + seed)
    d = 2 + seed % 3
    net = rand_net(rng, d, [7, 6, 5])
    check_same(Problem(net, box_domain(-np.ones(d), np.ones(d))), budget=5 + 11 * seed)


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_random_vs_yardstick(seed):
    nv = naive()
    rng = np.random.default_rng(300 + seed)
    d = 1 + seed % 3
    net = rand_net(rng, d, [5, 4] if seed % 2 else [6])
    ref = check_same(Problem(net, box_domain(-np.ones(d), np.ones(d)), 1e-9))
    pats, _ = nv.enumerate_regions(net.weights, net.biases, -np.ones(d), np.ones(d), tol=1e-9)
    assert {bytes(p) for p in pats} == set(ref)


def _degenerate_nets(rng):
    d = 3
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
    W0 = rng.normal(size=(8, d)); b0 = np.zeros(8)
    yield "fan", Network([W0, rng.normal(size=(4, 8)), rng.normal(size=(1, 4))], [b0, rng.normal(size=4) * 0.1, np.zeros(1)])


@needs_c
@pytest.mark.parametrize("which", ["duplicates", "zero_rows", "dead_layer", "all_active", "fan"])
def test_degenerate_nets(which):
    rng = np.random.default_rng(7)
    net = dict(_degenerate_nets(rng))[which]
    d = net.input_dim
    check_same(Problem(net, box_domain(-np.ones(d), np.ones(d))))
    check_same(Problem(net, box_domain(-np.ones(d), np.ones(d))), budget=9)


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_other_domains(seed):
    rng = np.random.default_rng(400 + seed)
    d = 4
    net = rand_net(rng, d, [6, 5])
    lo, hi = -np.ones(d) * 2, np.ones(d) * 1.5
    lo[1] = hi[1] = 0.3  # a fixed coordinate
    check_same(Problem(net, box_domain(lo, hi)))
    P = rng.normal(size=(3, d))
    check_same(Problem(net, plane_domain(P, d)))
    check_same(Problem(net, line_domain(rng.normal(size=(2, d)) * 2, d)))
    check_same(Problem(net, unbounded_domain(d)), check_balls=True)
    check_same(Problem(net, unbounded_domain(d)), budget=6)


@needs_c
@pytest.mark.parametrize("tol", [1e-10, 1e-9, 1e-8, 1e-7])
def test_tolerances(tol):
    rng = np.random.default_rng(500)
    net = rand_net(rng, 3, [8, 8])
    check_same(Problem(net, box_domain(-np.ones(3), np.ones(3)), tol))


@needs_c
def test_dense_lp_against_scipy():
    """The C LP solver (with its certified band and HiGHS fallback) against scipy's HiGHS."""
    from scipy.optimize import linprog
    import ctypes

    rng = np.random.default_rng(600)
    for trial in range(60):
        k = int(rng.integers(1, 7))
        net = rand_net(rng, k, [3])
        eng = Engine(Problem(net, box_domain(-np.ones(k), np.ones(k))), "c")
        m = int(rng.integers(0, 3))  # path rows (<= N = 3)
        A = rng.normal(size=(m, k)); A /= np.linalg.norm(A, axis=1)[:, None]
        y0 = rng.uniform(-0.5, 0.5, size=k)
        c = A @ y0 + rng.uniform(0.01, 1.0, size=m)  # y0 strictly inside
        a = rng.normal(size=k); a /= np.linalg.norm(a)
        c0 = float(a @ y0 + rng.normal() * 0.7)
        dp = ctypes.POINTER(ctypes.c_double)
        yout = np.zeros(k)
        t = eng._lib.kc_lp(eng._ctx, m, np.ascontiguousarray(A).ctypes.data_as(dp), c.ctypes.data_as(dp),
                           a.ctypes.data_as(dp), c0, y0.ctypes.data_as(dp), yout.ctypes.data_as(dp))
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


@needs_c
def test_bench_d2_vs_reference():
    net_path = BENCH / "nets" / "bench_d2_16x3.npz"
    if not net_path.exists():
        pytest.skip(f"{net_path} not found")
    from mpi_enum.network import load_network

    net = load_network(str(net_path))
    lo, hi = net.default_box()
    ref = check_same(Problem(net, box_domain(lo, hi), 1e-9))
    assert len(ref) == 930


@needs_c
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
    fast, _ = run(Problem(net, box_domain(lo, hi), 1e-9), "c")
    assert {bytes(p) for p in pats} == set(fast)


@needs_c
@pytest.mark.parametrize("which", ["random", "duplicates", "fan"])
def test_forced_fallbacks(monkeypatch, which):
    """A huge uncertainty band sends most LPs to the HiGHS fallback: results must not change."""
    monkeypatch.setattr(CEngine, "BAND_REL", 1e7)  # band = 0.01 at tol 1e-9
    rng = np.random.default_rng(8)
    net = rand_net(rng, 3, [6, 5]) if which == "random" else dict(_degenerate_nets(rng))[which]
    p = Problem(net, box_domain(-np.ones(3), np.ones(3)))
    check_same(p)
    _, st = run(p, "c")
    assert st.lp_fallbacks > 0


@pytest.mark.parametrize("kernel", ["lp", pytest.param("c", marks=needs_c)])
def test_emit_batch(kernel):
    rng = np.random.default_rng(9)
    net = rand_net(rng, 2, [6, 5])
    p = Problem(net, box_domain(-np.ones(2), np.ones(2)))
    ref, _ = run(p, "lp")
    eng = Engine(p, kernel)
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
