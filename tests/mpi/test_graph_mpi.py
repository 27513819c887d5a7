"""``mpi-enum graph`` at any rank count gives the file it gives on one rank: run as
``mpiexec -n P .venv/bin/python -m mpi4py -m pytest --with-mpi tests/mpi`` (P = 1, 2, 3...).

Every rank runs the command (:func:`mpi_enum.cli.main`, on MPI.COMM_WORLD); rank 0 then runs the
same computation alone (no communicator) and compares every geometry dataset and count."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _postproc_util import random_net, write_serial_result  # noqa: E402

DATASETS = ("graph/edges", "graph/neuron", "regions/linear_region", "regions/volume", "vertices/offset",
            "vertices/points", "decision/segments", "decision/region", "decision/classes")
ATTRS = ("n_edges", "n_linear_regions", "n_affine_maps", "graph_facets", "graph_unmatched", "graph_one_sided",
         "graph_degenerate", "format_version")


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    comm = _comm()
    d = str(tmp_path_factory.mktemp("graph_mpi")) if comm.rank == 0 else None
    return comm.bcast(d, root=0)


def _read(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in DATASETS if k in f}, {k: f.attrs[k] for k in ATTRS}


@pytest.mark.mpi
@pytest.mark.timeout(240)
@pytest.mark.parametrize("widths,seed,vertices", [([2, 8, 7, 3], 5, False), ([3, 6, 5, 2], 3, True),
                                                  ([2, 3, 1], 1, True)])
def test_graph_same_on_every_rank_count(shared_dir, widths, seed, vertices):
    from mpi_enum import cli
    from mpi_enum.geometry.graph import build_graph

    comm = _comm()
    tag = f"{len(widths)}_{seed}"
    src = os.path.join(shared_dir, f"r{tag}.h5")
    if comm.rank == 0:
        net = random_net(os.path.join(shared_dir, f"n{tag}.npz"), widths, seed=seed)
        write_serial_result(net, src, box=(-1.0, 1.0))
    comm.Barrier()
    par = os.path.join(shared_dir, f"par{tag}.h5")
    args = ["graph", src, "-o", par, "--force"] + (["--vertices"] if vertices else [])
    assert cli.main(args) == 0
    comm.Barrier()
    ok = True
    if comm.rank == 0:
        ser = os.path.join(shared_dir, f"ser{tag}.h5")
        build_graph(src, ser, comm=None, vertices=vertices, force=True)
        (dp, ap), (ds, as_) = _read(par), _read(ser)
        assert set(dp) == set(ds)
        for k in ds:
            assert dp[k].shape == ds[k].shape, k
            if dp[k].dtype.kind == "f":
                assert np.allclose(dp[k], ds[k], rtol=1e-12, atol=1e-14, equal_nan=True), k
            else:
                assert np.array_equal(dp[k], ds[k]), k
        assert {k: int(v) for k, v in ap.items()} == {k: int(v) for k, v in as_.items()}
        assert int(ap["n_edges"]) > 0
    ok = comm.bcast(ok, root=0)
    assert ok


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_graph_bad_input_on_every_rank(shared_dir):
    from mpi_enum import cli

    comm = _comm()
    assert cli.main(["graph", os.path.join(shared_dir, "missing.h5")]) == 2
    comm.Barrier()
