"""Issue #2 acceptance: exactness of the enumeration, each property against an independent oracle.

1. counts and pattern sets equal to the shared yardstick ``naive_enum.py``;
2. every stored interior point reproduces its pattern with a margin of its radius;
3. one hidden layer in general position over R^d: sum_{i<=d} C(n, i) regions (Zaslavsky);
4. region volumes sum to the box volume (2-D and 3-D);
5. 10^5 uniform samples: every sampled pattern is in the result.
"""
from __future__ import annotations

import time
from math import comb

import numpy as np
import pytest


from conftest import (assert_unique, box_halfspaces, check_interior, convex_volume, load_npz_arrays, naive_patterns,
                      pattern_set, patterns_of, random_net, read_result, region_affine, region_halfspaces,
                      region_layer_maps, run_cli, run_mpi, save_npz)

# (d, hidden widths, seed): small enough for the yardstick to take a few seconds each
NAIVE_CASES = [
    (2, [6, 5], 11),
    (2, [5, 4, 4], 12),
    (3, [6, 5], 13),
    (3, [4, 4, 3], 14),
    (4, [5, 4], 15),
    (4, [4, 3, 3], 16),
    (5, [5, 4], 17),
    (6, [5, 4], 18),
    (6, [4, 3, 3], 19),
]


def _engine_patterns(Ws, bs, lo, hi, tol=1e-9):
    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.problem import Problem
    from mpi_enum.engine.search import enumerate_serial
    from mpi_enum.model.network import Network

    net = Network([np.array(W) for W in Ws], [np.array(b) for b in bs])
    out, _ = enumerate_serial(Problem(net, box_domain(np.asarray(lo, float), np.asarray(hi, float)), tol))
    bits = np.array([np.frombuffer(b, dtype=np.uint8) for b, *_ in out], dtype=np.uint8)
    return bits, out


# ----------------------------------------------------------------------------- 1. yardstick

@pytest.mark.parametrize("d,widths,seed", NAIVE_CASES, ids=[f"d{c[0]}-{'x'.join(map(str, c[1]))}" for c in NAIVE_CASES])
def test_engine_matches_naive(d, widths, seed):
    Ws, bs = random_net(seed, d, widths)
    lo, hi = -np.ones(d), np.ones(d)
    want, n_want = naive_patterns(Ws, bs, lo, hi)
    bits, _ = _engine_patterns(Ws, bs, lo, hi)
    assert n_want == len(want), "the yardstick itself returned duplicate patterns"
    assert_unique(bits)
    got = pattern_set(bits)
    assert len(bits) == n_want, f"engine found {len(bits)} regions, yardstick {n_want}"
    assert got == want, f"missing {len(want - got)}, extra {len(got - want)}"


def test_engine_matches_naive_shifted_box():
    """A box other than [-1, 1]^d, read by both from the network's input_lo/input_hi."""
    Ws, bs = random_net(21, 3, [5, 5])
    lo, hi = np.array([-0.5, 0.0, 1.0]), np.array([1.5, 0.7, 2.2])
    bs[0] = bs[0] - Ws[0] @ ((lo + hi) / 2)  # centre the arrangement in the box
    want, _ = naive_patterns(Ws, bs, lo, hi)
    bits, _ = _engine_patterns(Ws, bs, lo, hi)
    assert_unique(bits)
    assert pattern_set(bits) == want


def test_cli_mpi2_matches_naive(tmp_path):
    """The whole program under ``mpiexec -n 2`` against the yardstick."""
    Ws, bs = random_net(22, 3, [5, 4, 3])
    net = save_npz(tmp_path / "net.npz", Ws, bs)
    want, n_want = naive_patterns(Ws, bs, -np.ones(3), np.ones(3))
    run_mpi(2, ["run", net, "-o", tmp_path / "out.h5"], timeout=240, check=True)
    res = read_result(tmp_path / "out.h5")
    assert int(res.attrs["n_ranks"]) == 2
    assert int(res.attrs["n_regions"]) == len(res.bits) == n_want
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want


