"""mpi-enum graph: adjacency, linear regions, vertices, volumes and the decision boundary, each
checked against an oracle of tests/_geometry_oracle.py (no mpi_enum code inside), and the
command's failures (exit 2, one line; the source file untouched)."""
from __future__ import annotations

import hashlib
import os
import sys

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _geometry_oracle as orc  # noqa: E402
from _postproc_util import random_net, write_serial_result  # noqa: E402
from conftest import load_npz_arrays, read_result, run_cli, save_npz  # noqa: E402

from mpi_enum.errors import InputError, OutputError  # noqa: E402
from mpi_enum.geometry.graph import build_graph  # noqa: E402


def _graph_file(tmp_path, widths, seed, name="r", vertices=False, **dom):
    net = random_net(tmp_path / f"{name}.npz", widths, seed=seed)
    res = write_serial_result(net, tmp_path / f"{name}.h5", **(dom or {"box": (-1.0, 1.0)}))
    s = build_graph(res, vertices=vertices)
    return net, res, s


def _graph(path):
    with h5py.File(path, "r") as f:
        edges = f["graph/edges"][()]
        return {tuple(e): int(n) for e, n in zip(edges.tolist(), f["graph/neuron"][()])}, dict(f.attrs)


@pytest.mark.parametrize("widths,seed", [([2, 8, 8, 2], 1), ([2, 6, 5, 4, 3], 7)])
def test_2d_adjacency_matches_polygons_and_euler(tmp_path, widths, seed):
    net, res, s = _graph_file(tmp_path, widths, seed)
    Ws, bs, _, _ = load_npz_arrays(net)
    r = read_result(res)
    lo, hi = -np.ones(2), np.ones(2)
    polys = orc.region_polygons(Ws, bs, r.bits, r.points, lo, hi)
    want = orc.polygon_pairs(polys)
    got, attrs = _graph(res)
    assert set(got) == want
    assert s["graph_unmatched"] == 0 and s["graph_one_sided"] == 0
    for (i, j), neuron in got.items():  # the named neuron's hyperplane carries the shared edge
        Hn, H0, who = orc.region_rows(Ws, bs, r.bits[i], lo, hi)
        assert neuron in who.tolist() and r.bits[i][neuron] != r.bits[j][neuron]
    V, n_box = orc.euler_vertices_and_boundary_edges(polys, lo, hi)
    assert V - (len(got) + n_box) + len(polys) == 1
    assert int(attrs["n_edges"]) == len(got) and int(attrs["format_version"]) == 2


