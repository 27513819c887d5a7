"""Work-stealing driver at any rank count: run as
``mpiexec.mpich -n P .venv/bin/python -m mpi4py -m pytest --with-mpi tests/mpi`` (P = 1, 2, 3...)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _nets import gathered_patterns, problem, random_arrays, serial_patterns  # noqa: E402


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


CASES = [(2, (8, 8), 1), (3, (6, 5, 4), 2), (2, (5, 5, 5), 3), (4, (7, 6), 4)]


@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("d,widths,seed", CASES)
@pytest.mark.parametrize("budget", [None, 3])
def test_patterns_identical_to_serial(d, widths, seed, budget):
    from mpi_enum.parallel.driver import run_dynamic

    comm = _comm()
    prob = problem(d, widths, seed)
    want, want_lc = serial_patterns(prob)
    res = run_dynamic(comm, prob, split_factor=2, budget=budget)
    got, lc = gathered_patterns(comm, res)
    assert res["complete"]
    assert got == want  # same set, no duplicates
    assert lc.tolist() == want_lc.tolist()
    res["buffer"].close()


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_skewed_start_is_balanced_by_stealing():
    from mpi_enum.parallel.driver import run_dynamic

    comm = _comm()
    prob = problem(3, (10, 10), 5)
    want, _ = serial_patterns(prob)
    res = run_dynamic(comm, prob, split_factor=4, skew=True, budget=4, delay=0.002, seed=1)
    got, _ = gathered_patterns(comm, res)
    assert got == want
    st = res["stats"]
    steals = comm.allreduce(st["steals_succeeded"])
    worked = comm.allgather(st["nodes"] - st["top_nodes"])
    if comm.size >= 2:
        assert steals > 0
        assert all(w > 0 for w in worked), worked
        assert comm.allreduce(st["items_given"]) == comm.allreduce(st["items_stolen"])
    res["buffer"].close()


@pytest.mark.mpi
@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [0, 1])
def test_stress_tiny_items_random_delays(seed):
    """Budgets of 1-2 nodes, small queues, steal-one, random delays: many racing claims."""
    from mpi_enum.parallel.driver import run_dynamic

    comm = _comm()
    prob = problem(2, (7, 7, 6), 10 + seed)
    want, want_lc = serial_patterns(prob)
    res = run_dynamic(comm, prob, split_factor=1, skew=bool(seed), budget=1 + seed, low=2, max_steal=1,
                      delay=0.0005, poll_every=1, seed=seed)
    got, lc = gathered_patterns(comm, res)
    assert got == want
    assert lc.tolist() == want_lc.tolist()
    res["buffer"].close()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_stop_request_ends_every_rank():
    from mpi_enum.parallel.driver import run_dynamic

    comm = _comm()
    prob = problem(3, (10, 10), 6)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return comm.rank == comm.size - 1 and calls["n"] >= 3

    res = run_dynamic(comm, prob, split_factor=2, budget=4, stop=stop)
    assert res["complete"] is False
    res["buffer"].close()


@pytest.mark.mpi
@pytest.mark.timeout(180)
@pytest.mark.parametrize("spec,extra", [((3, (9, 8), 7), []),
                                        # > 1024 rows per rank: every rank's buffer spills
                                        ((3, (20, 20), 5), ["--spill-mb", "0.01"])], ids=["plain", "spilled"])
def test_cli_end_to_end(tmp_path_factory, spec, extra):
    import h5py

    from mpi_enum.cli import main
    from mpi_enum.io.results import h5py_has_mpi

    comm = _comm()
    d = None
    if comm.rank == 0:
        d = str(tmp_path_factory.mktemp("e2e"))
        np.savez(os.path.join(d, "net.npz"), **random_arrays(*spec))
    d = comm.bcast(d, root=0)
    out = os.path.join(d, "out.h5")
    rc = main(["run", os.path.join(d, "net.npz"), "-o", out, "--force", "--split-factor", "2", "--progress", "0.01"]
              + extra)
    assert rc == 0
    comm.Barrier()
    if comm.rank == 0:
        from mpi_enum.loaders import load_network
        from mpi_enum.loaders.domain_options import make_domain
        from mpi_enum.model.problem import Problem

        net = load_network(os.path.join(d, "net.npz"))
        want, want_lc = serial_patterns(Problem(net, make_domain(net), 1e-9))
        with h5py.File(out, "r") as f:
            assert int(f.attrs["n_ranks"]) == comm.size
            assert f.attrs["io_mode"] == ("mpio-collective" if h5py_has_mpi() else "serial-ordered")
            got = sorted(bytes(r) for r in f["regions/pattern"][()])
            assert got == want
            assert np.all(f["regions/radius"][()] > 0)
            if extra:
                assert len(want) > 1024 * comm.size
            assert f["layers/n_regions"][()].tolist() == want_lc.tolist()
            for name in ("nodes", "lps", "regions", "busy_seconds", "idle_seconds", "steals_attempted",
                         "steals_succeeded", "items_given", "poll_seconds"):
                assert f[f"stats/{name}"].shape == (comm.size,)
            assert int(f["stats/regions"][()].sum()) == len(want)
    comm.Barrier()


def _fake_buffer(n, seed, pb=2, d=3, L=2):
    from mpi_enum.io.results import RegionBuffer

    rng = np.random.default_rng(seed)
    buf = RegionBuffer(pb, d, L)
    for _ in range(n):
        buf.append(rng.integers(0, 256, pb, dtype=np.uint8), rng.normal(size=d), rng.random(),
                   rng.integers(0, 3, L).astype(np.int16))
    return buf


@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("empty_rank", [0, 1])
def test_write_result_serial_ordered_matches_collective(tmp_path_factory, monkeypatch, empty_rank):
    """h5py without MPI ('serial-ordered') gives the same content; a rank with 0 regions is fine."""
    import h5py

    import mpi_enum.io.results as results
    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.network import Network

    comm = _comm()
    d = comm.bcast(str(tmp_path_factory.mktemp("wr")) if comm.rank == 0 else None, root=0)
    a = random_arrays(3, (5, 4), 0)
    net = Network([a["W0"], a["W1"], a["W2"]], [a["b0"], a["b1"], a["b2"]], a["input_lo"], a["input_hi"],
                  source="x.npz", sha256="0" * 64)
    meta = {"net": net, "domain": box_domain(-np.ones(3), np.ones(3)), "tol": 1e-9, "wall_seconds": 1.0,
            "complete": True, "software": {}, "command_line": "test", "created": "now"}
    n = 0 if comm.rank == empty_rank % comm.size else 50 + 7 * comm.rank
    stats = {"nodes": comm.rank, "busy_seconds": 0.5}
    lc = np.array([1, 2], dtype=np.int64)
    paths = {}
    modes = ["serial"] + (["mpio"] if results.h5py_has_mpi() else [])
    for mode in modes:
        buf = _fake_buffer(n, comm.rank)
        with monkeypatch.context() as m:
            if mode == "serial":
                m.setattr(results, "h5py_has_mpi", lambda: False)
            p = os.path.join(d, f"{mode}_{empty_rank}.h5")
            io = results.write_result(p, comm, meta, buf, stats, lc)
        assert io == ("serial-ordered" if mode == "serial" else "mpio-collective")
        paths[mode] = p
        buf.close()
    comm.Barrier()
    if comm.rank == 0:
        want = [_fake_buffer(0 if r == empty_rank % comm.size else 50 + 7 * r, r).arrays() for r in range(comm.size)]
        want = [np.concatenate([w[i] for w in want]) for i in range(4)]
        contents = []
        for mode in modes:
            with h5py.File(paths[mode], "r") as f:
                got = [f["regions/pattern"][()], f["regions/interior_point"][()], f["regions/radius"][()],
                       f["regions/affine_rank"][()]]
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(g, w)
                assert f["layers/n_regions"][()].tolist() == [comm.size, 2 * comm.size]
                assert f["stats/nodes"][()].tolist() == list(range(comm.size))
                contents.append({k: v for k, v in f.attrs.items() if k != "io_mode"})
        if len(contents) == 2:
            assert set(contents[0]) == set(contents[1])
    comm.Barrier()


@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("factor", [3, 8])
def test_static_partition_in_two_stages(factor):
    """The replicated stage expands only to about one item per rank; each rank then expands its
    own share to >= split_factor items (regions of the expansion emitted by their rank only):
    the same patterns and layer counts as the serial engine, and the totals agree."""
    from mpi_enum.parallel.driver import run_dynamic

    comm = _comm()
    prob = problem(3, (10, 10), 5)
    want, want_lc = serial_patterns(prob)
    res = run_dynamic(comm, prob, split_factor=factor)
    got, lc = gathered_patterns(comm, res)
    assert got == want and lc.tolist() == want_lc.tolist()
    st = res["stats"]
    stage1 = comm.allgather(st["static_items_stage1"])
    assert len(set(stage1)) == 1
    if comm.size == 1:
        assert stage1[0] >= factor
    else:
        assert comm.size <= stage1[0] <= comm.size + 2  # not split_factor * P
        assert st["items_static"] >= factor  # this rank's own share, expanded by itself
        assert comm.allreduce(st["items_static"]) == st["static_items_total"]
    res["buffer"].close()
