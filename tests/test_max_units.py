"""Max units: max groups in the network IR and the kernel's g-way split.

Oracles that share no code with the engine: a brute force over every pattern and selector (each
cell built here from the weights: a ReLU neuron's side, a group's "member s is the maximum" rows
z_t - z_s <= 0; scipy's HiGHS LP for its Chebyshev radius); a 2-input max network against the
ReLU network max(a, b) = b + relu(a - b), which has the same regions; points and samples checked
by a plain numpy forward pass.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpi_enum
from mpi_enum.model.network import Network, validate

from test_units import _cheb_radius


def brute_force(Ws, bs, groups, lo, hi, rmin=1e-6):
    d, L = Ws[0].shape[1], len(Ws) - 1
    units = []
    for g in groups:
        u, seen = [], set()
        for j, gid in enumerate(g):
            if gid < 0:
                u.append(("relu", j))
            elif gid not in seen:
                seen.add(gid)
                u.append(("max", list(np.flatnonzero(g == gid))))
        units.append(u)
    choices = [[0, 1] if kind == "relu" else list(range(len(x))) for u in units for kind, x in u]
    found = set()
    for ch in itertools.product(*choices):
        rows, rhs, bits, q = [], [], [], 0
        M, m0 = np.eye(d), np.zeros(d)
        for l in range(L):
            Z, z0 = Ws[l] @ M, Ws[l] @ m0 + bs[l]
            gate = np.zeros(len(z0))
            for kind, x in units[l]:
                c = ch[q]
                q += 1
                if kind == "relu":
                    rows.append(-Z[x] if c else Z[x]); rhs.append(z0[x] if c else -z0[x])
                    gate[x] = c
                else:
                    s = x[c]
                    gate[s] = 1
                    for t in x:
                        if t != s:
                            rows.append(Z[t] - Z[s]); rhs.append(z0[s] - z0[t])
            bits += [int(v) for v in gate]
            M, m0 = gate[:, None] * Z, gate * z0
        A, c = np.array(rows), np.array(rhs)
        if _cheb_radius(A, c, lo, hi) > rmin:
            found.add(tuple(bits))
    return found


def _forward_bits(Ws, bs, groups, X):
    h, out = X, []
    for W, b, g in zip(Ws[:-1], bs[:-1], groups):
        z = h @ W.T + b
        bit = z > 0
        for gid in np.unique(g[g >= 0]):
            idx = np.flatnonzero(g == gid)
            bit[:, idx] = False
            bit[np.arange(len(z)), idx[np.argmax(z[:, idx], axis=1)]] = True
        out.append(bit)
        h = np.where(bit, z, 0.0)
    return np.concatenate(out, axis=1)


def _net(seed, d, spec):
    rng = np.random.default_rng(seed)
    Ws, bs, groups, n_in = [], [], [], d
    for g in spec:
        g = np.asarray(g)
        Ws.append(rng.normal(size=(len(g), n_in))); bs.append(rng.normal(size=len(g)) * 0.5)
        groups.append(g)
        n_in = len(g)
    Ws.append(rng.normal(size=(1, n_in))); bs.append(np.zeros(1))
    return Ws, bs, groups


SPECS = {"relu_then_max": (2, [[-1, -1, -1, 0, 0, 0], [5, 5, -1, -1]]),
         "max_then_relu": (2, [[0, 0, 0], [-1, -1]]),
         "two_groups_3d": (3, [[0, 0, 1, 1, 1, -1], [-1, -1, 2, 2]])}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_patterns_and_selectors_equal_the_brute_force(spec, seed):
    d, layers = SPECS[spec]
    Ws, bs, groups = _net(seed, d, layers)
    lo, hi = -np.ones(d), np.ones(d)
    net = validate(Network([W.copy() for W in Ws], [b.copy() for b in bs], groups=groups), "max.npz")
    res = mpi_enum.enumerate(net, box=(lo, hi))
    got = {tuple(int(v) for v in np.unpackbits(p, count=net.n_hidden)) for p in res.patterns}
    assert len(got) == res.n_regions
    assert got == brute_force(Ws, bs, groups, lo, hi)
    assert np.array_equal(np.packbits(_forward_bits(Ws, bs, groups, res.interior_points), axis=1), res.patterns)
    X = np.random.default_rng(7).uniform(lo, hi, size=(50_000, d))
    assert {tuple(int(v) for v in r) for r in np.unique(_forward_bits(Ws, bs, groups, X), axis=0)} <= got


@pytest.mark.parametrize("d, k, before", [(2, 3, 0), (2, 8, 10), (3, 6, 8)])
def test_two_input_max_has_the_regions_of_its_relu_form(d, k, before):
    """max(a, b) = b + relu(a - b): a network with 2-input max units and its ReLU rewriting
    (a layer of relu(a - b) and linear copies of b) have the same regions: same count, and every
    region of one holds exactly one region of the other.  ``before``: a ReLU layer of that width
    in front (the max units then pool ReLU outputs, as a CNN's MaxPool after a ReLU: many
    candidates are constant 0 on a region, which the kernel's group screen decides)."""
    rng = np.random.default_rng(3 + k)
    pre_W, pre_b, n_in = [], [], d
    if before:
        pre_W, pre_b, n_in = [rng.normal(size=(before, d))], [rng.normal(size=before) * 0.4], before
    A, a0 = rng.normal(size=(2 * k, n_in)), rng.normal(size=2 * k) * 0.4
    V, v0 = rng.normal(size=(4, k)), rng.normal(size=4) * 0.4  # a ReLU layer on the maxima
    none = [-np.ones(before, int)] if before else []
    groups = none + [np.repeat(np.arange(k), 2), -np.ones(4, int)]
    Wo = rng.normal(size=(1, 4))
    # the next layer reads each member's column: the same weights for both members of a unit
    maxnet = validate(Network(pre_W + [A, np.repeat(V, 2, axis=1), Wo], pre_b + [a0, v0, np.zeros(1)],
                              groups=groups), "max.npz")
    D = np.zeros((2 * k, 2 * k))  # rows: relu(a_u - b_u) for u, then b_u (linear)
    for u in range(k):
        D[u, 2 * u], D[u, 2 * u + 1], D[k + u, 2 * u + 1] = 1.0, -1.0, 1.0
    S = np.hstack([np.eye(k), np.eye(k)])  # max_u = relu(.) + b_u
    lin = [np.zeros(before, bool)] if before else []
    relunet = validate(Network(pre_W + [D @ A, V @ S, Wo], pre_b + [D @ a0, v0, np.zeros(1)],
                               linear=lin + [np.r_[np.zeros(k, bool), np.ones(k, bool)], np.zeros(4, bool)]),
                       "relu.npz")
    X = rng.uniform(-1, 1, size=(200, d))
    np.testing.assert_allclose(maxnet.forward(X), relunet.forward(X), rtol=1e-12, atol=1e-12)
    rm, rr = mpi_enum.enumerate(maxnet), mpi_enum.enumerate(relunet)
    assert rm.n_regions == rr.n_regions > 10
    # the region of each max-net point, in the ReLU net's patterns, is a bijection
    pm = {bytes(np.packbits(p)) for p in relunet.patterns(rm.interior_points)}
    pr = {bytes(np.packbits(p)) for p in maxnet.patterns(rr.interior_points)}
    assert len(pm) == len(pr) == rm.n_regions
    assert pm == {bytes(p) for p in rr.patterns} and pr == {bytes(p) for p in rm.patterns}
