"""The dynamic driver without MPI (serial work backend) and failure handling under mpiexec."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _nets import problem, random_arrays, serial_patterns  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class FakeComm:
    rank, size = 0, 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("budget", [None, 1, 2, 7])
def test_serial_backend_matches_engine(budget):
    from mpi_enum.parallel.driver import run_dynamic

    prob = problem(2, (6, 6, 5), 3)
    want, want_lc = serial_patterns(prob)
    res = run_dynamic(FakeComm(), prob, split_factor=3, budget=budget, low=3)
    got = sorted(bytes(r) for r in res["buffer"].arrays()[0])
    assert got == want
    assert res["layer_counts"].tolist() == want_lc.tolist()
    assert res["complete"]


@pytest.mark.timeout(60)
def test_serial_work_accounting():
    from mpi_enum.parallel.rma import SerialWork

    w = SerialWork(["a", "b"], low=3)
    w.done(finished=0, created=3)  # c, d, e appear (normally as an item's frontier)
    items = ["c", "d", "e"]
    assert w.put(items) == 1 and items == ["d", "e"]
    assert w.get() == ["c"]
    w.done(finished=3)  # c, d, e done
    assert w.get() == ["b"]
    w.done(finished=1)
    assert w.get() == ["a"]
    w.done(finished=1, regions=5)
    assert w.get() is None and w.regions == 5


def _mpiexec():
    return shutil.which("mpiexec.mpich") or shutil.which("mpiexec")


@pytest.mark.timeout(120)
def test_failure_on_one_rank_ends_the_job(tmp_path):
    if _mpiexec() is None:
        pytest.skip("no mpiexec")
    net = tmp_path / "net.npz"
    np.savez(net, **random_arrays(4, (14, 14), 0))
    exe = Path(sys.executable).parent / "mpi-enum"
    cmd = [_mpiexec(), "-n", "2"] + ([str(exe)] if exe.exists() else [sys.executable, "-m", "mpi_enum"])
    cmd += ["run", str(net), "-o", str(tmp_path / "o.h5"), "--force", "--debug-fail-after", "1:50", "--budget", "8"]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    el = time.monotonic() - t
    assert p.returncode != 0, p.stdout + p.stderr
    # (the traceback may be cut short by MPI_Abort, so the message itself is not checked)
    assert el < 60
    assert not (tmp_path / "o.h5").exists()
