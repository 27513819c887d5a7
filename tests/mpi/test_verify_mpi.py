"""``mpi-enum verify`` shared over the ranks gives the serial verdicts: run as ``mpiexec -n P
.venv/bin/python -m mpi4py -m pytest --with-mpi tests/mpi`` (P = 1, 2, 3...).

Chunks and buckets are made small, so that every rank holds several of each; rank 0 then runs
the same checks alone (no communicator) and every check's status and detail must be equal, on a
correct result and on corrupted copies (a duplicated row, a moved point, a wrong rank)."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _postproc_util import corrupt_copy, random_net, write_serial_result  # noqa: E402


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    comm = _comm()
    d = str(tmp_path_factory.mktemp("verify_mpi")) if comm.rank == 0 else None
    d = comm.bcast(d, root=0)
    net, src = os.path.join(d, "net.npz"), os.path.join(d, "res.h5")
    if comm.rank == 0:
        random_net(net, [3, 10, 8, 2], seed=4)
        write_serial_result(net, src, box=(-1.0, 1.0))
        import h5py

        corrupt_copy(src, os.path.join(d, "dup.h5"), duplicate=7)
        corrupt_copy(src, os.path.join(d, "moved.h5"), point_shift=(11, 0.8))
        shutil.copyfile(src, os.path.join(d, "rank.h5"))
        with h5py.File(os.path.join(d, "rank.h5"), "r+") as f:
            r = f["regions/affine_rank"]
            r[5] = r[5] - 1
            r[300] = r[300] - 1
    comm.Barrier()
    return d, net, src


@pytest.fixture
def small_parts(monkeypatch):
    from mpi_enum.post import buckets, verify
    from mpi_enum.io import reader

    monkeypatch.setattr(buckets, "BUCKET_ROWS", 150)
    monkeypatch.setattr(reader, "CHUNK_ROWS", 97)
    monkeypatch.setattr(verify, "GEOMETRY_FLOATS", 61 * 18 * 3)  # 61 rows per geometry chunk
    monkeypatch.setattr(verify, "VOLUME_MAX_REGIONS", 0)


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,failing", [("res.h5", set()), ("dup.h5", {"patterns unique"}),
                                          ("moved.h5", {"patterns reproduced"}), ("rank.h5", {"affine ranks"})])
def test_verify_same_verdicts_on_every_rank_count(case, small_parts, name, failing):
    from mpi_enum.post import verify

    comm = _comm()
    d, net, _ = case
    path = os.path.join(d, name)
    par = verify.verify_result(path, net, samples=3000, seed=1, comm=comm)
    got = [(c.name, c.status, c.detail) for c in par]
    assert comm.allgather(got) == [got] * comm.size  # every rank returns the same checks
    if comm.rank == 0:
        ser = [(c.name, c.status, c.detail) for c in verify.verify_result(path, net, samples=3000, seed=1)]
        assert got == ser
        assert {c[0] for c in ser if c[1] == "FAIL"} >= failing
        if not failing:
            assert all(c[1] != "FAIL" for c in ser)
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_verify_command_on_every_rank(case, capsys):
    from mpi_enum import cli

    comm = _comm()
    d, net, src = case
    assert cli.main(["verify", src, net, "--samples", "2000"]) == 0
    assert cli.main(["verify", os.path.join(d, "rank.h5"), net, "--samples", "0"]) == 1
    out = capsys.readouterr().out
    if comm.rank == 0:
        assert "verify: PASSED" in out and "verify: FAILED" in out
    else:
        assert out == ""  # the table comes from rank 0 only
    assert cli.main(["verify", os.path.join(d, "missing.h5"), net]) == 2
    comm.Barrier()