@pytest.mark.parametrize("d,widths,seed", [(3, [6, 5], 3), (4, [6, 4], 4), (5, [5, 4], 5), (6, [5, 3], 6)])
def test_neighbours_and_volumes_in_higher_dimension(tmp_path, d, widths, seed):
    net, res, s = _graph_file(tmp_path, [d] + widths + [2], seed, vertices=True)
    Ws, bs, _, _ = load_npz_arrays(net)
    r = read_result(res)
    lo, hi = -np.ones(d), np.ones(d)
    oracle = orc.sampled_neighbours(Ws, bs, r.bits, lo, hi, np.random.default_rng(1000 + seed))
    got, _ = _graph(res)
    assert set(oracle) <= set(got)  # every facet thicker than 1e-5 found ...
    thin = set(got) - set(oracle)  # ... and anything else only as a facet thinner than that
    for i, j in thin:
        Hn, H0, who = orc.region_rows(Ws, bs, r.bits[i], lo, hi)
        rad, _ = orc.facet_point(Hn, H0, int(np.flatnonzero(who == got[(i, j)])[0]))
        assert 0 < rad <= 1e-5
    with h5py.File(res, "r") as f:
        vol = f["regions/volume"][()]
        off = f["vertices/offset"][()]
        pts = f["vertices/points"][()]
    assert abs(vol.sum() - 2.0 ** d) <= 1e-6 * 2.0 ** d
    assert np.all(vol > 0) and off[0] == 0 and off[-1] == len(pts) and np.all(np.diff(off) >= d + 1)
    for i in range(0, r.bits.shape[0], max(1, r.bits.shape[0] // 5)):  # vertices lie on the region
        Hn, H0, _ = orc.region_rows(Ws, bs, r.bits[i], lo, hi)
        assert np.all(pts[off[i]:off[i + 1]] @ Hn.T + H0 <= 1e-9)
    ref = orc.box_volume(Ws, bs, r.bits[:10], r.points[:10], lo, hi)
    assert abs(vol[:10].sum() - ref) <= 1e-9 * max(ref, 1.0)


def _dead_neuron_net(path):
    """Layer-1 neuron 0 feeds only layer-2 neuron 0, which is dead on the whole box: the output
    map is the same on both sides of neuron 0's hyperplane."""
    rng = np.random.default_rng(11)
    W0, b0 = rng.normal(size=(6, 2)), rng.normal(scale=0.3, size=6)
    W1, b1 = rng.normal(size=(5, 6)), rng.normal(scale=0.3, size=5)
    W1[:, 0] = 0.0
    W1[0] = 0.0
    W1[0, 0], b1[0] = 1.0, -100.0  # dead: neuron 0 of layer 1 is at most ~4 on the box
    W2, b2 = rng.normal(size=(2, 5)), rng.normal(size=2)
    return save_npz(path, [W0, W1, W2], [b0, b1, b2])


@pytest.mark.parametrize("which", ["random", "dead"])
def test_linear_regions_match_brute_force(tmp_path, which):
    if which == "dead":
        net = str(_dead_neuron_net(tmp_path / "dead.npz"))
    else:
        net = random_net(tmp_path / "n.npz", [2, 7, 6, 1], seed=2)
    res = write_serial_result(net, tmp_path / "r.h5", box=(-1.0, 1.0))
    s = build_graph(res)
    Ws, bs, _, _ = load_npz_arrays(net)
    r = read_result(res)
    lo, hi = -np.ones(2), np.ones(2)
    pairs = orc.polygon_pairs(orc.region_polygons(Ws, bs, r.bits, r.points, lo, hi))
    want = orc.brute_linear_regions(Ws, bs, r.bits, pairs)
    with h5py.File(res, "r") as f:
        lab = f["regions/linear_region"][()]
        n_lin = int(f.attrs["n_linear_regions"])
    got = {}
    for i, v in enumerate(lab):
        got.setdefault(v, set()).add(i)
    assert {frozenset(g) for g in got.values()} == want
    assert n_lin == len(want) == s["n_linear_regions"] and sorted(set(lab)) == list(range(n_lin))
    if which == "dead":
        assert n_lin < r.bits.shape[0]  # the regions on both sides of neuron 0 merged
        assert s["n_affine_maps"] <= n_lin


def test_decision_boundary_2d(tmp_path):
    net, res, s = _graph_file(tmp_path, [2, 8, 6, 3], 5)
    Ws, bs, _, _ = load_npz_arrays(net)
    with h5py.File(res, "r") as f:
        seg = f["decision/segments"][()]
        cls = f["decision/classes"][()]
        length = float(f.attrs["decision_boundary_length"])
    assert len(seg) > 0 and abs(np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1).sum() - length) < 1e-9
    mid = seg.mean(axis=1)
    out = orc.forward(Ws, bs, mid)
    top2 = np.sort(out, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] <= 1e-9 * np.abs(out).max())  # ties at every midpoint
    assert np.all(np.sort(np.argsort(out, axis=1)[:, -2:], axis=1) == np.sort(cls, axis=1))
    h = 1.0 / 600  # class changes between grid neighbours ~ sum |dy| / h (rows) and |dx| / h (columns)
    g = np.arange(-1 + h / 2, 1, h)
    X, Y = np.meshgrid(g, g)
    C = orc.predicted(Ws, bs, np.stack([X.ravel(), Y.ravel()], axis=1)).reshape(X.shape)
    rows = (C[:, 1:] != C[:, :-1]).sum() * h
    cols = (C[1:, :] != C[:-1, :]).sum() * h
    d = np.abs(seg[:, 1] - seg[:, 0])
    assert abs(rows - d[:, 1].sum()) <= 0.03 * length + 4 * h
    assert abs(cols - d[:, 0].sum()) <= 0.03 * length + 4 * h


