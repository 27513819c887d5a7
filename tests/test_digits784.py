"""The 784-input digits classifier of inputs/digits784 (issue 11's real example).

Small domains of the committed network (a plane through three digits; an L-infinity ball of
radius 0.05 around a digit, cut to the pixel box) are enumerated through the public API; the
pattern sets must equal the test oracle's (tests/reference_engine.py: pure Python + HiGHS), and
every interior point must reproduce its pattern under an independent numpy forward pass of the
npz arrays (the network was checked against scikit-learn's own predictions when it was trained).
"""
from pathlib import Path

import numpy as np
import pytest

import mpi_enum
from mpi_enum.loaders import load_network
from mpi_enum.loaders.domain_options import make_domain
from mpi_enum.model.problem import Problem
from reference_engine import ReferenceEngine

HERE = Path(__file__).resolve().parent.parent / "inputs" / "digits784"
NET = HERE / "digits784_mlp.npz"


def forward_bits(arrays, x):
    """The hidden neurons' on/off pattern of x (pre-activation > 0), from the npz arrays alone."""
    bits, h, i = [], np.asarray(x, float), 0
    while f"W{i + 1}" in arrays:
        z = arrays[f"W{i}"] @ h + arrays[f"b{i}"]
        bits.append(z > 0)
        h = np.maximum(z, 0.0)
        i += 1
    return np.concatenate(bits)


def oracle(domain_kw):
    net = load_network(str(NET))
    eng = ReferenceEngine(Problem(net, make_domain(net, **domain_kw), 1e-9))
    pats = []
    assert eng.explore(eng.root_item(), lambda b, y, r, rk: pats.append(bytes(b))) == []
    # the engine emits one 0/1 byte per neuron; results store them packed (np.packbits)
    return {np.packbits(np.frombuffer(b, np.uint8)).tobytes() for b in pats}


@pytest.mark.parametrize("domain_kw", [{"plane": str(HERE / "plane.npy")}, {"ball": (str(HERE / "digit.npy"), 0.05)}],
                         ids=["plane", "ball0.05"])
def test_digits784_against_the_oracle_and_a_forward_pass(domain_kw):
    arrays = dict(np.load(NET))
    assert arrays["W0"].shape == (12, 784) and arrays["W2"].shape == (10, 12)
    res = mpi_enum.enumerate(str(NET), **domain_kw)
    got = {bytes(p) for p in res.patterns}
    assert len(got) == len(res.patterns) > 10
    assert got == oracle(domain_kw)
    bits = res.bits()
    for i, x in enumerate(res.interior_points):
        assert np.array_equal(forward_bits(arrays, x), bits[i].astype(bool)), f"region {i}"
