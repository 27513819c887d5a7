"""Issue #12 "Hardening": faults and misuse, end to end with real ``mpiexec`` jobs.

The fault matrix (every case must end within 30 s, leave no file at the output path and lose
nothing from the checkpoint, whose resume must give exactly the regions of a clean run):

* a full disk at the final write: the output on a 2 MB tmpfs (1, 2, 3 ranks), found up front;
* a write error after the space was reserved (``--debug-write-fail``, an injected ENOSPC) on the
  last rank (1, 2, 3 ranks): the failing rank ends the job;
* a full ``--spill-dir`` (1, 2, 3 ranks): no ``mpi_enum_spill_*`` file stays;
* ``kill -9`` of one rank during the write: the later resume removes the stale temporary file;
* damaged region rows in a synced checkpoint: the resume re-enumerates them.

Then one test per row of the issue (exclusive output, signals to mpiexec, exit 3 always means a
checkpoint, the printed continue command works, ``--tol`` too large, the default checkpoint
folder goes once complete, the rate of a resumed run, and the smaller ones).

The tmpfs cases need root (``mount -t tmpfs``); they are skipped with the reason otherwise.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, _env, cli_cmd, mpiexec_cmd

pytestmark = pytest.mark.skipif(mpiexec_cmd() is None, reason="no mpiexec on PATH")

NET_SPEC = (3, [20, 20], 3)  # mpi_enum.model.network.random_mlp: 7321 regions, a quarter of a second
SLOW = ["--budget", "16", "--debug-node-delay", "1e-4"]  # 83,601 nodes: about 6 s on 2 ranks
LIMIT = 30  # seconds any faulty run may take


# ----------------------------------------------------------------------------- helpers

def launch(P, args, cwd=None):
    cmd = [mpiexec_cmd(), "-n", str(P)] + cli_cmd() + [str(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)


def finish(p, timeout=LIMIT):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"the job hung (still running after {timeout} s):\n{out}\n{err}")
    return p.returncode, out, err


def run(P, args, timeout=LIMIT, cwd=None):
    return finish(launch(P, args, cwd=cwd), timeout)


def run1(args, timeout=LIMIT):
    p = subprocess.run(cli_cmd() + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env=_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def rank_processes(p):
    psutil = pytest.importorskip("psutil")
    try:
        kids = psutil.Process(p.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in kids if _is_rank(c)]


def _is_rank(proc):
    try:
        return any("mpi-enum" in a or "mpi_enum" in a for a in proc.cmdline())
    except Exception:
        return False


def wait_for(cond, timeout=20.0, what="the condition"):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def patterns(path):
    with h5py.File(path, "r") as f:
        return [bytes(r) for r in f["regions/pattern"][()]], bool(f.attrs["complete"])


def assert_exact(path, reference):
    pats, complete = patterns(path)
    assert complete
    assert len(pats) == len(set(pats)), "a region was written twice"
    assert set(pats) == reference


def error_lines(err):
    """The program's own lines on stderr (MPICH adds its abort line and, at times, a banner)."""
    return [ln for ln in err.splitlines() if ln.startswith("mpi-enum")]


def temps(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


def resume_until_done(P, args, rounds=5):
    for _ in range(rounds):
        rc, o, e = run(P, args)
        if rc == 0:
            return o, e
        assert rc == 3, f"rc={rc}\n{o}\n{e}"
    pytest.fail("the resumed run never completed")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from mpi_enum.model.network import random_mlp

    path = tmp_path_factory.mktemp("faults") / "net.npz"
    np.savez(path, **random_mlp(*NET_SPEC))
    return path


@pytest.fixture(scope="module")
def reference(net):
    import mpi_enum

    res = mpi_enum.enumerate(net)
    pats = {bytes(r) for r in res.patterns}
    assert len(pats) == res.n_regions > 4000
    return pats


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MB tmpfs (root only); ``fill(free)`` leaves about ``free`` bytes of it free."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip() or p.returncode}")
    try:
        def fill(free):
            st = os.statvfs(mnt)
            n = st.f_bavail * st.f_frsize - free
            with open(mnt / "filler", "wb") as f:
                f.write(b"\0" * max(0, n))
            return mnt
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ----------------------------------------------------------------------------- the fault matrix