def test_plane_slice_and_version1_file(tmp_path):
    net = random_net(tmp_path / "n.npz", [4, 6, 5, 2], seed=9)
    P = np.array([[0.0, 0, 0, 0], [1.0, 0.5, 0, 0], [0.0, 0.3, 1.0, -0.5]])
    np.save(tmp_path / "p.npy", P)
    res = write_serial_result(net, tmp_path / "r.h5", plane=str(tmp_path / "p.npy"))
    with h5py.File(res, "r+") as f:
        f.attrs["format_version"] = 1  # a file of the first format
    s = build_graph(res, str(tmp_path / "g.h5"), vertices=True)
    assert s["graph_unmatched"] == 0 and s["n_edges"] > 0
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert int(f.attrs["format_version"]) == 2
        area = f["regions/volume"][()].sum()
    u, v = P[1] - P[0], P[2] - P[0]
    assert abs(area - np.sqrt((u @ u) * (v @ v) - (u @ v) ** 2)) <= 1e-6 * area


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_bad_input_one_line_exit_2(tmp_path):
    net = random_net(tmp_path / "n.npz", [2, 5, 1], seed=0)
    res = write_serial_result(net, tmp_path / "r.h5", box=(-1.0, 1.0))
    (tmp_path / "junk.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    part = tmp_path / "part.h5"
    part.write_bytes(open(res, "rb").read())
    with h5py.File(part, "r+") as f:
        f.attrs["complete"] = False
    unb = write_serial_result(net, tmp_path / "unb.h5", unbounded=True)
    (tmp_path / "exists.h5").write_text("x")
    cases = [([tmp_path / "missing.h5"], "no such file"), ([tmp_path / "junk.h5"], "not an HDF5 file"),
             ([tmp_path / "other.h5"], "not an mpi_enum result"), ([part], "partial result"),
             ([res, "-o", tmp_path / "exists.h5"], "exists"), ([unb, "--vertices"], "bounded domain"),
             ([res, "-o", tmp_path / "nodir" / "g.h5"], "does not exist")]
    before = _sha(res)
    for args, text in cases:
        p = run_cli(["graph"] + args, timeout=120)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0] and "Traceback" not in p.stderr, (args, p.stderr)
    assert _sha(res) == before and open(tmp_path / "exists.h5").read() == "x"
    p = run_cli(["graph", res], timeout=120)  # in place, through the command
    assert p.returncode == 0 and "edges" in p.stdout, p.stderr
    assert _graph(res)[0]


def test_failed_write_leaves_the_source_intact(tmp_path, monkeypatch):
    net = random_net(tmp_path / "n.npz", [2, 5, 4, 1], seed=3)
    res = write_serial_result(net, tmp_path / "r.h5", box=(-1.0, 1.0))
    before = _sha(res)
    from mpi_enum.io import graph_file

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(graph_file, "_write_parts", boom)
    with pytest.raises(OutputError):
        build_graph(res)
    assert _sha(res) == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    with pytest.raises(InputError):
        build_graph(str(tmp_path / "none.h5"))


def test_verify_volume_oracle_up_to_d6(tmp_path):
    from _postproc_util import corrupt_copy

    from mpi_enum.post.verify import verify_result

    net = random_net(tmp_path / "n.npz", [5, 5, 4, 1], seed=8)
    res = write_serial_result(net, tmp_path / "r.h5", box=(-1.0, 1.0))
    vol = {c.name: c for c in verify_result(res, net, samples=2000)}["volumes sum to domain"]
    assert vol.status == "PASS", vol.detail
    bad = corrupt_copy(res, tmp_path / "drop.h5", drop=3)
    vol = {c.name: c for c in verify_result(bad, net, samples=0)}["volumes sum to domain"]
    assert vol.status == "FAIL", vol.detail


def test_analyze_and_plot_use_the_graph(tmp_path):
    net, res, s = _graph_file(tmp_path, [2, 8, 6, 3], 5)
    p = run_cli(["analyze", res], timeout=120)
    assert p.returncode == 0 and f"{s['n_linear_regions']} linear regions" in p.stdout, p.stdout + p.stderr
    assert "decision boundary length" in p.stdout
    for how in ("linear", "class"):
        p = run_cli(["plot", res, "-o", tmp_path / f"{how}.png", "--color-by", how], timeout=120)
        assert p.returncode == 0 and os.path.getsize(tmp_path / f"{how}.png") > 1000, p.stderr
    plain = write_serial_result(net, tmp_path / "plain.h5", box=(-1.0, 1.0))
    p = run_cli(["plot", plain, "-o", tmp_path / "x.png", "--color-by", "linear"], timeout=120)
    assert p.returncode == 2 and "mpi-enum graph" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli(["analyze", plain], timeout=120)
    assert p.returncode == 0 and "region graph: none" in p.stdout


