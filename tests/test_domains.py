"""CONTRACT §2 domains through the CLI, each against an independent oracle.

--box (scalars, comma lists), --polytope, --ball (cut to the network's box), --plane, --line,
--unbounded, and a degenerate box (ACAS Xu property 4, psi fixed to 0).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import (assert_unique, box_halfspaces, check_interior, convex_volume, naive_patterns, parse_nnet,
                      pattern_set, patterns_of, random_net, read_result, region_affine, region_halfspaces,
                      run_cli, save_npz)


@pytest.fixture(scope="module")
def net3(tmp_path_factory):
    """d = 3, hidden [5, 4, 3], no box in the file."""
    tmp = tmp_path_factory.mktemp("net3")
    Ws, bs = random_net(51, 3, [5, 4, 3])
    return Ws, bs, save_npz(tmp / "net3.npz", Ws, bs)


def _run(tmp_path, net, *domain_args, name="out.h5"):
    out = tmp_path / name
    run_cli(["run", net, "-o", out, *domain_args], timeout=240, check=True)
    return read_result(out)


# ----------------------------------------------------------------------------- --box

def test_box_scalars(net3, tmp_path):
    Ws, bs, net = net3
    res = _run(tmp_path, net, "--box", "-0.5", "0.8")
    lo, hi = np.full(3, -0.5), np.full(3, 0.8)
    want, _ = naive_patterns(Ws, bs, lo, hi)
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))
    dom = json.loads(res.attrs["domain"])
    assert np.allclose(dom["lo"], lo) and np.allclose(dom["hi"], hi)


def test_box_comma_lists(net3, tmp_path):
    """Comma lists, negative first entries included (``--box -0.5,-1,0.2 0.5,0.3,0.9``)."""
    Ws, bs, net = net3
    res = _run(tmp_path, net, "--box", "-0.5,-1,0.2", "0.5,0.3,0.9")
    lo, hi = np.array([-0.5, -1.0, 0.2]), np.array([0.5, 0.3, 0.9])
    want, _ = naive_patterns(Ws, bs, lo, hi)
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))


def test_box_default_is_minus_one_one(net3, tmp_path):
    Ws, bs, net = net3
    res = _run(tmp_path, net)
    want, _ = naive_patterns(Ws, bs, -np.ones(3), np.ones(3))
    assert pattern_set(res.bits) == want
    dom = json.loads(res.attrs["domain"])
    assert dom["lo"] == [-1.0] * 3 and dom["hi"] == [1.0] * 3


# ----------------------------------------------------------------------------- --polytope

def test_polytope_box_with_redundant_rows(net3, tmp_path):
    """A box written as A x <= b (plus redundant and duplicate rows) gives the yardstick's box regions."""
    Ws, bs, net = net3
    lo, hi = np.array([-0.7, -0.2, -1.0]), np.array([0.9, 1.0, 0.3])
    A = np.vstack([np.eye(3), -np.eye(3), [[1.0, 1.0, 1.0]], 2 * np.eye(3)[:1]])
    b = np.concatenate([hi, -lo, [10.0], [2 * hi[0]]])
    np.savez(tmp_path / "poly.npz", A=A, b=b)
    res = _run(tmp_path, net, "--polytope", tmp_path / "poly.npz")
    want, _ = naive_patterns(Ws, bs, lo, hi)
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, domain_hs=(A, -b))


def test_polytope_heptagon_2d(tmp_path):
    """A 2-D heptagon: areas sum to its area, samples covered, balls stay inside A x <= b."""
    Ws, bs = random_net(52, 2, [7, 6, 5])
    net = save_npz(tmp_path / "net2.npz", Ws, bs)
    rng = np.random.default_rng(3)
    ang = np.arange(7) * 2 * np.pi / 7 + rng.uniform(0, 0.3, 7)
    A = np.stack([np.cos(ang), np.sin(ang)], axis=1) * rng.uniform(0.5, 2.0, (7, 1))  # rows not normalised
    b = rng.uniform(0.6, 1.0, 7) * np.linalg.norm(A, axis=1) + A @ np.array([0.2, -0.1])
    np.savez(tmp_path / "poly.npz", A=A, b=b)
    res = _run(tmp_path, net, "--polytope", tmp_path / "poly.npz")
    assert_unique(res.bits)
    check_interior(Ws, bs, res, domain_hs=(A, -b))
    area = convex_volume(A, -b, np.array([0.2, -0.1]))
    total = 0.0
    for i in range(len(res.bits)):
        Hn, H0 = region_halfspaces(*region_affine(Ws, bs, res.bits[i]), res.bits[i])
        total += convex_volume(np.vstack([Hn, A]), np.concatenate([H0, -b]), res.points[i])
    assert abs(total - area) <= 1e-6 * area, (total, area)
    X = rng.uniform(-2.5, 2.5, size=(300_000, 2))
    X = X[np.all(X @ A.T <= b, axis=1)][:100_000]
    assert len(X) > 20_000
    assert pattern_set(patterns_of(Ws, bs, X)) <= pattern_set(res.bits)