@pytest.mark.parametrize("P", [1, 2, 3])
def test_full_disk_at_the_final_write(P, tmp_path, tmpfs, net, reference):
    """Issue row 1: the output on a nearly full file system: every rank ends within seconds with
    one line and exit 4 (no hang in HDF5's collective close), no hidden temporary file, and the
    checkpoint (elsewhere) holds every region."""
    fs = tmpfs(200 << 10)
    out, ck = fs / "out.h5", tmp_path / "ck"
    rc, o, e = run(P, ["run", net, "-o", out, "--checkpoint-dir", ck])  # fails the test if it hangs
    assert rc == 4, f"rc={rc}\n{o}\n{e}"
    lines = error_lines(e)
    assert len(lines) == 1 and "No space left on device" in lines[0] and "out.h5" in lines[0], e
    assert "Traceback" not in e
    assert sorted(os.listdir(fs)) == ["filler"], "the failed write left files behind"
    rc, o, e = run(1, ["run", net, "-o", tmp_path / "ok.h5", "--checkpoint-dir", ck, "--resume"])
    assert rc == 0, e
    assert_exact(tmp_path / "ok.h5", reference)


@pytest.mark.parametrize("P", [1, 2, 3])
def test_write_error_after_the_reservation_ends_the_job(P, tmp_path, net, reference):
    """An ENOSPC on one rank in the middle of the collective write (injected): the job ends at
    once (MPI_Abort from that rank, exit 4), no file at the output path, no temporary file; the
    same command with --resume then writes the result and removes the default checkpoint."""
    out = tmp_path / "out.h5"
    args = ["run", net, "-o", out]
    rc, o, e = run(P, args + ["--debug-write-fail", str(P - 1)])
    assert rc == 4, f"rc={rc}\n{o}\n{e}"
    assert any("No space left on device" in ln for ln in error_lines(e)), e
    assert not out.exists() and temps(tmp_path) == []
    assert (tmp_path / "out.h5.checkpoint").is_dir()
    rc, o, e = run(1, args + ["--resume"])  # any number of ranks resumes
    assert rc == 0, e
    assert_exact(out, reference)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"], "leftovers after the successful resume"


@pytest.mark.parametrize("P", [1, 2, 3])
def test_full_spill_dir(P, tmp_path, tmpfs, net, reference):
    """Issue row 10 (spill): --spill-dir on a full disk: exit 4 within seconds, one line naming
    the folder, and no mpi_enum_spill_* file left (they are anonymous); the checkpoint resumes."""
    fs = tmpfs(16 << 10)
    out = tmp_path / "out.h5"
    rc, o, e = run(P, ["run", net, "-o", out, "--spill-dir", fs, "--spill-mb", "0.01"])
    assert rc == 4, f"rc={rc}\n{o}\n{e}"
    lines = error_lines(e)
    assert lines and all("No space left on device" in ln and str(fs) in ln for ln in lines), e
    assert "Traceback" not in e
    assert sorted(os.listdir(fs)) == ["filler"]
    assert not out.exists()
    rc, o, e = run(1, ["run", net, "-o", out, "--resume"])
    assert rc == 0, e
    assert_exact(out, reference)


def test_kill9_of_one_rank_during_the_write(tmp_path, net, reference):
    """Issue row 10: kill -9 during the final write leaves a temporary file; the job ends within
    seconds with nothing at the output path, and the successful resume removes that file."""
    out = tmp_path / "out.h5"
    p = launch(2, ["run", net, "-o", out, "--debug-write-delay", "8"])
    wait_for(lambda: temps(tmp_path), what="the temporary result file")
    time.sleep(0.5)
    victims = rank_processes(p)
    assert victims, "no rank process found"
    victims[-1].send_signal(signal.SIGKILL)
    rc, o, e = finish(p)  # within LIMIT seconds, or the test fails
    assert rc != 0
    assert not out.exists()
    assert temps(tmp_path), "the killed write should have left its temporary file (the case under test)"
    rc, o, e = run(2, ["run", net, "-o", out, "--resume"])
    assert rc == 0, e
    assert_exact(out, reference)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"], "a stale temporary file or the checkpoint stayed"