def test_coincident_hyperplanes_make_one_edge_named_by_the_lower_neuron(tmp_path):
    """Degenerate facets: neurons 1 and 5 of the first layer share one hyperplane (5 = 2 x 1) and
    neuron 6 is its negation; the graph still equals the polygon oracle's, and each edge across
    that hyperplane is named by neuron 1 (the lowest of the group)."""
    rng = np.random.default_rng(11)
    W0 = rng.normal(size=(5, 2))
    b0 = rng.normal(size=5) * 0.3
    W0 = np.vstack([W0, 2.0 * W0[1], -W0[1]])
    b0 = np.concatenate([b0, [2.0 * b0[1], -b0[1]]])
    Ws = [W0, rng.normal(size=(4, 7)), rng.normal(size=(2, 4))]
    bs = [b0, rng.normal(size=4) * 0.3, np.zeros(2)]
    net = tmp_path / "dup.npz"
    save_npz(net, Ws, bs)
    res = write_serial_result(net, tmp_path / "dup.h5", box=(-1.0, 1.0))
    s = build_graph(res)
    r = read_result(res)
    lo, hi = -np.ones(2), np.ones(2)
    polys = orc.region_polygons(Ws, bs, r.bits, r.points, lo, hi)
    got, _ = _graph(res)
    assert set(got) == orc.polygon_pairs(polys)
    assert s["graph_degenerate"] > 0
    across = [(i, j) for (i, j) in got if r.bits[i][1] != r.bits[j][1]]
    assert across and all(got[e] == 1 for e in across)
    V, n_box = orc.euler_vertices_and_boundary_edges(polys, lo, hi)
    assert V - (len(got) + n_box) + len(polys) == 1


def test_polytope_volume_on_shapes_with_known_volumes():
    """The recursion over faces against closed forms: cubes (2^k), simplices (1/k!),
    cross-polytopes (2^k/k!) and a square pyramid (an apex on four facets: not simple)."""
    from math import factorial
    from itertools import product

    from mpi_enum.geometry.volume import polytope_volume

    for k in range(1, 8):
        H, g = np.vstack([np.eye(k), -np.eye(k)]), np.ones(2 * k)
        V = np.array(list(product([-1.0, 1.0], repeat=k)))
        assert abs(polytope_volume(V, H, g) - 2.0 ** k) <= 1e-12 * 2.0 ** k
        H, g = np.vstack([-np.eye(k), np.ones((1, k))]), np.concatenate([np.zeros(k), [1.0]])
        V = np.vstack([np.zeros(k), np.eye(k)])
        assert abs(polytope_volume(V, H, g) - 1.0 / factorial(k)) <= 1e-12 / factorial(k)
        if k <= 5:
            H = np.array(list(product([-1.0, 1.0], repeat=k)))
            V = np.vstack([np.eye(k), -np.eye(k)])
            want = 2.0 ** k / factorial(k)
            assert abs(polytope_volume(V, H, np.ones(len(H))) - want) <= 1e-12 * want
    # square pyramid: base [-1, 1]^2 at z = 0, apex (0, 0, 2): volume 4 * 2 / 3
    V = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 2]], float)
    H = np.array([[0, 0, -1], [2, 0, 1], [-2, 0, 1], [0, 2, 1], [0, -2, 1]], float)
    g = np.array([0, 2, 2, 2, 2], float)
    assert abs(polytope_volume(V, H, g) - 8.0 / 3.0) <= 1e-12


@pytest.mark.parametrize("d,widths,seed", [(7, [3, 2], 7), (8, [2, 2], 8)])
def test_volumes_sum_to_the_box_in_dimension_7_and_8(tmp_path, d, widths, seed):
    """Above qhull's hull (k > 6) the volumes come from the recursion over faces: they sum to the
    box's volume, every region's vertices satisfy its rows, and the vertices span the region."""
    net, res, s = _graph_file(tmp_path, [d] + widths + [2], seed, vertices=True)
    Ws, bs, _, _ = load_npz_arrays(net)
    r = read_result(res)
    lo, hi = -np.ones(d), np.ones(d)
    with h5py.File(res, "r") as f:
        vol = f["regions/volume"][()]
        off = f["vertices/offset"][()]
        pts = f["vertices/points"][()]
    assert len(vol) == r.bits.shape[0] >= 3
    assert abs(vol.sum() - 2.0 ** d) <= 1e-6 * 2.0 ** d
    assert np.all(vol > 0) and np.all(np.diff(off) >= d + 1)
    for i in range(len(vol)):
        Hn, H0, _ = orc.region_rows(Ws, bs, r.bits[i], lo, hi)
        assert np.all(pts[off[i]:off[i + 1]] @ Hn.T + H0 <= 1e-9)