def test_polytope_unbounded_halfplane(tmp_path):
    """An unbounded polytope (a half-plane): exactly the regions of R^2 (the yardstick over a huge
    box) that meet it, each meeting decided independently by a Chebyshev LP."""
    from scipy.optimize import linprog

    Ws, bs = random_net(7, 2, [6, 5])
    net = save_npz(tmp_path / "net.npz", Ws, bs)
    a, b0 = np.array([1.0, 0.5]), 0.3
    np.savez(tmp_path / "hp.npz", A=a[None, :], b=np.array([b0]))
    res = _run(tmp_path, net, "--polytope", tmp_path / "hp.npz")
    assert_unique(res.bits)
    check_interior(Ws, bs, res, domain_hs=(a[None, :], np.array([-b0])))
    everywhere, _ = naive_patterns(Ws, bs, -1e4 * np.ones(2), 1e4 * np.ones(2))
    want, unsure = set(), set()
    BH, B0 = box_halfspaces(-1e4 * np.ones(2), 1e4 * np.ones(2))
    for key in everywhere:
        bits = np.frombuffer(key, dtype=np.uint8)
        Hn, H0 = region_halfspaces(*region_affine(Ws, bs, bits), bits)
        Hn, H0 = np.vstack([Hn, a, BH]), np.concatenate([H0, [-b0], B0])
        nrm = np.linalg.norm(Hn, axis=1)
        r = linprog([0, 0, -1], A_ub=np.hstack([Hn, nrm[:, None]]), b_ub=-H0,
                    bounds=[(None, None)] * 2 + [(None, 1.0)], method="highs")
        t = r.x[2]
        (want if t > 1e-6 else unsure if t > 1e-10 else set()).add(key)
    got = pattern_set(res.bits)
    assert want <= got, f"{len(want - got)} regions meeting the half-plane are missing"
    assert got <= want | unsure, f"{len(got - want - unsure)} reported regions do not meet the half-plane"
    assert len(want) < len(everywhere)


# ----------------------------------------------------------------------------- --ball

def test_ball_cut_to_network_box(tmp_path):
    """The L-inf ball around (1.8, 0.9, 0) with radius 0.5, cut to the file's box [0,2]x[-1,1]^2."""
    Ws, bs = random_net(53, 3, [6, 5])
    bs[0] = bs[0] - Ws[0] @ np.array([1.5, 0.5, 0.0])
    net = save_npz(tmp_path / "net.npz", Ws, bs, [0.0, -1.0, -1.0], [2.0, 1.0, 1.0])
    np.save(tmp_path / "c.npy", np.array([1.8, 0.9, 0.0]))
    res = _run(tmp_path, net, "--ball", tmp_path / "c.npy", "0.5")
    lo, hi = np.array([1.3, 0.4, -0.5]), np.array([2.0, 1.0, 0.5])
    want, _ = naive_patterns(Ws, bs, lo, hi)
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, domain_hs=box_halfspaces(lo, hi))


# ----------------------------------------------------------------------------- --plane

def _plane_rows(P):
    """Slice coordinates (s, t) = Pi (x - x0) and the domain 0 <= s, t <= 1 as rows n . x + v0 <= 0."""
    x0, UV = P[0], np.stack([P[1] - P[0], P[2] - P[0]], axis=1)
    Pi = np.linalg.pinv(UV)
    Hn = np.vstack([-Pi, Pi])
    H0 = np.concatenate([Pi @ x0, -Pi @ x0 - 1.0])
    return x0, UV, Pi, (Hn, H0)


