"""CONTRACT §1 loaders: .npz and .nnet (normalisation folded), default domains.

The .nnet oracle is the reference forward pass on normalised inputs, y = net((x - mean) / range),
with the file's numbers parsed by the test's own parser (conftest.parse_nnet).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import (box_halfspaces, check_interior, convex_volume, forward, load_npz_arrays, naive_patterns,
                      parse_nnet, pattern_set, preacts, read_result, region_affine, region_halfspaces, run_cli)


def _load(path):
    from mpi_enum.loaders import load_network

    return load_network(str(path))


# ----------------------------------------------------------------------------- .npz

@pytest.mark.parametrize("name", ["small_d3.npz", "small_d2_box.npz"])
def test_npz_arrays_round_trip(data_dir, name):
    path = data_dir / name
    net = _load(path)
    Ws, bs, lo, hi = load_npz_arrays(path)
    assert len(net.weights) == len(Ws) and len(net.biases) == len(bs)
    for W, W2, b, b2 in zip(net.weights, Ws, net.biases, bs):
        assert W.dtype == np.float64 and b.dtype == np.float64
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
    assert net.input_dim == Ws[0].shape[1]
    assert net.hidden_widths == [W.shape[0] for W in Ws[:-1]]
    X = np.random.default_rng(0).uniform(-1, 1, size=(500, net.input_dim))
    assert np.allclose(net.forward(X), forward(Ws, bs, X), rtol=1e-13, atol=1e-13)
    assert np.array_equal(net.patterns(X), preacts(Ws, bs, X) > 0)
    dlo, dhi = net.default_box()
    if lo is None:
        assert np.array_equal(dlo, -np.ones(net.input_dim)) and np.array_equal(dhi, np.ones(net.input_dim))
    else:
        assert np.array_equal(dlo, lo) and np.array_equal(dhi, hi)


def test_npz_float32_and_int_arrays(tmp_path):
    """Other numeric dtypes are accepted and converted to float64 exactly."""
    W0 = np.array([[1, -2], [3, 1], [0, 1]], dtype=np.int32)
    np.savez(tmp_path / "n.npz", W0=W0, b0=np.array([0.5, -0.25, 0.125], np.float32),
             W1=np.ones((1, 3), np.float32), b1=np.zeros(1, np.float32))
    net = _load(tmp_path / "n.npz")
    assert net.weights[0].dtype == np.float64 and np.array_equal(net.weights[0], W0.astype(float))
    assert np.array_equal(net.biases[0], [0.5, -0.25, 0.125])


def test_npz_default_domain_from_file_through_cli(data_dir, tmp_path):
    """No domain option: the file's input_lo/input_hi box (the yardstick reads the same box)."""
    path = data_dir / "small_d2_box.npz"
    Ws, bs, lo, hi = load_npz_arrays(path)
    assert lo is not None
    run_cli(["run", path, "-o", tmp_path / "o.h5"], check=True)
    res = read_result(tmp_path / "o.h5")
    dom = json.loads(res.attrs["domain"])
    assert dom["lo"] == list(lo) and dom["hi"] == list(hi)
    want, _ = naive_patterns(Ws, bs, lo, hi)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))
    BH, B0 = box_halfspaces(lo, hi)
    total = sum(convex_volume(np.vstack([Hn, BH]), np.concatenate([H0, B0]), res.points[i])
                for i, (Hn, H0) in enumerate(region_halfspaces(*region_affine(Ws, bs, bits), bits) for bits in res.bits))
    assert total == pytest.approx(float(np.prod(hi - lo)), rel=1e-6)


def test_npz_default_domain_unit_box_through_cli(data_dir, tmp_path):
    path = data_dir / "small_d3.npz"
    Ws, bs, lo, hi = load_npz_arrays(path)
    assert lo is None
    run_cli(["run", path, "-o", tmp_path / "o.h5"], check=True)
    res = read_result(tmp_path / "o.h5")
    dom = json.loads(res.attrs["domain"])
    assert dom["lo"] == [-1.0] * 3 and dom["hi"] == [1.0] * 3
    want, _ = naive_patterns(Ws, bs, -np.ones(3), np.ones(3))
    assert pattern_set(res.bits) == want


# ----------------------------------------------------------------------------- .nnet