@pytest.mark.slow
def test_bench_d2_16x3_matches_naive(bg_naive_bench, tmp_path):
    """bench_d2_16x3 (930 regions for the yardstick run; counted live, not hard-coded).

    The yardstick was started in the background at collection time (conftest); the program runs
    here meanwhile.  Its result is also checked for volumes, interior points and samples."""
    out = tmp_path / "bench.h5"
    run_cli(["run", bg_naive_bench.net, "-o", out], timeout=400, check=True)
    res = read_result(out)
    try:
        stdout, stderr = bg_naive_bench.proc.communicate(timeout=500)
    except Exception:
        bg_naive_bench.proc.kill()
        raise
    assert bg_naive_bench.proc.returncode == 0, stderr
    want_packed = np.load(bg_naive_bench.out)
    N = res.N
    want = pattern_set(np.unpackbits(want_packed, axis=1)[:, :N])
    assert len(want) == len(want_packed)
    assert_unique(res.bits)
    assert len(res.bits) == len(want), f"program {len(res.bits)} regions, yardstick: {stdout.strip()}"
    assert pattern_set(res.bits) == want
    Ws, bs, lo, hi = load_npz_arrays(bg_naive_bench.net)
    lo = -np.ones(2) if lo is None else lo
    hi = np.ones(2) if hi is None else hi
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))
    _check_volumes(Ws, bs, res, lo, hi)
    _check_samples(Ws, bs, res, lo, hi, n=100_000, seed=5)


# ----------------------------------------------------------------------------- CLI results, shared

@pytest.fixture(scope="module")
def box_results(tmp_path_factory):
    """Program results (CLI, 1 rank) on random networks over boxes: name -> (Ws, bs, lo, hi, res)."""
    cases = {
        "d2": (2, [8, 7, 6], 31, [-1.0, -1.0], [1.0, 1.0]),
        "d3": (3, [7, 6], 32, [-1.0, 0.0, 2.0], [1.0, 0.5, 3.0]),  # non-cubic box: radius units
        "d5": (5, [6, 5], 33, [-1.0] * 5, [1.0] * 5),
    }
    tmp = tmp_path_factory.mktemp("box_results")
    out = {}
    for name, (d, widths, seed, lo, hi) in cases.items():
        Ws, bs = random_net(seed, d, widths)
        lo, hi = np.array(lo), np.array(hi)
        bs[0] = bs[0] - Ws[0] @ ((lo + hi) / 2)
        net = save_npz(tmp / f"{name}.npz", Ws, bs, lo, hi)
        run_cli(["run", net, "-o", tmp / f"{name}.h5"], timeout=240, check=True)
        out[name] = (Ws, bs, lo, hi, read_result(tmp / f"{name}.h5"))
    return out


# ----------------------------------------------------------------------------- 2. interior points

@pytest.mark.parametrize("name", ["d2", "d3", "d5"])
def test_interior_points_reproduce_patterns(box_results, name):
    Ws, bs, lo, hi, res = box_results[name]
    assert len(res.bits) > 10
    assert int(res.attrs["n_regions"]) == len(res.bits) == len(res.points) == len(res.radius)
    assert_unique(res.bits)
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))
    # the product's own forward pass agrees (ties inactive) with the independent one
    from mpi_enum.model.network import Network

    net = Network([np.array(W) for W in Ws], [np.array(b) for b in bs])
    assert np.array_equal(net.patterns(res.points).astype(np.uint8), res.bits)


def test_interior_oracle_detects_bad_points(box_results):
    """check_interior can fail: a point moved onto a neighbour's side, or an inflated radius."""
    import copy

    Ws, bs, lo, hi, res = box_results["d2"]
    bad = copy.copy(res)
    bad.points = res.points.copy()
    bad.points[0] = res.points[1]
    with pytest.raises(AssertionError):
        check_interior(Ws, bs, bad)
    bad = copy.copy(res)
    bad.radius = res.radius * 1.5 + 1e-3
    with pytest.raises(AssertionError):
        check_interior(Ws, bs, bad, domain_hs=box_halfspaces(lo, hi))


@pytest.mark.parametrize("name", ["d2", "d3", "d5"])
def test_layer_counts_and_ranks(box_results, name):
    """/layers/n_regions = distinct pattern prefixes; /regions/affine_rank = rank of the masked map."""
    Ws, bs, lo, hi, res = box_results[name]
    widths = [W.shape[0] for W in Ws[:-1]]
    ends = np.cumsum(widths)
    prefixes = [len(pattern_set(res.bits[:, :e])) for e in ends]
    assert list(res.layer_counts) == prefixes
    assert res.layer_counts[-1] == len(res.bits)
    assert res.ranks.shape == (len(res.bits), len(widths))
    for i in range(len(res.bits)):
        want = [np.linalg.matrix_rank(M, tol=1e-9 * max(1.0, np.abs(M).max())) if np.any(M) else 0
                for M, _ in region_layer_maps(Ws, bs, res.bits[i])]
        assert list(res.ranks[i]) == want, f"region {i}"


# ----------------------------------------------------------------------------- 4. volumes

