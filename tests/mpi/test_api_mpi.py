"""The Python API under a communicator: run as
``mpiexec -n P .venv/bin/python -m mpi4py -m pytest --with-mpi tests/mpi`` (P = 1, 2, 3...).

``mpi_enum.enumerate(..., comm=MPI.COMM_WORLD)`` must give, gathered, the pattern set and layer
counts of a run without MPI, on every rank count; ``save()`` must write, collectively, a file with
the content of the one ``mpi-enum run`` writes on the same ranks."""
from __future__ import annotations

import os

import numpy as np
import pytest

from _nets import random_arrays

D, WIDTHS, SEED = 3, (8, 7), 21


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    comm = _comm()
    d = str(tmp_path_factory.mktemp("api_mpi")) if comm.rank == 0 else None
    d = comm.bcast(d, root=0)
    if comm.rank == 0:
        np.savez(os.path.join(d, "net.npz"), **random_arrays(D, WIDTHS, SEED))
    comm.Barrier()
    return d


def _shared_net(shared_dir, name, d, widths, seed):
    """A random MLP written by rank 0 into the shared folder; its path on every rank."""
    comm = _comm()
    net = os.path.join(shared_dir, name)
    if comm.rank == 0:
        np.savez(net, **random_arrays(d, widths, seed))
    comm.Barrier()
    return net


def _sorted(packed):
    return sorted(bytes(r) for r in packed)


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_enumerate_under_comm_matches_serial(shared_dir):
    import mpi_enum

    comm = _comm()
    net = os.path.join(shared_dir, "net.npz")
    serial = mpi_enum.enumerate(net, box=(-1.5, 1.5))  # this process alone, no communicator
    res = mpi_enum.enumerate(net, box=(-1.5, 1.5), comm=comm, split_factor=2, budget=4)
    assert res.comm is comm and res.complete
    assert res.n_regions == serial.n_regions
    assert res.layer_counts.tolist() == serial.layer_counts.tolist()
    counts = comm.allgather(res.n_local)
    assert sum(counts) == res.n_regions
    assert res.row_offset == sum(counts[:comm.rank])
    assert comm.allgather(res.n_regions) == [res.n_regions] * comm.size
    assert set(res.stats) >= {"nodes", "regions", "busy_seconds"}
    assert all(len(v) == comm.size for v in res.stats.values())
    assert res.stats["regions"] == counts
    whole = res.allgather()
    assert whole.comm is None and whole.n_local == res.n_regions
    assert _sorted(whole.patterns) == _sorted(serial.patterns)  # same set, no duplicates
    # this rank's rows are rows row_offset... of the whole set, which is in rank order
    np.testing.assert_array_equal(whole.patterns[res.row_offset:res.row_offset + res.n_local], res.patterns)
    np.testing.assert_array_equal(whole.interior_points[res.row_offset:res.row_offset + res.n_local],
                                  res.interior_points)
    g = res.gather(root=comm.size - 1)
    if comm.rank == comm.size - 1:
        np.testing.assert_array_equal(g.patterns, whole.patterns)
        np.testing.assert_array_equal(g.affine_ranks, whole.affine_ranks)
    else:
        assert g is None


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_save_under_comm_gives_the_cli_file(shared_dir):
    import h5py

    import mpi_enum
    from mpi_enum.cli import main

    comm = _comm()
    net = os.path.join(shared_dir, "net.npz")
    cli_out = os.path.join(shared_dir, f"cli_{comm.size}.h5")
    api_out = os.path.join(shared_dir, f"api_{comm.size}.h5")
    assert main(["run", net, "-o", cli_out, "--force", "--split-factor", "2"]) == 0
    res = mpi_enum.enumerate(net, comm=comm, split_factor=2)
    assert res.save(api_out, force=True) == api_out
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(cli_out, "r") as fc, h5py.File(api_out, "r") as fa:
            for k in ("format", "format_version", "n_regions", "input_dim", "hidden_widths", "complete", "n_ranks",
                      "network_sha256", "network_source", "domain", "tol", "reduced_dim", "stopped_reason",
                      "io_mode"):
                assert np.array_equal(fa.attrs[k], fc.attrs[k]), k
            oc = np.lexsort(fc["regions/pattern"][()].T)
            oa = np.lexsort(fa["regions/pattern"][()].T)
            for name in ("pattern", "interior_point", "radius", "affine_rank"):
                np.testing.assert_array_equal(fa["regions/" + name][()][oa], fc["regions/" + name][()][oc],
                                              err_msg=name)
            names = []
            fc.visit(lambda n: names.append(n) if isinstance(fc[n], h5py.Dataset) and not n.startswith(
                ("regions/", "stats/")) else None)
            for n in names:
                np.testing.assert_array_equal(fa[n][()], fc[n][()], err_msg=n)
            assert sorted(fa["stats"]) == sorted(fc["stats"])
            assert all(fa["stats/" + k].shape == (comm.size,) for k in fa["stats"])
    # read back (any rank): the file's rows are the gathered rows, in the same order
    back = mpi_enum.open(api_out)
    whole = res.allgather()
    np.testing.assert_array_equal(back.patterns, whole.patterns)
    np.testing.assert_array_equal(back.radii, whole.radii)
    assert back.layer_counts.tolist() == res.layer_counts.tolist() and back.n_ranks == comm.size
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_bad_input_raises_on_every_rank(shared_dir):
    import mpi_enum
    from mpi_enum.errors import InputError
    from mpi_enum.model.network import Network

    comm = _comm()
    net = os.path.join(shared_dir, "net.npz")
    with pytest.raises(InputError, match="lo > hi"):
        mpi_enum.enumerate(net, box=(1, 0), comm=comm)
    # only the last rank's input is bad: every rank raises its message, nobody hangs
    box = (1, 0) if comm.rank == comm.size - 1 else (-1, 1)
    with pytest.raises(InputError, match="lo > hi") as exc:
        mpi_enum.enumerate(net, box=box, comm=comm)
    assert exc.value.rank == comm.size - 1
    existing = os.path.join(shared_dir, "exists.h5")
    res = mpi_enum.enumerate(net, comm=comm)
    res.save(existing, force=True)
    with pytest.raises(InputError, match="exists"):
        res.save(existing)
    if comm.size > 1:  # a network that differs between ranks (an unseeded model) is refused
        a = random_arrays(D, WIDTHS, SEED + comm.rank)
        own = Network([a[f"W{i}"] for i in range(3)], [a[f"b{i}"] for i in range(3)])
        with pytest.raises(InputError, match="different networks"):
            mpi_enum.enumerate(own, comm=comm)
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_compressed_result_holds_the_same_rows(shared_dir):
    """--compress (and save(compress=True)): the /regions datasets are chunked and gzip-compressed,
    written collectively; every row reads back as in the plain file.  The d = 100 box's /domain/G
    (200 x 100, over BIG_DOMAIN) is compressed in both files and reads back as the box's rows."""
    import h5py

    import mpi_enum
    from mpi_enum.cli import main
    from mpi_enum.io.results import BIG_DOMAIN

    comm = _comm()
    net = _shared_net(shared_dir, "net100.npz", 100, (5, 4), 3)
    plain, packed = (os.path.join(shared_dir, f"{n}_{comm.size}.h5") for n in ("plain", "packed"))
    assert main(["run", net, "-o", plain, "--force"]) == 0
    assert main(["run", net, "-o", packed, "--force", "--compress"]) == 0
    saved = mpi_enum.enumerate(net, comm=comm).save(os.path.join(shared_dir, f"saved_{comm.size}.h5"), force=True,
                                                    compress=True)
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(plain, "r") as fp, h5py.File(packed, "r") as fz, h5py.File(saved, "r") as fs:
            assert fp["domain/G"].nbytes > BIG_DOMAIN
            for f in (fp, fz, fs):
                assert f["domain/G"].compression == "gzip"
                G = f["domain/G"][()]
                np.testing.assert_array_equal(np.abs(G).sum(axis=1), np.ones(200))
            assert fp["regions/interior_point"].compression is None
            n = int(fp.attrs["n_regions"])
            assert n > 10 and int(fz.attrs["n_regions"]) == int(fs.attrs["n_regions"]) == n
            op = np.lexsort(fp["regions/pattern"][()].T)
            for f in (fz, fs):
                assert f["regions/interior_point"].compression == "gzip" and f["regions/pattern"].chunks is not None
                of = np.lexsort(f["regions/pattern"][()].T)
                assert _sorted(f["regions/pattern"][()]) == _sorted(fp["regions/pattern"][()])
                for name in ("pattern", "affine_rank"):
                    np.testing.assert_array_equal(f["regions/" + name][()][of], fp["regions/" + name][()][op])
                assert np.all(np.isfinite(f["regions/interior_point"][()])) and np.all(f["regions/radius"][()] > 0)
    comm.Barrier()


