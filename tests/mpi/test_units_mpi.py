"""Networks with LeakyReLU slopes and linear neurons under a communicator (1, 2, 3 ranks): the
gathered pattern set and layer counts equal a run without MPI, and the collective file is a
version-3 file (version 4 with max units) that ``verify`` passes on the same ranks.  Run as
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


def _run_save_verify(path, name, version, min_regions):
    """Enumerate ``path`` on the communicator and serially, compare, save collectively, check the
    file's version and run ``verify`` on the same ranks; returns the file's path."""
    import h5py

    import mpi_enum
    from mpi_enum.post.verify import verify_result

    comm = _comm()
    serial = mpi_enum.enumerate(path)
    res = mpi_enum.enumerate(path, comm=comm, split_factor=2, budget=4)
    assert res.n_regions == serial.n_regions > min_regions
    assert res.layer_counts.tolist() == serial.layer_counts.tolist()
    whole = res.allgather()
    assert sorted(bytes(r) for r in whole.patterns) == sorted(bytes(r) for r in serial.patterns)
    out = os.path.join(os.path.dirname(path), f"{name}_{comm.size}.h5")
    res.save(out, force=True)
    comm.Barrier()
    with h5py.File(out, "r") as f:
        assert int(f.attrs["format_version"]) == version
    checks = verify_result(out, path, samples=20000, comm=comm)
    assert not [c for c in checks if c.status == "FAIL"], [c for c in checks if c.status == "FAIL"]
    comm.Barrier()
    return out


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_units_under_comm_match_serial_and_verify(net_path):
    import h5py

    out = _run_save_verify(net_path, "out", 3, 20)
    with h5py.File(out, "r") as f:
        assert list(f.attrs["hidden_widths"]) == [5, 5]


def _max_arrays(d=3, seed=6):
    """ReLU(6) -> [max of 2, max of 3, ReLU, ReLU] -> ReLU(4): max units (file version 4)."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(4, 4))
    return {"W0": rng.normal(size=(6, d)), "b0": rng.normal(size=6) * 0.3,
            "W1": rng.normal(size=(7, 6)), "b1": rng.normal(size=7) * 0.3,
            "W2": np.hstack([np.repeat(V[:, [0]], 2, axis=1), np.repeat(V[:, [1]], 3, axis=1), V[:, 2:]]),
            "b2": rng.normal(size=4) * 0.3, "W3": rng.normal(size=(2, 4)), "b3": np.zeros(2),
            "group1": np.array([0, 0, 1, 1, 1, -1, -1])}


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_max_units_under_comm_match_serial_and_verify(net_path):
    import h5py

    comm = _comm()
    path = os.path.join(os.path.dirname(net_path), "max.npz")
    if comm.rank == 0:
        np.savez(path, **_max_arrays())
    comm.Barrier()
    out = _run_save_verify(path, "max", 4, 50)
    with h5py.File(out, "r") as f:
        sel = f["regions/selector"][()]
        bits = np.unpackbits(f["regions/pattern"][()], axis=1, count=17)
    np.testing.assert_array_equal(sel, np.stack([np.argmax(bits[:, 6:8], 1), np.argmax(bits[:, 8:11], 1)], 1))