def test_damaged_synced_rows_end_to_end(tmp_path, net, reference):
    """A stopped run's synced region rows are damaged on disk: --resume re-enumerates them."""
    out, ck = tmp_path / "out.h5", tmp_path / "ck"
    rc, o, e = run(2, ["run", net, "-o", out, "--checkpoint-dir", ck, "--checkpoint-interval", "0.2",
                       "--time-limit", "2.5"] + SLOW)
    assert rc == 3, f"rc={rc}\n{o}\n{e}"
    rows = ck / "gen0" / "rank0.regions"
    data = bytearray(rows.read_bytes())
    assert len(data) > 1000
    for i in range(len(data) // 4, len(data) // 4 + 64):
        data[i] ^= 0xFF
    rows.write_bytes(bytes(data))
    rc, o, e = run(2, ["run", net, "-o", out, "--checkpoint-dir", ck, "--resume"])
    assert rc == 0, e
    assert_exact(out, reference)
    assert ck.is_dir(), "a user-given checkpoint folder is kept"


# ----------------------------------------------------------------------------- exclusive output (row 5)

def test_second_run_on_the_same_output_or_checkpoint_is_refused(tmp_path, net, reference):
    out = tmp_path / "out.h5"
    first = launch(2, ["run", net, "-o", out] + SLOW)
    wait_for(lambda: (tmp_path / "out.h5.checkpoint" / "gen0").is_dir(), what="the first run's checkpoint")
    rc, o, e = run1(["run", net, "-o", out])
    assert rc == 2 and len(e.splitlines()) == 1 and "another mpi-enum run" in e, f"rc={rc}\n{o}\n{e}"
    rc, o, e = run1(["run", net, "-o", tmp_path / "other.h5", "--checkpoint-dir", tmp_path / "out.h5.checkpoint",
                     "--resume"])
    assert rc == 2 and "another mpi-enum run" in e and "out.h5.checkpoint" in e, f"rc={rc}\n{o}\n{e}"
    assert not (tmp_path / "other.h5").exists()
    rc, o, e = finish(first)
    assert rc == 0, e
    assert_exact(out, reference)


def test_a_file_that_appears_during_the_run_is_not_replaced(tmp_path, net, reference):
    out = tmp_path / "out.h5"
    p = launch(2, ["run", net, "-o", out, "--debug-write-delay", "2"])
    wait_for(lambda: temps(tmp_path), what="the temporary result file")
    out.write_bytes(b"keep me")
    rc, o, e = finish(p)
    assert rc == 4 and "appeared" in e, f"rc={rc}\n{o}\n{e}"
    assert out.read_bytes() == b"keep me"
    kept = [x for x in tmp_path.iterdir() if re.fullmatch(r"out\.\d+\.h5", x.name)]
    assert len(kept) == 1 and kept[0].name in e
    assert_exact(kept[0], reference)
    assert temps(tmp_path) == []


# ----------------------------------------------------------------------------- signals (rows 6, 8, 9, 15)

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_to_mpiexec_itself(sig, tmp_path, net):
    """MPICH's mpiexec, signalled itself, forwards the signal but may report 0 although every
    rank exits 3 (README: a limit of hydra).  The run warns, and `mpi-enum status` tells: 3."""
    out = tmp_path / "out.h5"
    p = launch(2, ["run", net, "-o", out] + SLOW)
    wait_for(lambda: (tmp_path / "out.h5.checkpoint" / "gen0").is_dir(), what="the run's checkpoint")
    time.sleep(0.5)
    os.kill(p.pid, sig)
    rc, o, e = finish(p)
    assert rc in (0, 3), f"rc={rc}\n{o}\n{e}"
    assert "mpi-enum status" in e and "checkpoint saved" in e, e
    assert not out.exists() and (tmp_path / "out.partial.h5").exists()
    rc, so, se = run1(["status", out])
    assert rc == 3 and "stopped early" in so and "--resume" in so, f"rc={rc}\n{so}\n{se}"


@pytest.mark.parametrize("stop_signal", ["TERM", "USR1"])
def test_job_script_reports_3_when_mpiexec_says_0(stop_signal, tmp_path, net):
    """slurm/mpi_enum_job.sh's mpi_enum_run with MPICH's mpiexec: the batch shell is told to stop,
    forwards the signal to mpiexec, and reports 3 whatever mpiexec returns."""
    out = tmp_path / "out.h5"
    script = tmp_path / "job.sh"
    script.write_text(f"""source {shlex.quote(str(REPO / 'slurm' / 'mpi_enum_job.sh'))}
mpi_enum_run {shlex.quote(str(net))} {shlex.quote(str(out))} {' '.join(SLOW)}
echo "RC=$MPI_ENUM_RC"
""")
    env = _env()
    bindir = str(Path(cli_cmd()[0]).parent) if len(cli_cmd()) == 1 else os.path.dirname(cli_cmd()[0])
    env.update(PATH=bindir + os.pathsep + env.get("PATH", ""), MPI_ENUM_LAUNCHER="mpiexec",
               MPI_ENUM_MPIEXEC=mpiexec_cmd(), MPI_ENUM_MPIEXEC_FLAGS="", SLURM_NTASKS="2", MPI_ENUM_PROGRESS="",
               MPI_ENUM_STOP_SIGNAL=stop_signal)
    p = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "out.h5.checkpoint" / "gen0").is_dir(), what="the run's checkpoint")
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    rc, o, e = finish(p)
    assert "RC=3" in o, f"rc={rc}\n{o}\n{e}"


