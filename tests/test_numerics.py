"""Numerics that do not depend on scale (issue 12 rows 2 and 3).

A positive factor on a neuron's weight row and bias, compensated in the next layer's column,
leaves every activation region unchanged; so does multiplying the first layer and every later
bias by one factor (all pre-activations scale together).  The engine must give the same pattern
set and layer counts for any finite weights, and agree with ``verify``'s forward pass on
neurons whose weights are tiny but not zero ("dead" neurons after weight decay).
"""
from __future__ import annotations

import numpy as np
import pytest

from _postproc_util import write_serial_result
from mpi_enum.engine.search import enumerate_serial
from mpi_enum.model.domain import box_domain
from mpi_enum.model.network import Network, random_mlp
from mpi_enum.model.problem import Problem
from mpi_enum.post import verify


def _net(d=3, widths=(8, 8, 6), seed=3):
    a = random_mlp(d, widths, seed=seed, n_out=2)
    n = len(widths) + 1
    return [a[f"W{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)]


def _patterns(Ws, bs, d):
    dom = box_domain(-np.ones(d), np.ones(d))
    out, st = enumerate_serial(Problem(Network(Ws, bs), dom, 1e-9))
    return sorted(b for b, *_ in out), [int(c) for c in st.layer_counts]


@pytest.fixture(scope="module")
def reference():
    Ws, bs = _net()
    return Ws, bs, _patterns(Ws, bs, 3)


@pytest.mark.parametrize("c", [1e150, 1e-150, 1e300, 1e-300, 1e-170])
def test_global_scale_leaves_regions_unchanged(reference, c):
    """W0 and every bias times c: every pre-activation is c times the original's."""
    Ws, bs, (ref, ref_lc) = reference
    W2 = [Ws[0] * c] + [W.copy() for W in Ws[1:]]
    b2 = [b * c for b in bs]
    assert all(np.all(np.isfinite(W)) and np.any(W != 0) for W in W2)
    pats, lc = _patterns(W2, b2, 3)
    assert lc == ref_lc
    assert pats == ref


@pytest.mark.parametrize("seed", [0, 1])
def test_per_neuron_positive_rescaling(reference, seed):
    """Neuron j of layer l times s_j in 10^[-120, 120], column j of layer l+1 divided by s_j."""
    Ws, bs, (ref, ref_lc) = reference
    rng = np.random.default_rng(seed)
    W2 = [W.copy() for W in Ws]
    b2 = [b.copy() for b in bs]
    for l in range(len(Ws) - 1):
        s = 10.0 ** rng.uniform(-120, 120, size=len(bs[l]))
        W2[l] = W2[l] * s[:, None]
        b2[l] = b2[l] * s
        W2[l + 1] = W2[l + 1] / s[None, :]
    pats, lc = _patterns(W2, b2, 3)
    assert lc == ref_lc
    assert pats == ref


def test_dead_neurons_agree_with_verify(tmp_path):
    """Two first-layer neurons with weights ~1e-24 (weight decay): their hyperplanes are real,
    and the engine's patterns must be what the forward pass of the file computes."""
    Ws, bs = _net(d=2, widths=(8, 8), seed=5)
    rng = np.random.default_rng(1)
    for j in (2, 5):
        Ws[0][j] = rng.normal(size=2) * 1e-24
        bs[0][j] = 4e-25
    arrs = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        arrs[f"W{i}"], arrs[f"b{i}"] = W, b
    net = tmp_path / "dead.npz"
    np.savez(net, **arrs)
    out = write_serial_result(net, tmp_path / "dead.h5")
    st = {c.name: (c.status, c.detail) for c in verify.verify_result(out, str(net), samples=20000)}
    bad = {k: v for k, v in st.items() if v[0] == "FAIL"}
    assert not bad, bad
    # and the same regions as the network whose dead neurons are scaled up to unit size
    W3 = [W.copy() for W in Ws]
    b3 = [b.copy() for b in bs]
    for j in (2, 5):
        W3[0][j] *= 1e24
        b3[0][j] *= 1e24
        W3[1][:, j] /= 1e24
    assert _patterns(Ws, bs, 2) == _patterns(W3, b3, 2)
