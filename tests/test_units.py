"""Networks with other units than ReLU (the network IR, :mod:`mpi_enum.model.network`): LeakyReLU /
PReLU slopes and linear neurons (the skip paths of residual blocks), end to end.

Oracles that share no code with the engine: a brute force over every pattern of the gated neurons
(each pattern's cell built here from the weights and tested with scipy's HiGHS LP), random
samples whose forward-pass patterns (computed here with numpy, not with ``Network``) must all be
stored, and ``verify``'s volume sum in 2-D.  The residual network's chain form is written by hand
here (y = x + relu(W x + b): a layer of gated neurons and of linear copies of x), so the engine's
answer is compared with a brute force over the residual network itself.
"""
from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from scipy.optimize import linprog

import mpi_enum
from mpi_enum.model.network import Network, validate

from test_checkpoint import check_exact, run_interrupted


def _cheb_radius(A, c, lo, hi):
    """Chebyshev radius of {A x <= c} inside the box (HiGHS), capped at 1."""
    d = len(lo)
    nr = np.linalg.norm(A, axis=1)
    Aub = np.vstack([np.hstack([A, nr[:, None]]), np.hstack([np.eye(d), np.ones((d, 1))]),
                     np.hstack([-np.eye(d), np.ones((d, 1))])])
    r = linprog(np.r_[np.zeros(d), -1.0], A_ub=Aub, b_ub=np.concatenate([c, hi, -lo]),
                bounds=[(None, None)] * d + [(None, 1.0)], method="highs")
    return -r.fun if r.status == 0 else -np.inf


def brute_force(Ws, bs, slopes, linear, lo, hi, rmin=1e-6):
    """Every gated pattern whose cell holds a ball of radius > rmin: a set of 0/1 tuples.

    The cell of a pattern: each gated neuron's pre-activation (the composition of the layers, an
    inactive neuron's output scaled by its slope, a linear neuron's passed on) on its side."""
    d = Ws[0].shape[1]
    n_gated = sum(int(np.sum(~np.asarray(m, bool))) for m in linear)
    found = set()
    for pat in itertools.product((0, 1), repeat=n_gated):
        rows, rhs = [], []
        M, m0, q = np.eye(d), np.zeros(d), 0
        for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
            Z, z0 = W @ M, W @ m0 + b
            g = np.ones(len(b))
            for j in range(len(b)):
                if linear[l][j]:
                    continue
                if pat[q]:
                    rows.append(-Z[j]); rhs.append(z0[j])
                else:
                    rows.append(Z[j]); rhs.append(-z0[j])
                    g[j] = slopes[l][j]
                q += 1
            M, m0 = g[:, None] * Z, g * z0
        if _cheb_radius(np.array(rows), np.array(rhs), lo, hi) > rmin:
            found.add(pat)
    return found


def forward_patterns(Ws, bs, slopes, linear, X):
    """Gated neurons' pre-activation signs (> 0) by a plain numpy forward pass."""
    h, out = X, []
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
        z = h @ W.T + b
        out.append((z > 0)[:, ~np.asarray(linear[l], bool)])
        h = np.where(z > 0, z, z * np.where(linear[l], 1.0, slopes[l]))
    return np.concatenate(out, axis=1)


def _stored(res):
    N = res.network.n_hidden
    return {tuple(int(v) for v in np.unpackbits(p, count=N)) for p in res.patterns}


def leaky_net(d, widths, seed, slope_kind="leaky"):
    rng = np.random.default_rng(seed)
    dims = [d] + list(widths) + [2]
    Ws = [rng.normal(size=(dims[i + 1], dims[i])) / np.sqrt(dims[i]) for i in range(len(dims) - 1)]
    bs = [rng.normal(size=dims[i + 1]) * 0.3 for i in range(len(dims) - 1)]
    if slope_kind == "leaky":
        slopes = [np.full(w, 0.1) for w in widths]
    else:  # PReLU-like: a slope per neuron, negative ones and 1 included
        slopes = [rng.choice([0.0, 0.25, -0.5, 1.0, 2.0], size=w) for w in widths]
    linear = [np.zeros(w, bool) for w in widths]
    return Ws, bs, slopes, linear