@pytest.mark.mpi
def test_points_none_written_collectively(shared_dir):
    """--points none (and save(points="none")) under the communicator: no /regions/interior_point,
    format version 5, the other rows as in the plain file; the points recomputed from the
    patterns give every pattern back by a numpy forward pass."""
    import h5py

    import mpi_enum
    from mpi_enum.cli import main
    from mpi_enum.post.points import recompute_points

    comm = _comm()
    net = _shared_net(shared_dir, "net40.npz", 40, (5, 4), 5)
    plain, bare = (os.path.join(shared_dir, f"{n}_{comm.size}.h5") for n in ("plain40", "bare40"))
    assert main(["run", net, "-o", plain, "--force"]) == 0
    assert main(["run", net, "-o", bare, "--force", "--points", "none"]) == 0
    res = mpi_enum.enumerate(net, comm=comm, points="none")
    assert res.interior_points is None
    saved = res.save(os.path.join(shared_dir, f"saved40_{comm.size}.h5"), force=True)
    comm.Barrier()

    def check():  # on rank 0; its verdict goes to every rank, so a failure ends all of them
        a = dict(np.load(net))
        with h5py.File(plain, "r") as fp, h5py.File(bare, "r") as fb, h5py.File(saved, "r") as fs:
            n = int(fp.attrs["n_regions"])
            op = np.lexsort(fp["regions/pattern"][()].T)
            assert n > 10
            for f in (fb, fs):
                assert int(f.attrs["format_version"]) == 5 and "interior_point" not in f["regions"]
                assert int(f.attrs["n_regions"]) == n
                of = np.lexsort(f["regions/pattern"][()].T)
                for name in ("pattern", "radius", "affine_rank"):
                    np.testing.assert_array_equal(f["regions/" + name][()][of], fp["regions/" + name][()][op])
        X, _ = recompute_points(bare)
        h, bits = X, []
        for l in range(2):
            z = h @ a[f"W{l}"].T + a[f"b{l}"]
            bits.append(z > 0)
            h = np.maximum(z, 0)
        with h5py.File(bare, "r") as f:
            stored = np.unpackbits(f["regions/pattern"][()], axis=1, count=9)
        np.testing.assert_array_equal(np.concatenate(bits, axis=1).astype(np.uint8), stored)

    err = None
    if comm.rank == 0:
        try:
            check()
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
    err = comm.bcast(err, root=0)
    assert err is None, err
