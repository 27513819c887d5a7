"""CONTRACT §2/§3 through the command line: info --json, the result file's layout, n_ranks under
mpiexec, default output path, --force, --tol and ``python -m mpi_enum``."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (_env, assert_unique, box_halfspaces, chebyshev_center, load_npz_arrays, pattern_set,
                      patterns_of, random_net, read_result, region_affine, region_halfspaces, run_cli, run_mpi,
                      save_npz)


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("cli1")
    net = data_dir / "small_d3.npz"
    p = run_cli(["run", net, "-o", tmp / "one.h5"], check=True)
    return net, tmp / "one.h5", p


def test_info_json(one_rank):
    net, out, _ = one_rank
    p = run_cli(["info", out, "--json"], check=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"--json must print one JSON object on one line, got:\n{p.stdout}"
    info = json.loads(lines[0])
    assert isinstance(info, dict)
    res = read_result(out)
    Ws, _, _, _ = load_npz_arrays(net)
    assert info["n_regions"] == len(res.bits) > 0
    assert info["input_dim"] == Ws[0].shape[1] == 3
    assert info["hidden_widths"] == [W.shape[0] for W in Ws[:-1]] == [5, 4, 3]
    assert info["layer_counts"] == [len(pattern_set(res.bits[:, :e])) for e in np.cumsum(info["hidden_widths"])]
    assert info["complete"] is True
    assert info["n_ranks"] == 1


def test_info_plain_text(one_rank):
    _, out, _ = one_rank
    p = run_cli(["info", out], check=True)
    assert str(read_result(out).attrs["n_regions"]) in p.stdout


def test_python_dash_m_is_the_same_program(one_rank):
    _, out, _ = one_rank
    a = run_cli(["info", out, "--json"], check=True).stdout
    b = subprocess.run([sys.executable, "-m", "mpi_enum", "info", str(out), "--json"], capture_output=True,
                       text=True, timeout=60, env=_env())
    assert b.returncode == 0, b.stderr
    assert json.loads(a) == json.loads(b.stdout)


def test_result_file_layout(one_rank):
    """Root attributes and dataset dtypes/shapes of CONTRACT §3."""
    import h5py

    net, out, _ = one_rank
    Ws, bs, _, _ = load_npz_arrays(net)
    N, L, d = sum(W.shape[0] for W in Ws[:-1]), len(Ws) - 1, Ws[0].shape[1]
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["format"] == "mpi_enum.regions"
        assert int(a["format_version"]) >= 1 and np.issubdtype(np.asarray(a["format_version"]).dtype, np.integer)
        n = int(a["n_regions"])
        assert int(a["input_dim"]) == d
        assert list(a["hidden_widths"]) == [W.shape[0] for W in Ws[:-1]]
        assert bool(a["complete"]) is True
        assert int(a["n_ranks"]) == 1
        assert float(a["wall_seconds"]) > 0
        assert a["network_sha256"] == hashlib.sha256(Path(net).read_bytes()).hexdigest()
        assert json.loads(a["domain"])["kind"] == "box"
        soft = json.loads(a["software"])
        for key in ("mpi_enum", "numpy", "h5py"):
            assert key in soft
        assert float(a["tol"]) == 1e-9
        shapes = {"regions/pattern": (np.uint8, (n, (N + 7) // 8)),
                  "regions/interior_point": (np.float64, (n, d)),
                  "regions/radius": (np.float64, (n,)),
                  "regions/affine_rank": (np.int16, (n, L)),
                  "layers/n_regions": (np.int64, (L,))}
        for name, (dt, shape) in shapes.items():
            assert f[name].dtype == dt, name
            assert f[name].shape == shape, name
        # packbits, default (big-endian) bit order, of the layer-major pattern at the interior point
        packed = np.packbits(patterns_of(Ws, bs, f["regions/interior_point"][()]), axis=1)
        assert np.array_equal(packed, f["regions/pattern"][()])


def test_mpiexec_two_ranks(one_rank, tmp_path):
    net, out1, _ = one_rank
    out2 = tmp_path / "two.h5"
    run_mpi(2, ["run", net, "-o", out2], timeout=180, check=True)
    info = json.loads(run_cli(["info", out2, "--json"], check=True).stdout)
    assert info["n_ranks"] == 2
    r1, r2 = read_result(out1), read_result(out2)
    assert int(r2.attrs["n_ranks"]) == 2
    assert_unique(r2.bits)
    assert pattern_set(r1.bits) == pattern_set(r2.bits)
    assert list(r1.layer_counts) == list(r2.layer_counts)


def test_default_output_path(data_dir, tmp_path):
    """Without -o the result goes to results/<network name>.h5 (relative to the working directory)."""
    run_cli(["run", data_dir / "small_d3.npz"], cwd=tmp_path, check=True)
    assert (tmp_path / "results" / "small_d3.h5").is_file()
    assert read_result(tmp_path / "results" / "small_d3.h5").attrs["format"] == "mpi_enum.regions"


def test_force_replaces_existing_output(data_dir, tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"not a result")
    run_cli(["run", data_dir / "small_d3.npz", "-o", out, "--force"], check=True)
    assert read_result(out).attrs["format"] == "mpi_enum.regions"
    assert not list(tmp_path.glob(".o.h5*")), "temporary files left behind"


def test_tol_drops_exactly_the_thin_regions(tmp_path):
    """--tol T keeps a region iff its inscribed radius (box [-1, 1]^2, so y = x) exceeds T: the
    Chebyshev radius of every region is recomputed independently with linprog."""
    Ws, bs = random_net(61, 2, [8, 8])
    net = save_npz(tmp_path / "net.npz", Ws, bs)
    run_cli(["run", net, "-o", tmp_path / "fine.h5"], check=True)
    tol = 0.02
    run_cli(["run", net, "-o", tmp_path / "coarse.h5", "--tol", str(tol)], check=True)
    fine, coarse = read_result(tmp_path / "fine.h5"), read_result(tmp_path / "coarse.h5")
    assert float(coarse.attrs["tol"]) == tol
    BH, B0 = box_halfspaces(-np.ones(2), np.ones(2))
    radius = {}
    for bits in fine.bits:
        Hn, H0 = region_halfspaces(*region_affine(Ws, bs, bits), bits)
        radius[bytes(bits)] = chebyshev_center(np.vstack([Hn, BH]), np.concatenate([H0, B0]))[1]
    got = pattern_set(coarse.bits)
    assert got <= set(radius)
    must = {k for k, r in radius.items() if r > tol * (1 + 1e-6)}
    never = {k for k, r in radius.items() if r < tol * (1 - 1e-6)}
    assert never, "choose a network with some regions thinner than tol"
    assert must <= got, f"{len(must - got)} regions with radius > tol are missing"
    assert not (got & never), f"{len(got & never)} regions with radius < tol are reported"
    assert np.all(coarse.radius > tol)