def residual_net(d, width, seed, blocks=2, parts=False):
    """y_0 = x; y_{i+1} = y_i + U_i relu(V_i y_i + c_i); output R y_blocks + r, as a chain: layer i
    holds the gated neurons of block i and d linear copies of y_i.  With ``parts`` also the
    blocks ``[(V, c, U), ...]`` and ``(R, r)``."""
    rng = np.random.default_rng(seed)
    Ws, bs, slopes, linear, blk = [], [], [], [], []
    P = np.eye(d)  # y_i from the previous layer's outputs (the input itself for i = 0)
    for i in range(blocks):
        V = rng.normal(size=(width, d)) / np.sqrt(d)
        c = rng.normal(size=width) * 0.3
        U = rng.normal(size=(d, width)) / np.sqrt(width)
        Ws.append(np.vstack([V @ P, P]))
        bs.append(np.concatenate([c, np.zeros(d)]))
        slopes.append(np.zeros(width + d))
        linear.append(np.r_[np.zeros(width, bool), np.ones(d, bool)])
        blk.append((V, c, U))
        P = np.hstack([U, np.eye(d)])  # y_{i+1} = U h + y_i
    R, r = rng.normal(size=(3, d)), rng.normal(size=3)
    Ws.append(R @ P)
    bs.append(r)
    if parts:
        return (Ws, bs, slopes, linear), blk, (R, r)
    return Ws, bs, slopes, linear


def _network(Ws, bs, slopes, linear, name="units.npz"):
    return validate(Network([W.copy() for W in Ws], [b.copy() for b in bs], slopes=slopes, linear=linear,
                            source=name), name)


