"""Networks with LeakyReLU slopes and linear neurons under a communicator (1, 2, 3 ranks): the
gathered pattern set and layer counts equal a run without MPI, and the collective file is a
version-3 file that ``verify`` passes on the same ranks.  Run as
``mpiexec -n P .venv/bin/python -m mpi4py -m pytest --with-mpi tests/mpi``."""
from __future__ import annotations

import os

import numpy as np
import pytest


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _arrays(d=3, width=5, seed=4):
    """A two-block residual network y += U relu_a(V y + c) as a chain with linear copies of y,
    LeakyReLU slope 0.1 on the gated neurons."""
    rng = np.random.default_rng(seed)
    arrays, P = {}, np.eye(d)
    for i in range(2):
        V, c = rng.normal(size=(width, d)) / np.sqrt(d), rng.normal(size=width) * 0.3
        U = rng.normal(size=(d, width)) / np.sqrt(width)
        arrays[f"W{i}"], arrays[f"b{i}"] = np.vstack([V @ P, P]), np.r_[c, np.zeros(d)]
        arrays[f"linear{i}"] = np.r_[np.zeros(width, bool), np.ones(d, bool)]
        arrays[f"slope{i}"] = np.where(arrays[f"linear{i}"], 0.0, 0.1)
        P = np.hstack([U, np.eye(d)])
    arrays["W2"], arrays["b2"] = rng.normal(size=(2, d)) @ P, rng.normal(size=2)
    return arrays


@pytest.fixture(scope="module")
def net_path(tmp_path_factory):
    comm = _comm()
    d = str(tmp_path_factory.mktemp("units_mpi")) if comm.rank == 0 else None
    d = comm.bcast(d, root=0)
    path = os.path.join(d, "res.npz")
    if comm.rank == 0:
        np.savez(path, **_arrays())
    comm.Barrier()
    return path


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_units_under_comm_match_serial_and_verify(net_path):
    import h5py

    import mpi_enum
    from mpi_enum.post.verify import verify_result

    comm = _comm()
    serial = mpi_enum.enumerate(net_path)
    res = mpi_enum.enumerate(net_path, comm=comm, split_factor=2, budget=4)
    assert res.n_regions == serial.n_regions > 20
    assert res.layer_counts.tolist() == serial.layer_counts.tolist()
    whole = res.allgather()
    assert sorted(bytes(r) for r in whole.patterns) == sorted(bytes(r) for r in serial.patterns)
    out = os.path.join(os.path.dirname(net_path), f"out_{comm.size}.h5")
    res.save(out, force=True)
    comm.Barrier()
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == 3 and list(f.attrs["hidden_widths"]) == [5, 5]
    checks = verify_result(out, net_path, samples=20000, comm=comm)
    assert not [c for c in checks if c.status == "FAIL"], [c for c in checks if c.status == "FAIL"]
    comm.Barrier()