def test_sigterm_without_checkpoint_dir_saves_one_and_the_hint_continues(tmp_path, net, reference):
    """Rows 8, 9 and 15: a signal without --checkpoint-dir still means exit 3 with a checkpoint
    (OUT.h5.checkpoint); the printed command continues it; the resumed run's rate counts only
    its own regions; progress lines estimate the fraction done."""
    out = tmp_path / "out.h5"
    p = launch(2, ["run", net, "-o", out, "--progress", "0.3"] + SLOW, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "out.h5.checkpoint" / "gen0").is_dir(), what="the run's checkpoint")
    time.sleep(1.5)
    for r in rank_processes(p):
        r.send_signal(signal.SIGTERM)
    rc, o, e = finish(p)
    assert rc == 3, f"rc={rc}\n{o}\n{e}"
    assert "cannot be resumed" not in e
    assert re.search(r"progress .* regions .*% done .* first-layer cells", e), e
    ck = tmp_path / "out.h5.checkpoint"
    assert (ck / "gen0" / "meta.json").exists()
    assert patterns(tmp_path / "out.partial.h5")[1] is False
    m = re.search(r"continue with: (.*)$", e, re.M)
    assert m, e
    words = shlex.split(m.group(1))
    assert words[:3] == ["mpiexec", "-n", "2"] and words[3] == "mpi-enum"
    rc, o2, e2 = finish(launch(2, [w for w in words[4:] if w not in ("--progress", "0.3")], cwd=tmp_path))
    assert rc == 0, e2
    assert_exact(out, reference)
    assert not ck.exists() and not (tmp_path / "out.partial.h5").exists()
    m = re.search(r"(\d+) regions \((\d+) in this run, (\d+) from the checkpoint\), complete, ([\d.]+) s wall, "
                  r"([\d.]+) regions/s", o2)
    assert m, o2
    total, new, old, w, rate = (float(x) for x in m.groups())
    assert total == len(reference) and new + old == total and old > 0
    assert rate == pytest.approx(new / w, rel=0.02)  # the rate of this run's regions only


def test_time_limit_stop_then_the_printed_command(tmp_path, net, reference):
    """Row 9: after a --time-limit stop, the printed command (the same one plus --resume, the
    default checkpoint folder implied) continues the run until it is complete."""
    out = tmp_path / "out.h5"
    args = ["run", net, "-o", out, "--time-limit", "2"] + SLOW
    rc, o, e = run(2, args)
    assert rc == 3, f"rc={rc}\n{o}\n{e}"
    m = re.search(r"continue with: (.*)$", e, re.M)
    assert m and "--resume" in m.group(1) and "--checkpoint-dir" not in m.group(1), e
    rc, o, e = run1(args)  # the command without --resume is refused with a pointer to --resume
    assert rc == 2 and "--resume" in e
    words = shlex.split(m.group(1))
    assert words[:4] == ["mpiexec", "-n", "2", "mpi-enum"]
    words[words.index("--time-limit") + 1] = "60"  # (the same command would stop again after 2 s)
    resume_until_done(2, words[4:])
    assert_exact(out, reference)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]


# ----------------------------------------------------------------------------- rows 12, 13, 16

def test_tol_too_large(tmp_path, net):
    rc, o, e = run1(["run", net, "-o", tmp_path / "a.h5", "--tol", "1"])
    assert rc == 2 and len(e.splitlines()) == 1 and "--tol" in e and "radius" in e, e
    assert not (tmp_path / "a.h5").exists()
    rc, o, e = run1(["run", net, "-o", tmp_path / "b.h5", "--tol", "0.5"])
    assert rc == 0, e
    assert "warning" in e and "--tol 0.5" in e and "no region holds a ball" in e, e


