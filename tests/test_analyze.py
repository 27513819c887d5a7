"""mpi-enum analyze: per-layer counts, ranks, children versus the arrangement bound."""
import argparse
import csv
from math import comb

import numpy as np
import pytest

from _postproc_util import random_net, write_serial_result  # noqa: E402

from mpi_enum.post import analyze  # noqa: E402
from mpi_enum.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    t = tmp_path_factory.mktemp("analyze")
    # d = 4 with narrow layers: many regions whose affine map has rank < 4
    net = random_net(t / "net.npz", [4, 6, 7, 2], seed=5)
    out = write_serial_result(net, t / "res.h5")
    return t, net, out


def test_children_reported_and_bounded(two_layer):
    t, net, out = two_layer
    res = analyze.load_result(out)
    rep = analyze.analyze_result(res)
    # regions per layer: recomputed from prefixes, equal to the recorded counts
    for row in rep["layers"]:
        assert row["n_regions"] == row["n_regions_recorded"] > 0
    assert rep["layers"][-1]["n_regions"] == res.n
    # every rank value of the layer-1 regions has a children row, and none exceeds the bound
    ranks1 = sorted({r["rank"] for r in rep["rank_distribution"] if r["layer"] == 1})
    assert len(ranks1) >= 2  # the test network is chosen so that ranks vary
    rows = {r["rank"]: r for r in rep["rank_children"] if r["layer"] == 1}
    assert sorted(rows) == ranks1
    n2 = res.widths[1]
    for r, row in rows.items():
        assert row["children_mean"] >= 1
        assert row["bound"] == sum(comb(n2, i) for i in range(r + 1))
        assert row["children_max"] <= row["bound"]
        assert row["children_min"] <= row["children_median"] <= row["children_max"]
    # the children sum to the layer-2 count
    assert sum(r["children_mean"] * r["n_parents"] for r in rows.values()) == pytest.approx(res.n)
    # layer 0 row: the domain is cut into the layer-1 regions, within the bound for rank k
    row0 = [r for r in rep["rank_children"] if r["layer"] == 0][0]
    assert row0["children_mean"] == rep["layers"][0]["n_regions"] <= row0["bound"]
    assert rep["rank_inconsistent_groups"] == 0


def test_independent_children_count(two_layer):
    """Children of each layer-1 region, counted directly from the patterns."""
    t, net, out = two_layer
    res = analyze.load_result(out)
    bits = res.bits()
    w1 = res.widths[0]
    parents = {}
    for row in bits:
        parents.setdefault(row[:w1].tobytes(), set()).add(row.tobytes())
    rep = analyze.analyze_result(res)
    total_parents = sum(r["n_parents"] for r in rep["rank_children"] if r["layer"] == 1)
    assert total_parents == len(parents)
    mx = max(r["children_max"] for r in rep["rank_children"] if r["layer"] == 1)
    assert mx == max(len(v) for v in parents.values())
    # every statistic of every rank row, from the children counts themselves
    ranks = np.concatenate([c["affine_rank"][:, 0] for _, c in res.chunks(("affine_rank",))])
    by_rank = {}
    for row, r in zip(bits, ranks):
        by_rank.setdefault(int(r), {})[row[:w1].tobytes()] = len(parents[row[:w1].tobytes()])
    for r in (r for r in rep["rank_children"] if r["layer"] == 1):
        ch = np.array(list(by_rank[r["rank"]].values()))
        q = np.quantile(ch, [0.0, 0.25, 0.5, 0.75, 1.0])
        assert r["n_parents"] == len(ch) and r["children_mean"] == ch.mean()
        assert [r[f"children_{n}"] for n in ("min", "q25", "median", "q75", "max")] == q.tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1001])
def test_quantiles_from_a_histogram_equal_numpys(n):
    """analyze keeps a histogram of children per parent (bounded memory at 10^8 regions), not
    the counts; its quartiles are numpy's linear ones of the expanded counts."""
    v = np.random.default_rng(n).integers(1, 40, n)
    got = analyze.hist_quantiles(np.bincount(v))
    assert got == np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0]).tolist()


def test_outputs_written(two_layer, capsys):
    t, net, out = two_layer
    d = t / "an"
    assert analyze.main(argparse.Namespace(out_h5=out, output=str(d))) == 0
    txt = capsys.readouterr().out
    assert "children per region" in txt and "bound" in txt
    for f in ("layers.csv", "rank_distribution.csv", "rank_children.csv", "regions_per_layer.png",
              "rank_distribution.png", "children_vs_rank.png", "summary.json"):
        assert (d / f).stat().st_size > 0, f
    with open(d / "rank_children.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert any(r["layer"] == "1" for r in rows)
    for r in rows:
        assert float(r["children_max"]) <= float(r["bound"])
    assert (d / "children_vs_rank.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        analyze.main(argparse.Namespace(out_h5=str(tmp_path / "x.h5"), output=None))
    (tmp_path / "y.h5").write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        analyze.main(argparse.Namespace(out_h5=str(tmp_path / "y.h5"), output=None))


def test_arrangement_bound():
    assert analyze.arrangement_bound(3, 2) == 7  # three lines in the plane
    assert analyze.arrangement_bound(5, 0) == 1
    assert analyze.arrangement_bound(4, 9) == 16
    g, n = analyze.prefix_groups(np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1]], np.uint8), 2)
    assert n == 2 and g[0] == g[1] != g[2]