def _check_volumes(Ws, bs, res, lo, hi, rel=1e-6):
    BH, B0 = box_halfspaces(lo, hi)
    total = 0.0
    for i in range(len(res.bits)):
        A, c = region_affine(Ws, bs, res.bits[i])
        Hn, H0 = region_halfspaces(A, c, res.bits[i])
        total += convex_volume(np.vstack([Hn, BH]), np.concatenate([H0, B0]), res.points[i])
    box = float(np.prod(hi - lo))
    assert abs(total - box) <= rel * box, f"region volumes sum to {total!r}, the box has {box!r}"
    return total


@pytest.mark.parametrize("name", ["d2", "d3"])
def test_volumes_sum_to_box(box_results, name):
    """Distinct patterns have disjoint interiors, so the sum equals the box iff the regions cover it."""
    Ws, bs, lo, hi, res = box_results[name]
    assert_unique(res.bits)
    _check_volumes(Ws, bs, res, lo, hi)


def test_volume_oracle_detects_a_missing_region(box_results):
    """The volume oracle can fail: dropping one region breaks the sum."""
    Ws, bs, lo, hi, res = box_results["d2"]
    import copy

    BH, B0 = box_halfspaces(lo, hi)
    vols = []
    for i in range(len(res.bits)):
        A, c = region_affine(Ws, bs, res.bits[i])
        Hn, H0 = region_halfspaces(A, c, res.bits[i])
        vols.append(convex_volume(np.vstack([Hn, BH]), np.concatenate([H0, B0]), res.points[i]))
    big = int(np.argmax(vols))
    short = copy.copy(res)
    keep = np.arange(len(res.bits)) != big
    short.bits, short.points = res.bits[keep], res.points[keep]
    with pytest.raises(AssertionError):
        _check_volumes(Ws, bs, short, lo, hi)


# ----------------------------------------------------------------------------- 5. samples

def _check_samples(Ws, bs, res, lo, hi, n=100_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, size=(n, len(lo)))
    P = patterns_of(Ws, bs, X)
    have = pattern_set(res.bits)
    seen = pattern_set(P)
    missing = seen - have
    assert not missing, f"{len(missing)} sampled patterns are not in the result (of {len(seen)} seen)"
    return len(seen)


@pytest.mark.parametrize("name", ["d2", "d3", "d5"])
def test_uniform_samples_are_covered(box_results, name):
    Ws, bs, lo, hi, res = box_results[name]
    seen = _check_samples(Ws, bs, res, lo, hi, n=100_000, seed=7)
    assert seen >= 0.5 * len(res.bits) or len(res.bits) > 2000  # the samples do exercise the result


# ----------------------------------------------------------------------------- 3. hyperplane arrangements

def _one_layer_net(tmp_path, d, n, seed):
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(n, d)), rng.normal(size=(1, n))]
    bs = [rng.normal(size=n), rng.normal(size=1)]
    return Ws, bs, save_npz(tmp_path / f"arr_d{d}_n{n}.npz", Ws, bs)


@pytest.mark.parametrize("d,n", [(2, 10), (3, 12), (1, 7)])
def test_unbounded_arrangement_count(tmp_path, d, n):
    Ws, bs, net = _one_layer_net(tmp_path, d, n, seed=40 + d)
    out = tmp_path / "arr.h5"
    run_cli(["run", net, "--unbounded", "-o", out], timeout=120, check=True)
    res = read_result(out)
    want = sum(comb(n, i) for i in range(d + 1))
    assert int(res.attrs["n_regions"]) == len(res.bits) == want
    assert_unique(res.bits)
    check_interior(Ws, bs, res)
    # Gaussian samples at several scales all land in reported regions
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20000, d)) * rng.choice([0.3, 3.0, 30.0], size=(20000, 1))
    assert pattern_set(patterns_of(Ws, bs, X)) <= pattern_set(res.bits)


def test_unbounded_arrangement_d4_n20(tmp_path):
    """d = 4, n = 20: 1 + 20 + 190 + 1140 + 4845 = 6196 regions, through the CLI."""
    Ws, bs, net = _one_layer_net(tmp_path, 4, 20, seed=44)
    out = tmp_path / "arr.h5"
    t0 = time.perf_counter()
    run_cli(["run", net, "--unbounded", "-o", out], timeout=400, check=True)
    res = read_result(out)
    assert sum(comb(20, i) for i in range(5)) == 6196
    assert int(res.attrs["n_regions"]) == len(res.bits) == 6196, f"after {time.perf_counter() - t0:.1f} s"
    assert_unique(res.bits)
    check_interior(Ws, bs, res)