CASES = {
    "leaky_2d": (lambda: leaky_net(2, (5, 4), 1), 2),
    "prelu_3d": (lambda: leaky_net(3, (4, 4, 3), 2, "prelu"), 3),
    "residual_2d": (lambda: residual_net(2, 4, 3), 2),
    "residual_3d": (lambda: residual_net(3, 3, 4), 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_patterns_equal_the_brute_force(case):
    make, d = CASES[case]
    Ws, bs, slopes, linear = make()
    lo, hi = -np.ones(d), np.ones(d)
    net = _network(Ws, bs, slopes, linear)
    res = mpi_enum.enumerate(net, box=(lo, hi))
    got = _stored(res)
    assert len(got) == res.n_regions  # no pattern twice
    want = brute_force(Ws, bs, slopes, linear, lo, hi)
    assert got == want, (len(got), len(want))
    assert res.n_regions > 8
    # every stored point reproduces its pattern by the plain forward pass
    P = forward_patterns(Ws, bs, slopes, linear, res.interior_points)
    assert np.array_equal(np.packbits(P, axis=1), res.patterns)
    # 10^5 random samples land in stored regions
    X = np.random.default_rng(0).uniform(lo, hi, size=(100_000, d))
    S = forward_patterns(Ws, bs, slopes, linear, X)
    assert {tuple(int(v) for v in r) for r in np.unique(S, axis=0)} <= got


def test_residual_chain_is_the_residual_network():
    """The hand-written chain equals the residual model evaluated as written (output and the
    pre-activation signs of its ReLUs)."""
    d, width = 2, 4
    (Ws, bs, slopes, linear), blk, (R, r) = residual_net(d, width, 3, parts=True)
    X = np.random.default_rng(9).uniform(-1, 1, size=(50, d))
    y, pre = X, []
    for V, c, U in blk:
        z = y @ V.T + c
        pre.append(z > 0)
        y = y + np.maximum(z, 0) @ U.T
    net = _network(Ws, bs, slopes, linear)
    np.testing.assert_allclose(net.forward(X), y @ R.T + r, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(net.patterns(X), np.concatenate(pre, axis=1))
    assert net.hidden_widths == [width, width] and net.layer_widths == [width + d, width + d]


def test_result_file_carries_the_units_and_verify_passes(tmp_path):
    Ws, bs, slopes, linear = residual_net(2, 4, 3)
    slopes = [np.where(m, 0.0, 0.2) for m in linear]  # leaky gated neurons, linear copies
    arrays = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    for i, (s, m) in enumerate(zip(slopes, linear)):
        arrays[f"slope{i}"], arrays[f"linear{i}"] = s, m
    path = str(tmp_path / "res.npz")
    np.savez(path, **arrays)
    out = str(tmp_path / "out.h5")
    res = mpi_enum.enumerate(path)
    res.save(out)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == 3
        assert list(f.attrs["hidden_widths"]) == [4, 4]
        assert f["regions/pattern"].shape == (res.n_regions, 1)
        np.testing.assert_array_equal(f["network/slope0"][()], np.where(linear[0], 1.0, 0.2))
        np.testing.assert_array_equal(f["network/linear1"][()], linear[1].astype(np.uint8))
    back = mpi_enum.open(out)
    assert back.network.hidden_widths == [4, 4] and not back.network.is_relu
    np.testing.assert_array_equal(back.network.slope_of(0), res.network.slope_of(0))
    from mpi_enum.post.verify import verify_result

    checks = verify_result(out, path, samples=20000)
    bad = [c for c in checks if c.status == "FAIL"]
    assert not bad, bad
    vol = [c for c in checks if c.name.startswith("volumes")]
    assert vol and vol[0].status == "PASS"
    # the same file with the slopes stripped from /network is another network: verify says so
    with h5py.File(out, "a") as f:
        f["network/slope0"][...] = np.where(linear[0], 1.0, 0.0)
    checks = verify_result(out, path, samples=1000)
    assert any(c.name == "network matches" and c.status == "FAIL" for c in checks)


def test_relu_network_file_stays_version_2(tmp_path):
    Ws, bs, slopes, linear = leaky_net(2, (4, 3), 5)
    net = _network(Ws, bs, [np.zeros(4), np.zeros(3)], linear)  # all-zero slopes: plain ReLU
    assert net.is_relu and net.slopes is None and net.linear is None
    out = str(tmp_path / "relu.h5")
    mpi_enum.enumerate(net).save(out)
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == 2 and "network/slope0" not in f


def test_bad_unit_arrays_are_input_errors(tmp_path):
    from mpi_enum.errors import InputError
    from mpi_enum.loaders import load_network

    Ws, bs, _, _ = leaky_net(2, (4,), 6)
    base = {"W0": Ws[0], "b0": bs[0], "W1": Ws[1], "b1": bs[1]}
    for extra, msg in (({"slope0": np.zeros(3)}, "slopes of hidden layer 0 has shape"),
                       ({"slope0": np.array([0, np.nan, 0, 0])}, "finite"),
                       ({"linear0": np.ones(4, bool)}, "every hidden neuron is linear"),
                       ({"linear0": np.array([0, 2, 0, 0])}, "booleans"),
                       ({"slope1": np.zeros(2)}, "slope1 is given but the network has 1 hidden layers")):
        p = str(tmp_path / "bad.npz")
        np.savez(p, **base, **extra)
        with pytest.raises(InputError, match=msg) as ei:
            load_network(p)
        assert p in str(ei.value) and "\n" not in str(ei.value)


def test_interrupted_checkpoints_of_a_residual_network_resume_exactly(tmp_path):
    """Work items carry the linear neurons' bits; region rows only the gated ones (fewer bytes)."""
    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.problem import Problem

    Ws, bs, slopes, linear = residual_net(3, 4, 11)
    slopes = [np.where(m, 0.0, 0.05) for m in linear]
    net = _network(Ws, bs, slopes, linear)
    net.sha256 = "units"
    problem = Problem(net, box_domain(-np.ones(3), np.ones(3)), 1e-9)
    assert problem.N == 14 and problem.n_bits == 8 and problem.pattern_bytes == 1
    ckdir = str(tmp_path / "ck")
    run_interrupted(problem, ckdir, seed=3)
    check_exact(ckdir, problem, ("units", 11), size=2)


def test_convert_keeps_the_units_and_graph_keeps_version_3(tmp_path):
    """``mpi-enum convert`` of a residual LeakyReLU model writes the slopes and linear neurons (the
    same network: equal outputs, patterns and regions), and ``mpi-enum graph`` leaves the file at
    version 3 with every region's affine map counted."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from mpi_enum.cli import main

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.act = nn.Linear(2, 4), nn.Linear(4, 2), nn.LeakyReLU(0.2)
            self.out = nn.Linear(2, 3)

        def forward(self, x):
            return self.out(x + self.b(self.act(self.a(x))))

    pt, npz = str(tmp_path / "res.pt2"), str(tmp_path / "res.npz")  # torch.export: no pickled class
    torch.export.save(torch.export.export(Res().eval(), (torch.zeros(1, 2),)), pt)
    assert main(["convert", pt, "-o", npz]) == 0
    from mpi_enum.loaders import load_network

    a, b = load_network(pt), load_network(npz)
    X = np.random.default_rng(2).uniform(-1, 1, size=(100, 2))
    np.testing.assert_allclose(b.forward(X), a.forward(X), rtol=1e-12, atol=1e-12)
    assert b.hidden_widths == [4] and b.layer_widths == [6] and not b.is_relu
    ra, rb = mpi_enum.enumerate(pt), mpi_enum.enumerate(npz)
    assert sorted(bytes(r) for r in ra.patterns) == sorted(bytes(r) for r in rb.patterns)
    out, g = str(tmp_path / "r.h5"), str(tmp_path / "g.h5")
    rb.save(out)
    assert main(["graph", out, "-o", g]) == 0
    with h5py.File(g, "r") as f:
        assert int(f.attrs["format_version"]) == 3
        assert f["regions/linear_region"].shape == (rb.n_regions,)
        assert 1 <= int(f.attrs["n_linear_regions"]) <= rb.n_regions
