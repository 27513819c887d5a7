"""Checkpoint, resume, time limits and failures of real MPI jobs (issue #6 acceptance).

Each case runs ``mpiexec -n P mpi-enum run`` in a subprocess, interrupts it (SIGTERM at several
moments, ``--time-limit``, ``kill -9`` of one rank), resumes with the same or another rank count
and compares the final pattern set with one uninterrupted run: it must be identical, with no
duplicates and the same per-layer counts.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import _env, cli_cmd, mpiexec_cmd
from mpi_enum.model.network import random_mlp

NET_SPEC = (5, [16, 16, 14], 7)  # mpi_enum.network.random_mlp: ~1.2M regions, ~11 s on 2 ranks
ACAS = Path(__file__).resolve().parents[1] / "inputs" / "acasxu_1_1.nnet"

pytestmark = pytest.mark.skipif(mpiexec_cmd() is None, reason="no mpiexec on PATH")


def mpirun(P, args, **kw):
    return subprocess.Popen([mpiexec_cmd(), "-n", str(P)] + cli_cmd() + ["run"] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def finish(p, timeout=240):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"mpi-enum did not finish within {timeout} s:\n{out}\n{err}")
    return p.returncode, out, err


def rank_processes(p):
    psutil = pytest.importorskip("psutil")
    try:
        kids = psutil.Process(p.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for c in kids:
        try:
            if any("mpi-enum" in a or "mpi_enum" in a for a in c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


def patterns(path):
    with h5py.File(path, "r") as f:
        pat = f["regions/pattern"][:]
        return [bytes(r) for r in pat], f["layers/n_regions"][:].tolist(), bool(f.attrs["complete"])


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "resume_d5.npz"
    np.savez(path, **random_mlp(*NET_SPEC))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, net):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    rc, o, e = finish(mpirun(2, [net, "-o", out]))
    assert rc == 0, e
    pats, layers, complete = patterns(out)
    assert complete and len(pats) == len(set(pats)) > 10000
    return set(pats), layers


def check_exact(path, reference):
    pats, layers, complete = patterns(path)
    assert complete
    assert len(pats) == len(set(pats)), "a region was written twice"
    assert set(pats) == reference[0]
    assert layers == reference[1]


def resume_until_done(net, out, ck, P, max_rounds=4):
    for _ in range(max_rounds):
        rc, o, e = finish(mpirun(P, [net, "-o", out, "--checkpoint-dir", ck, "--resume", "--force"]))
        if rc == 0:
            return
        assert rc == 3, f"resume failed with {rc}:\n{o}\n{e}"
    raise AssertionError("the resumed run never completed")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("P,P2", [(2, 3), (3, 2)])
def test_sigterm_then_resume_is_exact(tmp_path, net, reference, P, P2):
    stopped = 0
    for i, delay in enumerate((0.8, 2.0, 3.5)):
        out, ck = tmp_path / f"r{i}.h5", tmp_path / f"ck{i}"
        p = mpirun(P, [net, "-o", out, "--checkpoint-dir", ck, "--checkpoint-interval", "0.5"])
        time.sleep(delay)
        for r in rank_processes(p):  # what srun / scancel --signal do: every task gets the signal
            try:
                r.send_signal(signal.SIGTERM)
            except Exception:  # already gone: the run finished first
                pass
        rc, o, e = finish(p)
        assert rc in (0, 3), f"rc={rc}\n{o}\n{e}"
        assert "Traceback" not in e
        if rc == 3:
            stopped += 1
            assert not out.exists(), "a stopped run must not write the final output path"
            partial = tmp_path / f"r{i}.partial.h5"
            assert patterns(partial)[2] is False
            resume_until_done(net, out, ck, P2)
        assert out.exists(), f"rc={rc}\n{o}\n{e}"
        check_exact(out, reference)
    assert stopped >= 1, "no run was interrupted: the test network is too small for this machine"


@pytest.mark.timeout(300)
def test_time_limit_exit_3_and_resume(tmp_path, net, reference):
    out = tmp_path / "t.h5"
    rc, o, e = finish(mpirun(2, [net, "-o", out, "--time-limit", "2"]))
    assert rc == 3, f"rc={rc}\n{o}\n{e}"
    assert "checkpoint saved" in e
    ck = Path(str(out) + ".checkpoint")
    assert ck.is_dir()
    resume_until_done(net, out, ck, 2)
    check_exact(out, reference)


@pytest.mark.timeout(300)
def test_kill9_one_rank_ends_job_and_resume_is_exact(tmp_path, net, reference):
    out, ck = tmp_path / "k.h5", tmp_path / "ck"
    p = mpirun(2, [net, "-o", out, "--checkpoint-dir", ck, "--checkpoint-interval", "0.3"])
    time.sleep(2.0)
    ranks = rank_processes(p)
    assert ranks, "no rank process found"
    t_kill = time.time()
    ranks[-1].send_signal(signal.SIGKILL)
    rc, o, e = finish(p, timeout=60)
    assert rc != 0
    assert time.time() - t_kill < 30
    assert not out.exists(), "no complete-looking result may be left"
    resume_until_done(net, out, ck, 2)
    check_exact(out, reference)


@pytest.mark.timeout(300)
def test_acasxu_deep_items_are_stolen_and_exact(tmp_path):
    """ACAS Xu has 300 hidden neurons: work items cross the RMA queues as multi-word records."""
    box = ["--box", "1500,-0.06,3.10,1100,1100", "1800,0.06,3.14,1200,1200"]
    outs = {}
    for P in (1, 2):
        out = tmp_path / f"a{P}.h5"
        rc, o, e = finish(mpirun(P, [ACAS, "-o", out] + box))
        assert rc == 0, e
        outs[P] = patterns(out)
    assert set(outs[1][0]) == set(outs[2][0]) and len(outs[2][0]) == len(set(outs[2][0]))
    assert outs[1][1] == outs[2][1]


@pytest.mark.timeout(120)
def test_sigterm_during_final_write_still_gives_the_complete_file(tmp_path):
    """A stop signal that arrives while the result is being written is noted and ignored: the
    write completes, the file is complete and exact, and no temporary file is left behind."""
    net = Path(__file__).resolve().parents[1] / "inputs" / "bench_d2_16x3.npz"
    out = tmp_path / "w.h5"
    p = subprocess.Popen([mpiexec_cmd(), "-n", "2"] + cli_cmd() + ["run", str(net), "-o", str(out),
                                                                   "--debug-write-delay", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                         stdin=subprocess.DEVNULL, start_new_session=True)
    time.sleep(2.5)  # the enumeration takes well under a second; the write pauses 4 s
    for r in rank_processes(p):
        r.send_signal(signal.SIGTERM)
    rc, o, e = finish(p, timeout=60)
    assert rc == 0, f"rc={rc}\n{o}\n{e}"
    pats, layers, complete = patterns(out)
    assert complete and len(pats) == len(set(pats)) == 930
    assert sorted(x.name for x in tmp_path.iterdir()) == ["w.h5"]