def test_plane_slice(net3, tmp_path):
    Ws, bs, net = net3
    P = np.array([[-0.9, -0.8, 0.1], [0.8, -0.6, -0.3], [-0.5, 0.9, 0.7]])  # a skew parallelogram
    np.save(tmp_path / "plane.npy", P)
    res = _run(tmp_path, net, "--plane", tmp_path / "plane.npy")
    x0, UV, Pi, dom_hs = _plane_rows(P)
    assert res.points.shape == (len(res.bits), 3)
    # points are in input space, on the slice, strictly inside the parallelogram
    ST = (res.points - x0) @ Pi.T
    assert np.abs(x0 + ST @ UV.T - res.points).max() <= 1e-9
    assert np.all((ST > 0) & (ST < 1))
    assert_unique(res.bits)
    Q = np.linalg.qr(UV)[0]
    check_interior(Ws, bs, res, basis=Q, domain_hs=dom_hs)
    # the same slice as a 2-D network over [0, 1]^2, enumerated by the yardstick
    Ws2, bs2 = [Ws[0] @ UV] + Ws[1:], [bs[0] + Ws[0] @ x0] + bs[1:]
    want, _ = naive_patterns(Ws2, bs2, np.zeros(2), np.ones(2))
    assert pattern_set(res.bits) == want
    # areas: in (s, t) units times the parallelogram's area element
    BH, B0 = box_halfspaces(np.zeros(2), np.ones(2))
    total = 0.0
    for i in range(len(res.bits)):
        Hn, H0 = region_halfspaces(*region_affine(Ws2, bs2, res.bits[i]), res.bits[i])
        total += convex_volume(np.vstack([Hn, BH]), np.concatenate([H0, B0]), ST[i])
    area = np.sqrt(np.linalg.det(UV.T @ UV))
    assert abs(total * area - area) <= 1e-6 * area
    # uniform samples of the parallelogram
    rng = np.random.default_rng(8)
    X = x0 + rng.uniform(0, 1, size=(100_000, 2)) @ UV.T
    assert pattern_set(patterns_of(Ws, bs, X)) <= pattern_set(res.bits)


# ----------------------------------------------------------------------------- --line

def exact_line_pieces(Ws, bs, x0, x1, min_len=1e-13):
    """All pieces of the segment x0 + lam (x1 - x0), lam in [0, 1], by exact breakpoints:
    the pattern at the middle of an unexplored interval is valid on an interval [lo, hi] computed
    from its affine constraints; recurse on what is left either side.  {bits: (lo, hi)}."""
    u = x1 - x0
    pieces = {}
    todo = [(0.0, 1.0)]
    while todo:
        a, b = todo.pop()
        if b - a <= min_len:
            continue
        m = 0.5 * (a + b)
        bits = patterns_of(Ws, bs, x0 + m * u)[0]
        A, c = region_affine(Ws, bs, bits)
        g, h = A @ u, A @ x0 + c  # z(lam) = g lam + h
        sgn = np.where(bits.astype(bool), 1.0, -1.0)  # need sgn * z >= 0
        gs, hs = sgn * g, sgn * h
        lo, hi = 0.0, 1.0
        pos, neg = gs > 0, gs < 0
        if pos.any():
            lo = max(lo, float(np.max(-hs[pos] / gs[pos])))
        if neg.any():
            hi = min(hi, float(np.min(-hs[neg] / gs[neg])))
        lo, hi = min(lo, m), max(hi, m)
        key = bytes(bits)
        if key in pieces:
            plo, phi = pieces[key]
            lo, hi = min(lo, plo), max(hi, phi)
        pieces[key] = (lo, hi)
        todo.append((a, min(lo, b)))
        todo.append((max(hi, a), b))
    return pieces


