"""``--points none``: result files without /regions/interior_point (format version 5), and the
points recomputed from the patterns (:mod:`mpi_enum.post.points`).

The recomputed points are checked by an oracle that shares no code with the recomputation: a
plain numpy forward pass of the network file gives back every stored pattern (and, with max
units, the selectors), and the recomputed ball is at least the stored one."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import mpi_enum
from mpi_enum.cli import main
from mpi_enum.errors import InputError
from mpi_enum.model.network import random_mlp
from mpi_enum.post.points import recompute_points
from mpi_enum.post.verify import verify_result

from test_max_results import _arrays as max_arrays, _own_forward as max_forward


def _relu_bits(a, X):
    """Patterns of points X by numpy alone (ReLU MLP arrays W0, b0, ...)."""
    L = len([k for k in a if k.startswith("W")]) - 1
    h, out = X, []
    for l in range(L):
        z = h @ a[f"W{l}"].T + a[f"b{l}"]
        out.append(z > 0)
        h = np.maximum(z, 0)
    return np.concatenate(out, axis=1).astype(np.uint8)


def _rows(path):
    with h5py.File(path, "r") as f:
        P = f["regions/pattern"][()]
        o = np.lexsort(P.T)
        return {k: f["regions/" + k][()][o] for k in f["regions"]}, dict(f.attrs)


@pytest.fixture(scope="module")
def d64(tmp_path_factory):
    d = tmp_path_factory.mktemp("points_none")
    a = random_mlp(64, [6, 6], 3)
    net = str(d / "d64.npz")
    np.savez(net, **a)
    full, bare = str(d / "full.h5"), str(d / "bare.h5")
    assert main(["run", net, "-o", full]) == 0
    assert main(["run", net, "-o", bare, "--points", "none"]) == 0
    return dict(net=net, a=a, full=full, bare=bare, dir=d)


def test_file_without_points_is_version_5_with_the_same_rows(d64):
    full, fa = _rows(d64["full"])
    bare, ba = _rows(d64["bare"])
    assert "interior_point" in full and "interior_point" not in bare
    assert int(fa["format_version"]) == 2 and "interior_points" not in fa
    assert int(ba["format_version"]) == 5 and ba["interior_points"] == "none"
    n = len(full["radius"])
    assert n > 500
    for k in ("pattern", "radius", "affine_rank"):
        np.testing.assert_array_equal(bare[k], full[k])
    saved = os.path.getsize(d64["full"]) - os.path.getsize(d64["bare"])
    assert saved >= 8 * 64 * n - 1024  # the points' bytes (less the new attribute)
    info = subprocess.run([sys.executable, "-m", "mpi_enum", "info", d64["bare"]], capture_output=True, text=True)
    assert info.returncode == 0 and "no interior points" in info.stdout, info.stdout + info.stderr


def test_recomputed_points_reproduce_every_pattern(d64):
    X, r = recompute_points(d64["bare"])
    full, _ = _rows(d64["full"])
    with h5py.File(d64["bare"], "r") as f:
        N = int(sum(f.attrs["hidden_widths"]))
        bits = np.unpackbits(f["regions/pattern"][()], axis=1, count=N)
        rad = f["regions/radius"][()]
    assert X.shape == (len(bits), 64) and np.all(np.abs(X) < 1)
    np.testing.assert_array_equal(_relu_bits(d64["a"], X), bits)
    assert np.all(r >= rad * (1 - 1e-7))  # the largest inscribed ball is at least the stored one
    sub, rs = recompute_points(d64["bare"], rows=[0, 5, 7])
    np.testing.assert_allclose(sub, X[[0, 5, 7]], rtol=0, atol=1e-9)


def test_verify_checks_recomputed_points(d64):
    checks = verify_result(d64["bare"], d64["net"], samples=20000)
    assert not [c for c in checks if c.status == "FAIL"], checks
    by = {c.name: c for c in checks}
    assert "recomputed" in by["patterns reproduced"].detail and by["sampled coverage"].status == "PASS"


def test_verify_catches_a_wrong_pattern_without_points(d64, tmp_path):
    """The sampled row checks still fail a file whose pattern was changed (no point to hide behind)."""
    bad = str(tmp_path / "bad.h5")
    with open(d64["bare"], "rb") as src, open(bad, "wb") as dst:
        dst.write(src.read())
    with h5py.File(bad, "r+") as f:
        f["regions/radius"][:] = f["regions/radius"][()] * 50  # balls far larger than the regions
    checks = verify_result(bad, d64["net"], samples=2000)
    assert {c.name for c in checks if c.status == "FAIL"} >= {"radius margins"}, checks


def test_api_points_none_and_back(d64, tmp_path):
    res = mpi_enum.enumerate(d64["net"], points="none")
    assert res.interior_points is None and res.input_dim == 64
    p5 = res.save(str(tmp_path / "api5.h5"))  # the serial writer
    with h5py.File(p5, "r") as f:
        assert int(f.attrs["format_version"]) == 5 and "interior_point" not in f["regions"]
    back = mpi_enum.open(p5)
    assert back.interior_points is None and back.n_regions == res.n_regions
    with pytest.raises(InputError, match="recompute_points"):
        back.save(str(tmp_path / "x.h5"), points="float64")
    X, _ = recompute_points(back)
    back.interior_points = X
    np.testing.assert_array_equal(_relu_bits(d64["a"], X), back.bits())
    p2 = back.save(str(tmp_path / "api2.h5"))
    with h5py.File(p2, "r") as f:
        assert int(f.attrs["format_version"]) == 2 and f["regions/interior_point"].shape == (res.n_regions, 64)
    assert not [c for c in verify_result(p2, d64["net"], samples=5000) if c.status == "FAIL"]


def test_max_units_without_points(tmp_path):
    """Max groups: the recomputed points give back the one-hot bits and the selectors."""
    a = max_arrays()
    net = str(tmp_path / "max.npz")
    np.savez(net, **a)
    out = str(tmp_path / "max5.h5")
    assert main(["run", net, "-o", out, "--points", "none"]) == 0
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == 5 and "selector" in f["regions"]
        sel = f["regions/selector"][()]
        bits = np.unpackbits(f["regions/pattern"][()], axis=1, count=17)
    X, _ = recompute_points(out)
    own_bits, own_sel = max_forward(a, X)
    np.testing.assert_array_equal(bits, own_bits.astype(np.uint8))
    np.testing.assert_array_equal(sel, own_sel)
    checks = verify_result(out, net, samples=20000)
    assert not [c for c in checks if c.status == "FAIL"], checks
    assert [c.status for c in checks if c.name.startswith("volumes")] == ["PASS"]  # 2-D: polygons


def test_bad_points_value_is_one_line_exit_2(d64, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpi_enum", "run", d64["net"], "-o", str(tmp_path / "o.h5"),
                        "--points", "float32"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "--points" in r.stderr
    assert not os.path.exists(tmp_path / "o.h5")
    with pytest.raises(InputError, match="points"):
        mpi_enum.enumerate(d64["net"], points="half")