def _reference_nnet_check(path, n=2000, seed=0):
    nn = parse_nnet(path)
    net = _load(path)
    d = nn.d
    assert net.input_dim == d
    assert net.hidden_widths == nn.sizes[1:-1]
    rng = np.random.default_rng(seed)
    X = rng.uniform(nn.mins, nn.maxs, size=(n, d))
    Z = (X - nn.means[:d]) / nn.ranges[:d]
    ref_out = forward(nn.Ws, nn.bs, Z)
    ref_pre = preacts(nn.Ws, nn.bs, Z)
    scale = max(1.0, np.abs(ref_out).max())
    assert np.abs(net.forward(X) - ref_out).max() <= 1e-9 * scale
    pscale = np.maximum(1.0, np.abs(ref_pre))
    assert np.all(np.abs(net.forward_preacts(X) - ref_pre) <= 1e-9 * pscale)
    # patterns agree wherever the reference is not within rounding of a tie
    clear = np.abs(ref_pre) > 1e-9 * pscale
    assert np.array_equal((net.forward_preacts(X) > 0)[clear], (ref_pre > 0)[clear])
    dlo, dhi = net.default_box()
    assert np.array_equal(dlo, nn.mins) and np.array_equal(dhi, nn.maxs)
    return nn, net


def test_nnet_fixture_folds_normalisation(data_dir):
    nn, net = _reference_nnet_check(data_dir / "small_d3.nnet")
    assert not np.allclose(nn.means[:3], 0) and not np.allclose(nn.ranges[:3], 1)  # folding matters here


def test_nnet_acasxu_folds_normalisation(acas_nnet):
    nn, net = _reference_nnet_check(acas_nnet)
    assert net.hidden_widths == [50] * 6 and net.input_dim == 5


def test_nnet_without_trailing_commas(data_dir, tmp_path):
    """The same network written without trailing commas and with extra blank lines loads the same."""
    text = (data_dir / "small_d3.nnet").read_text()
    lines = [ln.rstrip().rstrip(",") for ln in text.splitlines()]
    (tmp_path / "v.nnet").write_text("\n\n".join(lines) + "\n")
    a, b = _load(data_dir / "small_d3.nnet"), _load(tmp_path / "v.nnet")
    for W, W2 in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.array_equal(W, W2)
    assert np.array_equal(a.input_lo, b.input_lo) and np.array_equal(a.input_hi, b.input_hi)


def test_nnet_through_cli_default_domain(data_dir, tmp_path):
    """Regions are in raw input units over the file's min/max box; checked against the yardstick on
    the folded network and the reference normalised forward pass at the interior points."""
    path = data_dir / "small_d3.nnet"
    nn = parse_nnet(path)
    run_cli(["run", path, "-o", tmp_path / "o.h5"], check=True)
    res = read_result(tmp_path / "o.h5")
    dom = json.loads(res.attrs["domain"])
    assert dom["lo"] == list(nn.mins) and dom["hi"] == list(nn.maxs)
    assert np.all((res.points > nn.mins) & (res.points < nn.maxs))
    Z = (res.points - nn.means[:3]) / nn.ranges[:3]
    assert np.array_equal((preacts(nn.Ws, nn.bs, Z) > 0).astype(np.uint8), res.bits)
    Wf, bf = nn.folded()
    check_interior(Wf, bf, res, domain_hs=box_halfspaces(nn.mins, nn.maxs))
    want, _ = naive_patterns(Wf, bf, nn.mins, nn.maxs)
    assert pattern_set(res.bits) == want


def test_nnet_errors_name_the_files_own_line(data_dir, tmp_path):
    """Issue 12 row 16: an .nnet error names the line as an editor shows it (comments counted)."""
    from mpi_enum.errors import InputError
    from mpi_enum.loaders import load_network

    lines = (data_dir / "small_d3.nnet").read_text().splitlines()
    first_weight = next(i for i, ln in enumerate(lines) if ln.startswith("0.90088"))
    for bad, pattern in (("0.9,abc,0.5,", "malformed .nnet line {n} "), ("0.9,0.5,", "line {n}: layer 0 weight row")):
        edited = list(lines)
        edited[first_weight] = bad
        p = tmp_path / "bad.nnet"
        p.write_text("\n".join(edited) + "\n")
        with pytest.raises(InputError, match=pattern.format(n=first_weight + 1)):
            load_network(str(p))