def test_line_segment(net3, tmp_path):
    Ws, bs, net = net3
    P = np.array([[-0.95, 0.9, -0.7], [0.9, -0.85, 0.8]])
    np.save(tmp_path / "line.npy", P)
    res = _run(tmp_path, net, "--line", tmp_path / "line.npy")
    x0, x1 = P
    u = x1 - x0
    assert res.points.shape == (len(res.bits), 3)
    lam = (res.points - x0) @ u / (u @ u)
    assert np.abs(x0 + lam[:, None] * u - res.points).max() <= 1e-9
    assert np.all((lam > 0) & (lam < 1))
    assert_unique(res.bits)
    basis = (u / np.linalg.norm(u))[:, None]
    dom_hs = (np.vstack([-u, u]) / (u @ u), np.array([u @ x0, -(u @ x0) - u @ u]) / (u @ u))
    check_interior(Ws, bs, res, basis=basis, domain_hs=dom_hs)
    # exact breakpoints
    pieces = exact_line_pieces(Ws, bs, x0, x1)
    assert sum(hi - lo for lo, hi in pieces.values()) == pytest.approx(1.0, abs=1e-12)
    big = {k for k, (lo, hi) in pieces.items() if hi - lo > 1e-7}
    got = pattern_set(res.bits)
    assert big <= got, f"{len(big - got)} pieces of the segment are missing"
    assert got <= set(pieces), f"{len(got - set(pieces))} reported patterns do not occur on the segment"
    assert len(pieces) >= 5  # the segment crosses several regions
    # each reported interior point lies in its own piece
    for i, key in enumerate(map(bytes, res.bits)):
        lo, hi = pieces[key]
        assert lo < lam[i] < hi
    # lengths of the reported pieces sum to the segment
    assert sum(pieces[k][1] - pieces[k][0] for k in got) == pytest.approx(1.0, abs=1e-9)
    # dense sampling on the segment
    S = x0 + np.linspace(0, 1, 100_001)[:, None] * u
    assert pattern_set(patterns_of(Ws, bs, S)) <= got
    # the yardstick on the 1-D restriction
    want, _ = naive_patterns([Ws[0] @ u[:, None]] + Ws[1:], [bs[0] + Ws[0] @ x0] + bs[1:], np.zeros(1), np.ones(1))
    assert got == want


# ----------------------------------------------------------------------------- --unbounded

def test_unbounded_two_layers(tmp_path):
    """R^2 with two hidden layers: equal to the yardstick's regions of a huge box."""
    Ws, bs = random_net(3, 2, [6, 5])
    net = save_npz(tmp_path / "net.npz", Ws, bs, [-1.0, -1.0], [1.0, 1.0])  # the file's box is ignored
    res = _run(tmp_path, net, "--unbounded")
    assert_unique(res.bits)
    check_interior(Ws, bs, res)
    want, _ = naive_patterns(Ws, bs, -1e4 * np.ones(2), 1e4 * np.ones(2))
    assert pattern_set(res.bits) == want
    small, _ = naive_patterns(Ws, bs, -np.ones(2), np.ones(2))
    assert small < want  # the test does go beyond the file's box
    assert json.loads(res.attrs["domain"])["kind"] == "unbounded"


# ----------------------------------------------------------------------------- degenerate box (ACAS Xu)

ACAS_LO = [1500.0, -0.06, 0.0, 1000.0, 700.0]
ACAS_HI = [1800.0, 0.06, 0.0, 1200.0, 800.0]


def test_degenerate_box_acas_property4(acas_nnet, tmp_path):
    """ACAS Xu property 4: psi fixed to 0 is a 4-D domain, not an error."""
    res = _run(tmp_path, acas_nnet, "--box", ",".join(map(str, ACAS_LO)), ",".join(map(str, ACAS_HI)))
    nn = parse_nnet(acas_nnet)
    Ws, bs = nn.folded()
    lo, hi = np.array(ACAS_LO), np.array(ACAS_HI)
    assert len(res.bits) > 10
    assert res.points.shape[1] == 5
    assert np.all(res.points[:, 2] == 0.0), "psi must be exactly 0"
    assert np.all((res.points >= lo) & (res.points <= hi))
    assert int(res.attrs.get("reduced_dim", 4)) == 4
    assert_unique(res.bits)
    free = [0, 1, 3, 4]
    basis = np.eye(5)[:, free]
    check_interior(Ws, bs, res, basis=basis, domain_hs=box_halfspaces(lo, hi))
    # the reference forward pass, on normalised inputs, gives the same patterns at the points
    Z = (res.points - nn.means[:5]) / nn.ranges[:5]
    assert np.array_equal(patterns_of(nn.Ws, nn.bs, Z), res.bits)
    # uniform samples of the 4-D box
    rng = np.random.default_rng(4)
    X = rng.uniform(lo, hi, size=(30_000, 5))
    assert np.all(X[:, 2] == 0.0)
    assert pattern_set(patterns_of(Ws, bs, X)) <= pattern_set(res.bits)


