"""Max units in the result file (version 4), ``verify``, ``graph``, ``convert`` and checkpoints.

Oracles that do not share the engine's code: the selector of every stored point computed here
by a plain numpy forward pass (argmax of each window's pre-activations); the ReLU form of a
2-input max network, max(a, b) = b + relu(a - b), which has the same regions and so the same
facet graph; a tampered file that ``verify`` must fail; verify's area sum in 2-D.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import mpi_enum
from mpi_enum.cli import main
from mpi_enum.model.network import Network, validate

from test_checkpoint import check_exact, run_interrupted


def _arrays(d=2, seed=1):
    """ReLU(6) -> [max of 2, max of 3, ReLU, ReLU] -> ReLU(4): the next layer reads one column per
    group, repeated on its members (the pooled value's weights)."""
    rng = np.random.default_rng(seed)
    W0, b0 = rng.normal(size=(6, d)), rng.normal(size=6) * 0.3
    W1, b1 = rng.normal(size=(7, 6)), rng.normal(size=7) * 0.3
    V = rng.normal(size=(4, 4))
    W2 = np.hstack([np.repeat(V[:, [0]], 2, axis=1), np.repeat(V[:, [1]], 3, axis=1), V[:, 2:]])
    return {"W0": W0, "b0": b0, "W1": W1, "b1": b1, "W2": W2, "b2": rng.normal(size=4) * 0.3,
            "W3": rng.normal(size=(3, 4)), "b3": np.zeros(3), "group1": np.array([0, 0, 1, 1, 1, -1, -1])}


def _own_forward(a, X):
    """(bits, selectors) of points X by numpy alone: layer 1's groups [0:2] and [2:5]."""
    z0 = X @ a["W0"].T + a["b0"]
    h0 = np.maximum(z0, 0)
    z1 = h0 @ a["W1"].T + a["b1"]
    s = np.stack([np.argmax(z1[:, 0:2], axis=1), np.argmax(z1[:, 2:5], axis=1)], axis=1)
    h1 = np.zeros_like(z1)
    r = np.arange(len(X))
    h1[r, s[:, 0]] = z1[r, s[:, 0]]
    h1[r, 2 + s[:, 1]] = z1[r, 2 + s[:, 1]]
    h1[:, 5:] = np.maximum(z1[:, 5:], 0)
    z2 = h1 @ a["W2"].T + a["b2"]
    b1 = np.zeros((len(X), 7), bool)
    b1[r, s[:, 0]] = b1[r, 2 + s[:, 1]] = True  # one-hot: a selected member's bit is 1 even at value 0
    b1[:, 5:] = z1[:, 5:] > 0
    bits = np.concatenate([z0 > 0, b1, z2 > 0], axis=1)
    return bits, s


@pytest.fixture
def maxnet(tmp_path):
    path = str(tmp_path / "max.npz")
    a = _arrays()
    np.savez(path, **a)
    return path, a


def test_file_version_4_selector_and_verify(maxnet, tmp_path):
    path, a = maxnet
    out = str(tmp_path / "max.h5")
    assert main(["run", path, "-o", out]) == 0
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == 4
        assert list(f.attrs["hidden_widths"]) == [6, 7, 4]
        np.testing.assert_array_equal(f["network/group1"][()], a["group1"])
        np.testing.assert_array_equal(f["network/group0"][()], -np.ones(6))
        X, sel = f["regions/interior_point"][()], f["regions/selector"][()]
        bits = np.unpackbits(f["regions/pattern"][()], axis=1, count=17)
    own_bits, own_sel = _own_forward(a, X)
    np.testing.assert_array_equal(sel, own_sel)
    np.testing.assert_array_equal(bits, own_bits.astype(np.uint8))
    assert len(set(sel[:, 0])) == 2 and len(set(sel[:, 1])) >= 2  # both groups switch on this box
    from mpi_enum.post.verify import verify_result

    checks = verify_result(out, path, samples=50000)
    assert not [c for c in checks if c.status == "FAIL"], checks
    assert [c.status for c in checks if c.name.startswith("volumes")] == ["PASS"]
    back = mpi_enum.open(out)
    np.testing.assert_array_equal(back.selectors, sel)
    # a selector that is not the argmax of the pattern's group: verify fails
    with h5py.File(out, "a") as f:
        s = f["regions/selector"][()]
        s[0, 1] = (s[0, 1] + 1) % 3
        f["regions/selector"][...] = s
    bad = [c.name for c in verify_result(out, path, samples=1000) if c.status == "FAIL"]
    assert bad == ["patterns reproduced"]
    # another grouping of the same weights is another network
    with h5py.File(out, "a") as f:
        f["network/group1"][...] = np.array([0, 0, 0, 1, 1, -1, -1])
    assert "network matches" in [c.name for c in verify_result(out, path, samples=0) if c.status == "FAIL"]


def test_a_file_without_its_selector_is_refused(maxnet, tmp_path):
    path, _ = maxnet
    out = str(tmp_path / "max.h5")
    mpi_enum.enumerate(path).save(out)
    with h5py.File(out, "a") as f:
        del f["regions/selector"]
    assert main(["verify", out, path]) == 2


def _max_and_relu_form(seed=3, k=3):
    rng = np.random.default_rng(seed)
    A, a0 = rng.normal(size=(2 * k, 2)), rng.normal(size=2 * k) * 0.4
    V, v0 = rng.normal(size=(4, k)), rng.normal(size=4) * 0.4
    Wo = rng.normal(size=(2, 4))
    maxnet = validate(Network([A, np.repeat(V, 2, axis=1), Wo], [a0, v0, np.zeros(2)],
                              groups=[np.repeat(np.arange(k), 2), -np.ones(4, int)]), "max.npz")
    D = np.zeros((2 * k, 2 * k))
    for u in range(k):
        D[u, 2 * u], D[u, 2 * u + 1], D[k + u, 2 * u + 1] = 1.0, -1.0, 1.0
    S = np.hstack([np.eye(k), np.eye(k)])
    relunet = validate(Network([D @ A, V @ S, Wo], [D @ a0, v0, np.zeros(2)],
                               linear=[np.r_[np.zeros(k, bool), np.ones(k, bool)], np.zeros(4, bool)]), "relu.npz")
    return maxnet, relunet


def test_graph_of_max_units_equals_the_graph_of_the_relu_form(tmp_path):
    """The facet graph (edges, linear regions, affine maps) is geometry: equal for both forms."""
    maxnet, relunet = _max_and_relu_form()
    X = np.random.default_rng(0).uniform(-1, 1, (300, 2))
    np.testing.assert_allclose(maxnet.forward(X), relunet.forward(X), rtol=1e-12, atol=1e-12)
    attrs = []
    for name, net in (("max", maxnet), ("relu", relunet)):
        out = str(tmp_path / f"{name}.h5")
        mpi_enum.enumerate(net).save(out)
        assert main(["graph", out]) == 0
        with h5py.File(out, "r") as f:
            attrs.append({k: int(f.attrs[k]) for k in ("n_regions", "n_edges", "n_linear_regions", "n_affine_maps",
                                                       "graph_unmatched", "format_version")})
    m, r = attrs
    assert m.pop("format_version") == 4 and r.pop("format_version") == 3
    assert m == r and m["n_edges"] > m["n_regions"] > 10 and m["graph_unmatched"] == 0


def test_convert_keeps_the_groups(maxnet, tmp_path):
    path, a = maxnet
    out = str(tmp_path / "again.npz")
    assert main(["convert", path, "-o", out]) == 0
    with np.load(out) as z:
        np.testing.assert_array_equal(z["group1"], a["group1"])
    ra, rb = mpi_enum.enumerate(path), mpi_enum.enumerate(out)
    assert sorted(bytes(p) for p in ra.patterns) == sorted(bytes(p) for p in rb.patterns)


@pytest.mark.parametrize("bad, msg", [({"group1": np.array([0, 1, 0, 1, 1, -1, -1])}, "contiguous"),
                                      ({"group1": np.zeros(5, int)}, "groups of hidden layer 1"),
                                      ({"group3": np.zeros(3, int)}, "group3 is given")])
def test_bad_group_arrays_are_one_line_errors(maxnet, tmp_path, bad, msg, capsys):
    path, a = maxnet
    p = str(tmp_path / "bad.npz")
    np.savez(p, **{**a, **bad})
    assert main(["run", p, "-o", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and p in err[0] and msg in err[0], err


def test_interrupted_checkpoints_of_a_max_network_resume_exactly(tmp_path):
    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.problem import Problem

    a = _arrays(d=3, seed=5)
    a["W0"] = np.random.default_rng(5).normal(size=(6, 3))
    net = validate(Network([a[f"W{i}"] for i in range(4)], [a[f"b{i}"] for i in range(4)],
                           groups=[-np.ones(6, int), a["group1"], -np.ones(4, int)]), "max.npz")
    net.sha256 = "max"
    problem = Problem(net, box_domain(-np.ones(3), np.ones(3)), 1e-9)
    ckdir = str(tmp_path / "ck")
    run_interrupted(problem, ckdir, seed=4)
    check_exact(ckdir, problem, ("max", 5), size=2)