def test_complete_run_removes_only_its_default_checkpoint(tmp_path, net):
    rc, o, e = run(2, ["run", net, "-o", tmp_path / "a.h5", "--time-limit", "100"])
    assert rc == 0, e
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]
    rc, o, e = run(2, ["run", net, "-o", tmp_path / "b.h5", "--checkpoint-dir", tmp_path / "mine"])
    assert rc == 0, e
    assert (tmp_path / "mine" / "gen0" / "meta.json").exists() and not (tmp_path / "mine" / "lock").exists()


def test_small_ones(tmp_path, net):
    np.save(tmp_path / "c.npy", np.zeros(3))
    rc, o, e = run1(["run", net, "-o", tmp_path / "a.h5", "--ball", tmp_path / "c.npy", "0"])
    assert rc == 2 and "--ball" in e and "--box" not in e, e
    rc, o, e = run1(["run", net, "-o", tmp_path / "a.h5", "--box", "-1", "1", "--box", "0", "1"])
    assert rc == 2 and "--box" in e and "twice" in e, e
    part = tmp_path / "p.partial.h5"
    part.write_bytes(b"an earlier partial result")
    rc, o, e = run1(["run", net, "-o", tmp_path / "p.h5"])
    assert rc == 2 and "p.partial.h5" in e and "--force" in e, e
    assert part.read_bytes() == b"an earlier partial result"
    assert sorted(os.listdir(tmp_path)) == ["c.npy", "p.partial.h5"]


def test_pickled_custom_torch_class_is_named_whole(tmp_path):
    """Row 16: a pickled model of a class that cannot be imported here: the message names the
    class and its module whole (it was cut in the middle of a path)."""
    torch = pytest.importorskip("torch")
    import types

    from mpi_enum.errors import InputError
    from mpi_enum.loaders import load_network

    name = "mpi_enum_test_models_that_live_in_a_user_project_with_a_long_name"
    mod = types.ModuleType(name)

    class MyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 3)

    MyNet.__module__, MyNet.__qualname__ = name, "MyNet"
    mod.MyNet = MyNet
    sys.modules[name] = mod
    try:
        torch.save(MyNet(), tmp_path / "custom.pt")
        del mod.MyNet  # the module is there, the class is not: AttributeError while unpickling
        with pytest.raises(InputError) as exc:
            load_network(str(tmp_path / "custom.pt"))
        msg = str(exc.value)
        assert "'MyNet'" in msg and f"'{name}'" in msg and msg.endswith(")") and "\n" not in msg, msg
    finally:
        del sys.modules[name]
    with pytest.raises(InputError) as exc:  # no such module at all
        load_network(str(tmp_path / "custom.pt"))
    msg = str(exc.value)
    assert f"'{name}'" in msg and msg.endswith(")") and "custom.pt" in msg, msg


def test_output_file_primitives(tmp_path):
    """The pieces of exclusive output (mpi_enum.io.outfile), in process: a no-replace rename, the
    temporary-name pattern that cleanup may remove (and nothing else), and the run lock."""
    from mpi_enum.errors import InputError
    from mpi_enum.io.outfile import RunLock, link_no_replace, new_temp, stale_temps

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"new")
    b.write_bytes(b"there first")
    with pytest.raises(FileExistsError):
        link_no_replace(str(a), str(b))
    assert a.read_bytes() == b"new" and b.read_bytes() == b"there first"
    link_no_replace(str(a), str(tmp_path / "c"))
    assert not a.exists() and (tmp_path / "c").read_bytes() == b"new"

    out = tmp_path / "r.h5"
    t = new_temp(str(out))
    for other in (".r.h5.lock", ".r.h5.short.tmp", ".rr.h5.abcdefgh.tmp", "r.h5.abcdefgh.tmp", ".r.h5.abcdefgh.tmp.x"):
        (tmp_path / other).write_text("not ours")
    assert stale_temps(str(out)) == [t]

    path = str(tmp_path / ".r.h5.lock")
    held = RunLock.acquire(path, "r.h5", "wait for it")
    with pytest.raises(InputError, match=r"r\.h5: another mpi-enum run \(pid \d+ on .*\) is using it; wait for it"):
        RunLock.acquire(path, "r.h5", "wait for it")
    held.release()
    assert not os.path.exists(path)
    RunLock.acquire(path, "r.h5", "wait for it").release()  # free again