def test_degenerate_box_matches_naive_on_the_restriction(tmp_path):
    """A box with x1 fixed to 0.3 is the 2-D network W0[:, (0, 2)], b0 + 0.3 W0[:, 1] over [-1, 1]^2."""
    Ws, bs = random_net(13, 3, [5, 4, 3])
    net = save_npz(tmp_path / "net.npz", Ws, bs)
    res = _run(tmp_path, net, "--box", "-1,0.3,-1", "1,0.3,1")
    assert np.all(res.points[:, 1] == 0.3)
    Ws2, bs2 = [Ws[0][:, [0, 2]]] + Ws[1:], [bs[0] + 0.3 * Ws[0][:, 1]] + bs[1:]
    want, _ = naive_patterns(Ws2, bs2, -np.ones(2), np.ones(2))
    assert_unique(res.bits)
    assert pattern_set(res.bits) == want
    check_interior(Ws, bs, res, basis=np.eye(3)[:, [0, 2]],
                   domain_hs=box_halfspaces(np.array([-1, 0.3, -1]), np.array([1, 0.3, 1])))


def test_slices_inside_a_neuron_zero_set(tmp_path):
    """Ties go to inactive: a --line and a --plane inside {x1 = 0}, where neuron 2 of layer 1 and
    neuron 1 of layer 2 are identically 0: one bit 0 everywhere, regions exactly as sampled."""
    Ws, bs = random_net(12, 3, [5, 4])
    Ws[0][2], bs[0][2] = [0.0, 1.0, 0.0], 0.0
    Ws[1][1], bs[1][1] = np.array([0.0, 0.0, 1.0, 0.0, 0.0]), 0.0
    net = save_npz(tmp_path / "tie.npz", Ws, bs)
    x0 = np.array([-1.0, 0.0, -1.0])
    np.save(tmp_path / "l.npy", np.array([x0, [1.0, 0.0, 1.0]]))
    res = _run(tmp_path, net, "--line", tmp_path / "l.npy", name="line.h5")
    u = np.array([2.0, 0.0, 2.0])
    check_interior(Ws, bs, res, basis=(u / np.linalg.norm(u))[:, None])
    assert np.all(res.bits[:, 2] == 0) and np.all(res.bits[:, 6] == 0)
    pieces = exact_line_pieces(Ws, bs, x0, x0 + u)
    assert pattern_set(res.bits) == {k for k, (lo, hi) in pieces.items() if hi - lo > 1e-9}
    np.save(tmp_path / "p.npy", np.array([x0, [1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]]))
    res = _run(tmp_path, net, "--plane", tmp_path / "p.npy", name="plane.h5")
    assert np.all(res.bits[:, 2] == 0) and np.all(res.bits[:, 6] == 0)
    assert np.all(res.points[:, 1] == 0.0)
    check_interior(Ws, bs, res, basis=np.eye(3)[:, [0, 2]])
    X = x0 + np.random.default_rng(0).uniform(0, 1, (100_000, 2)) @ np.array([[2.0, 0, 0], [0, 0, 2.0]])
    Ws2, bs2 = [Ws[0][:, [0, 2]]] + Ws[1:], [bs[0]] + bs[1:]
    want, _ = naive_patterns(Ws2, bs2, -np.ones(2), np.ones(2))
    # the yardstick keeps both sides of an identically-0 neuron (0 <= 0); the contract says inactive
    want = {k for k in want if k[2] == 0 and k[6] == 0}
    assert pattern_set(res.bits) == want
    assert pattern_set(patterns_of(Ws, bs, X)) <= want


def test_to_x_is_x0_plus_E_y_for_every_domain_kind():
    """Domain.to_x applies a box's E coordinate-wise (no d x k product); the result must be
    x0 + E y exactly as the matrix product gives it, for every kind (degenerate boxes too)."""
    from mpi_enum.model.domain import box_domain, plane_domain, polytope_domain

    rng = np.random.default_rng(5)
    doms = [box_domain(-np.ones(6), 3 * np.ones(6)),
            box_domain(np.array([0.0, 1, 2, -1]), np.array([1.0, 1, 4, 1])),  # one fixed coordinate
            plane_domain(rng.normal(size=(3, 5)), 5),
            polytope_domain(np.vstack([np.eye(3), -np.eye(3)]), np.ones(6), 3)]
    assert doms[0]._selection is not None and doms[1]._selection is not None and doms[2]._selection is None
    for dom in doms:
        Y = rng.uniform(-1, 1, size=(7, dom.k))
        np.testing.assert_allclose(dom.to_x(Y), dom.x0 + Y @ dom.E.T, rtol=0, atol=1e-15)
        np.testing.assert_allclose(dom.to_x(Y[0]), dom.x0 + dom.E @ Y[0], rtol=0, atol=1e-15)
        assert dom.to_x(Y).shape == (7, dom.d) and dom.to_x(Y[0]).shape == (dom.d,)
