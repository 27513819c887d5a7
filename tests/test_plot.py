"""mpi-enum plot: region polygons tile the domain; the figure is written."""
import argparse
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _postproc_util import random_net, save_points, write_serial_result  # noqa: E402

from mpi_enum.post import plot  # noqa: E402
from mpi_enum.post.geometry import Chart  # noqa: E402
from mpi_enum.io.reader import load_result  # noqa: E402
from mpi_enum.errors import InputError  # noqa: E402


def _edge_distance(P, polys):
    """Distance of each point in P to the nearest polygon edge."""
    best = np.full(len(P), np.inf)
    for V in polys:
        A, B = V, np.roll(V, -1, axis=0)
        D = B - A
        L2 = np.maximum((D ** 2).sum(axis=1), 1e-300)
        t = np.clip(((P[:, None, :] - A[None]) * D[None]).sum(axis=2) / L2[None], 0, 1)
        Q = A[None] + t[..., None] * D[None]
        best = np.minimum(best, np.sqrt(((P[:, None, :] - Q) ** 2).sum(axis=2)).min(axis=1))
    return best


def _check_tiling(res, polys, n_grid=90):
    """Every grid point lies in exactly one polygon (away from edges), with the right pattern."""
    from matplotlib.path import Path

    chart = Chart(res.domain)
    allv = np.concatenate(polys)
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n_grid), np.linspace(lo[1], hi[1], n_grid))
    U = np.stack([gx.ravel(), gy.ravel()], axis=1)
    inside_dom = np.all(U @ chart.Gu.T <= chart.hu - 1e-9, axis=1)
    U = U[inside_dom]
    count = np.zeros(len(U), int)
    owner = np.full(len(U), -1)
    for i, V in enumerate(polys):
        assert len(V) >= 3, f"region {i} has an empty polygon"
        m = Path(V).contains_points(U)
        count += m
        owner[m] = i
    far = _edge_distance(U, polys) > 1e-6 * float(np.abs(hi - lo).max())
    assert far.sum() > 0.8 * len(U)
    assert np.all(count[far] == 1), f"{np.sum(count[far] == 0)} gaps, {np.sum(count[far] > 1)} overlaps"
    # the owning polygon's pattern is the network's pattern at the grid point
    X = chart.to_x(U[far])
    pats = res.net.patterns(X).astype(np.uint8)
    assert np.array_equal(pats, res.bits()[owner[far]])
    # areas add up to the domain's area
    from mpi_enum.post.geometry import polygon_area

    areas = np.array([polygon_area(V) for V in polys])
    assert np.all(areas > 0)  # counter-clockwise, non-degenerate
    return areas.sum()


def test_box_polygons_tile_the_domain(tmp_path):
    net = random_net(tmp_path / "n.npz", [2, 10, 8, 3], seed=7, lo=[-1, -2], hi=[2, 1])
    out = write_serial_result(net, tmp_path / "r.h5")
    res = load_result(out)
    polys = plot.region_polygons(res)
    assert len(polys) == res.n
    area = _check_tiling(res, polys)
    assert area == pytest.approx(9.0, rel=1e-9)


def test_plane_polygons_tile_the_slice(tmp_path):
    net = random_net(tmp_path / "n.npz", [6, 10, 10, 2], seed=8)
    P = np.random.default_rng(1).normal(size=(3, 6))
    pts = save_points(tmp_path / "plane.npy", P)
    out = write_serial_result(net, tmp_path / "p.h5", plane=pts)
    res = load_result(out)
    polys = plot.region_polygons(res)
    area = _check_tiling(res, polys)
    u, v = P[1] - P[0], P[2] - P[0]
    par = np.sqrt(max(u @ u * (v @ v) - (u @ v) ** 2, 0.0))  # area of the parallelogram
    assert area == pytest.approx(par, rel=1e-9)
    # the plot chart maps the anchors to (0,0), (1,0), (0,1)
    chart = Chart(res.domain)
    pc = plot.PlotChart(res, chart)
    assert np.allclose(pc(chart.to_u(P)), [[0, 0], [1, 0], [0, 1]], atol=1e-9)


def test_png_written_all_colourings(tmp_path):
    net = random_net(tmp_path / "n.npz", [2, 8, 8, 4], seed=9)
    out = write_serial_result(net, tmp_path / "r.h5")
    for cb in ("affine", "rank", "rank1", "layer1", "layer2", "radius", "class"):
        png = tmp_path / f"f_{cb}.png"
        assert plot.main(argparse.Namespace(out_h5=out, output=str(png), color_by=cb)) == 0
        data = png.read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 5000
    with pytest.raises(InputError, match="color-by"):
        plot.main(argparse.Namespace(out_h5=out, output=str(tmp_path / "x.png"), color_by="layer7"))


def test_affine_colouring_merges_equal_maps(tmp_path):
    # a hidden neuron with zero output weight splits regions without changing the output map:
    # the two sides get the same colour
    rng = np.random.default_rng(3)
    W0, b0 = rng.normal(size=(6, 2)), rng.normal(size=6) * 0.3
    W1 = rng.normal(size=(2, 6))
    W1[:, 0] = 0.0  # neuron 0 of layer 1 never affects the output
    np.savez(tmp_path / "n.npz", W0=W0, b0=b0, W1=W1, b1=np.zeros(2))
    out = write_serial_result(tmp_path / "n.npz", tmp_path / "r.h5")
    res = load_result(out)
    ids = plot._affine_ids(res, Chart(res.domain))
    assert len(np.unique(ids)) < res.n


def test_rejects_non_2d(tmp_path):
    net = random_net(tmp_path / "n.npz", [3, 5, 2], seed=1)
    out = write_serial_result(net, tmp_path / "r.h5")
    with pytest.raises(InputError, match="dimension 3"):
        plot.main(argparse.Namespace(out_h5=out, output=str(tmp_path / "x.png"), color_by="affine"))


def test_cli_plot_analyze_convert(tmp_path):
    import subprocess

    net = random_net(tmp_path / "n.npz", [2, 6, 5, 2], seed=11)
    out = write_serial_result(net, tmp_path / "r.h5")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mpi_enum", *map(str, a)], capture_output=True, text=True,
                              env=env, timeout=120)

    r = cli("plot", out, "-o", tmp_path / "f.png", "--color-by", "layer2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    r = cli("plot", out, "-o", tmp_path / "g.png", "--color-by", "bogus")
    assert r.returncode == 2 and "color-by" in r.stderr and "Traceback" not in r.stderr
    r = cli("analyze", out, "-o", tmp_path / "an")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "an" / "rank_children.csv").exists()
    r = cli("convert", net, "-o", tmp_path / "c.npz")
    assert r.returncode == 0, r.stderr
    r = cli("convert", net, "-o", tmp_path / "c.npz")
    assert r.returncode == 2 and "exists" in r.stderr
