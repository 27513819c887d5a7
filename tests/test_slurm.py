"""The Slurm templates of slurm/, submitted for real to a one-node Slurm cluster on this host.

    .venv/bin/python -m pytest tests/test_slurm.py -v

tests/slurm_cluster.py installs Debian's slurmctld/slurmd/munge when missing (root, apt-get) and
starts a private cluster for the session; when that is impossible every test here is skipped
with the reason.  Environment knobs:

    MPI_ENUM_SLURM_TESTS=0     skip these tests
    MPI_ENUM_SLURM_INSTALL=0   do not apt-get install Slurm; skip when it is missing

Each template is submitted with ``sbatch --wait`` and its result checked with ``mpi-enum verify``
(or ``mpi-enum info --json`` when verify is absent).  The long_run chain tests interrupt a run
(by the SIGUSR1 that ``#SBATCH --signal=B:USR1@120`` would send, and by ``--time-limit``) and
check that the resubmitted job resumes and finishes with exactly the regions of an
uninterrupted run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpi_enum.model.network import random_mlp

from slurm_cluster import SlurmCluster, SlurmUnavailable, missing_programs  # noqa: E402

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "slurm"
BIN = Path(sys.executable).parent
DEFAULT_NET = REPO / "inputs" / "bench_d2_16x3.npz"
DEFAULT_NET_REGIONS = 930
JOB_TIMEOUT = 120  # seconds for one sbatch --wait


def mpi_enum() -> list[str]:
    exe = BIN / "mpi-enum"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpi_enum"]


def mpiexec() -> str:
    return shutil.which("mpiexec.mpich") or shutil.which("mpiexec") or "mpiexec"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.environ.get("MPI_ENUM_SLURM_TESTS", "1") == "0":
        pytest.skip("MPI_ENUM_SLURM_TESTS=0")
    if os.environ.get("MPI_ENUM_SLURM_INSTALL", "1") == "0" and missing_programs():
        pytest.skip(f"Slurm not installed ({', '.join(missing_programs())} missing) and "
                    "MPI_ENUM_SLURM_INSTALL=0")
    workdir = Path(tmp_path_factory.mktemp("slurm"))
    c = SlurmCluster(workdir, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    try:
        c.start()
    except SlurmUnavailable as exc:
        msg = f"Slurm unavailable: {exc}"
        print(msg, file=sys.stderr, flush=True)
        pytest.skip(msg)
    print(f"slurm_cluster: up in {time.monotonic() - t0:.1f} s ({workdir})", file=sys.stderr)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def nets(tmp_path_factory):
    """Small networks written for these tests (fixed seeds)."""
    d = Path(tmp_path_factory.mktemp("nets"))
    specs = {"tiny_d2_6x2": (2, [6, 6], 0),        # 74 regions, well under a second
             "chain_d5": (5, [16, 16, 14], 7)}  # 1,165,226 regions, ~2.5 s on 2 ranks
    out = {}
    for name, (dim, widths, seed) in specs.items():
        out[name] = d / f"{name}.npz"
        np.savez(out[name], **random_mlp(dim, widths, seed))
    return out


@pytest.fixture(scope="session")
def has_verify():
    """``mpi-enum verify`` is part of the package: the results are always checked with it."""
    r = subprocess.run(mpi_enum() + ["verify", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return True


def _info(path) -> dict:
    r = subprocess.run(mpi_enum() + ["info", str(path), "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"mpi-enum info {path} failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


@pytest.fixture(scope="session")
def chain_reference(nets, tmp_path_factory):
    """An uninterrupted run of the chain network (outside Slurm), to compare the chains with."""
    d = Path(tmp_path_factory.mktemp("reference"))
    net = nets["chain_d5"]
    ref = d / "ref.h5"
    t0 = time.monotonic()
    r = subprocess.run([mpiexec(), "-n", "2", *mpi_enum(), "run", str(net), "-o", str(ref)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"reference run failed:\n{r.stdout}\n{r.stderr}"
    return dict(path=ref, info=_info(ref), seconds=time.monotonic() - t0)


# ------------------------------------------------------------------------------ helpers

def sbatch(cluster, script, *args, env=None, cwd, timeout=JOB_TIMEOUT, wait=True):
    """Submit; with wait, block until the job ends. Returns (job id, exit status, sbatch output)."""
    e = dict(cluster.env)
    e.update(env or {})
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *args, str(script)]
    p = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        jid = out.strip().split(";")[0]
        if jid:
            cluster.run(["scancel", jid])
        pytest.fail(f"{script.name}: job {jid} not done after {timeout} s")
    jid = out.strip().splitlines()[0].split(";")[0] if out.strip() else ""
    assert jid.isdigit(), f"sbatch printed no job id:\n{out}\n{err}"
    return jid, p.returncode, out + err


def wait_gone(cluster, jid, timeout):
    """Wait until job JID has left the queue (finished and purged, or in a final state)."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        r = cluster.run(["squeue", "-h", "-j", str(jid), "-o", "%T"], timeout=15)
        state = r.stdout.strip()
        if r.returncode != 0 or not state or state in (
                "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE"):
            return
        time.sleep(0.5)
    cluster.run(["scancel", str(jid)])
    pytest.fail(f"job {jid} still queued or running after {timeout} s")


def log_of(folder: Path, name: str) -> str:
    p = folder / name
    for _ in range(20):  # the log can trail the job's end by a moment
        if p.exists():
            return p.read_text(errors="replace")
        time.sleep(0.25)
    pytest.fail(f"no log {p}; folder has {sorted(x.name for x in folder.iterdir())}")


SUMMARY = re.compile(r"^mpi-enum summary: job=(\d+)(?: array=(\S+))? regions=(\d+) complete=(\w+) "
                     r"wall_seconds=(\S+) load_balance=(\S+) ranks=(\d+) job_seconds=(\d+) file=(\S+)$",
                     re.M)


def summary(log: str) -> re.Match:
    m = SUMMARY.findall(log)
    assert m, f"no summary line in the log:\n{log[-3000:]}"
    last = SUMMARY.search(log.splitlines()[-1] + "\n") if log.strip() else None
    assert last, f"the summary is not the last line:\n{log[-3000:]}"
    return last


def check_result(path: Path, network: Path, has_verify: bool, n_expected=None):
    """``mpi-enum verify`` (exit 0) if there is one, else info --json: n_regions > 0, complete."""
    assert path.exists(), f"no result file {path}"
    info = _info(path)
    assert info["complete"] is True
    assert info["n_regions"] > 0
    if n_expected is not None:
        assert info["n_regions"] == n_expected
    if has_verify:
        r = subprocess.run(mpi_enum() + ["verify", str(path), str(network), "--samples", "2000"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"mpi-enum verify {path} failed:\n{r.stdout}\n{r.stderr}"
    return info


def ranks_in_log(log: str, launcher: str) -> set:
    pat = r"^(\d+): " if launcher == "srun" else r"^\[(\d+)\] "
    return {int(x) for x in re.findall(pat, log, re.M)}


def patterns(path: Path) -> np.ndarray:
    import h5py
    with h5py.File(path, "r") as f:
        p = f["/regions/pattern"][...]
    return p[np.lexsort(p.T[::-1])]


# ------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_single_node(cluster, has_verify, tmp_path, launcher):
    """Defaults throughout: submitted from the repository root, the repository found from
    $SLURM_SUBMIT_DIR, the result in results/<job name>-<job id>.h5."""
    env = {"MPI_ENUM_LAUNCHER": launcher}
    for k in ("MPI_ENUM_DIR", "MPI_ENUM_RESULTS", "MPI_ENUM_NETWORK", "MPI_ENUM_ARGS"):
        env[k] = ""
    jid, rc, out = sbatch(cluster, SLURM / "single_node.sbatch", f"--output={tmp_path}/%x-%j.out",
                          env=env, cwd=REPO)
    log = log_of(tmp_path, f"mpi-enum-single-{jid}.out")
    assert rc == 0, f"job {jid} exited {rc}:\n{log}"
    result = REPO / "results" / f"mpi-enum-single-{jid}.h5"
    try:
        check_result(result, DEFAULT_NET, has_verify, DEFAULT_NET_REGIONS)
    finally:
        result.unlink(missing_ok=True)
    m = summary(log)
    assert m.group(1) == jid and int(m.group(3)) == DEFAULT_NET_REGIONS and m.group(4) == "true"
    assert int(m.group(7)) == 2
    assert float(m.group(5)) > 0
    assert m.group(6) != "n/a" and float(m.group(6)) >= 1.0
    assert ranks_in_log(log, launcher) == {0, 1}, f"rank labels missing:\n{log}"
    assert f"[mpi-enum job {jid}]" in log


def test_multi_node(cluster, has_verify, tmp_path):
    """The multi-node template; this cluster has one node, so --nodes=1 (2 ranks on it)."""
    res = tmp_path / "results"
    jid, rc, out = sbatch(cluster, SLURM / "multi_node.sbatch", "--nodes=1", "--ntasks-per-node=2",
                          env={"MPI_ENUM_DIR": str(REPO), "MPI_ENUM_RESULTS": str(res)}, cwd=tmp_path)
    log = log_of(tmp_path, f"mpi-enum-multi-{jid}.out")
    assert rc == 0, f"job {jid} exited {rc}:\n{log}"
    check_result(res / f"mpi-enum-multi-{jid}.h5", DEFAULT_NET, has_verify, DEFAULT_NET_REGIONS)
    m = summary(log)
    assert int(m.group(3)) == DEFAULT_NET_REGIONS and int(m.group(7)) == 2
    assert ranks_in_log(log, "srun") == {0, 1}


def test_array(cluster, has_verify, nets, tmp_path):
    res = tmp_path / "results"
    lst = tmp_path / "nets.txt"
    lst.write_text(f"# two networks\n{DEFAULT_NET}\n\n{nets['tiny_d2_6x2']}\n")
    jid, rc, out = sbatch(cluster, SLURM / "array.sbatch", "--array=1-2",
                          env={"MPI_ENUM_DIR": str(REPO), "MPI_ENUM_RESULTS": str(res),
                               "MPI_ENUM_NETWORK_LIST": str(lst)}, cwd=tmp_path)
    logs = {t: log_of(tmp_path, f"mpi-enum-array-{jid}_{t}.out") for t in (1, 2)}
    assert rc == 0, f"array job {jid} exited {rc}:\n{logs}"
    for t, net in ((1, DEFAULT_NET), (2, nets["tiny_d2_6x2"])):
        info = check_result(res / f"mpi-enum-array-{jid}_{t}.h5", net, has_verify)
        m = summary(logs[t])
        assert m.group(2) == f"{jid}_{t}"
        assert int(m.group(3)) == info["n_regions"]
    assert _info(res / f"mpi-enum-array-{jid}_1.h5")["n_regions"] == DEFAULT_NET_REGIONS


def _run_chain(cluster, tmp_path, net, env_extra, interrupt=None, max_seconds=150):
    """Submit long_run.sbatch and follow the chain of jobs to its end.

    Returns (chain id, [(job id, log)], result path)."""
    res = tmp_path / "results"
    env = {"MPI_ENUM_DIR": str(REPO), "MPI_ENUM_RESULTS": str(res), "MPI_ENUM_NETWORK": str(net),
           "MPI_ENUM_CHECKPOINTS": str(tmp_path / "checkpoints"), "MPI_ENUM_CHAIN": "", "MPI_ENUM_JOB_NO": "",
           "MPI_ENUM_MAX_JOBS": "12", "MPI_ENUM_PROGRESS": "0.5", **env_extra}
    t_end = time.monotonic() + max_seconds
    if interrupt is None:
        jid, rc, out = sbatch(cluster, SLURM / "long_run.sbatch", env=env, cwd=tmp_path)
    else:
        jid, rc, out = sbatch(cluster, SLURM / "long_run.sbatch", env=env, cwd=tmp_path, wait=False)
        interrupt(jid)
        wait_gone(cluster, jid, max_seconds)
    chain, jobs = jid, []
    while True:
        log = log_of(tmp_path, f"mpi-enum-long-{jid}.out")
        jobs.append((jid, log))
        m = re.search(r"^mpi-enum chain: chain=(\d+) job=(\d+) .* next_job=(\d+)$", log, re.M)
        if not m:
            break
        assert m.group(1) == chain
        jid = m.group(3)
        wait_gone(cluster, jid, max(5.0, t_end - time.monotonic()))
    return chain, jobs, res / f"mpi-enum-long-{chain}.h5"


def _check_chain(chain_reference, has_verify, net, chain, jobs, result, verify):
    logs = "\n".join(f"--- job {j}\n{log}" for j, log in jobs)
    print(f"chain {chain}: {len(jobs)} jobs ({', '.join(j for j, _ in jobs)})")
    assert len(jobs) >= 2, f"the run was never interrupted (one job only):\n{logs}"
    assert "fresh start" in jobs[0][1]
    for _, log in jobs[1:]:
        assert "resuming from" in log, logs
    ref = chain_reference["info"]
    info = check_result(result, net, has_verify and verify, ref["n_regions"])
    assert info["layer_counts"] == ref["layer_counts"]
    assert np.array_equal(patterns(result), patterns(chain_reference["path"])), \
        "the resumed chain's regions differ from an uninterrupted run's"
    m = summary(jobs[-1][1])
    assert int(m.group(3)) == ref["n_regions"]


def test_long_run_signal_chain(cluster, has_verify, nets, chain_reference, tmp_path):
    """Slurm's time-limit warning (--signal=B:USR1@120), sent by hand as soon as the run is under
    way: the script forwards it, the ranks checkpoint and exit 3, the script resubmits itself and
    the successor resumes to the exact result."""
    net = nets["chain_d5"]

    def interrupt(jid):
        t_end = time.monotonic() + 60
        logp = tmp_path / f"mpi-enum-long-{jid}.out"
        while time.monotonic() < t_end:  # the first progress line: the enumeration is running
            if logp.exists() and re.search(r"^\d+: mpi-enum: progress", logp.read_text(errors="replace"), re.M):
                break
            time.sleep(0.1)
        r = cluster.run(["scancel", "--batch", "--signal=USR1", jid])
        assert r.returncode == 0, r.stderr

    chain, jobs, result = _run_chain(cluster, tmp_path, net, {}, interrupt=interrupt)
    assert "got SIGUSR1" in jobs[0][1]
    _check_chain(chain_reference, has_verify, net, chain, jobs, result, verify=True)


def test_long_run_time_limit_chain(cluster, has_verify, nets, chain_reference, tmp_path):
    """Every job of the chain stops after --time-limit (MPI_ENUM_TIME_LIMIT) and resubmits
    itself with a dependency until mpi-enum exits 0; the result is exact."""
    net = nets["chain_d5"]
    # A third of the uninterrupted run's enumeration time (at most 3 s, at least 0.5 s): the chain
    # then has about three jobs however fast the kernel has become.
    wall = chain_reference["info"]["wall_seconds"]
    limit = min(3.0, max(0.5, wall / 3))
    assert wall > 1.5 * limit, f"the chain network takes only {wall:.2f} s: too small for this test"
    chain, jobs, result = _run_chain(cluster, tmp_path, net, {"MPI_ENUM_TIME_LIMIT": f"{limit:.2f}"})
    _check_chain(chain_reference, has_verify, net, chain, jobs, result, verify=False)


def test_long_run_refuses_stale_checkpoint(cluster, tmp_path):
    """A new chain (no MPI_ENUM_CHAIN) must not resume a checkpoint folder that is not empty."""
    ck = tmp_path / "stale"
    ck.mkdir()
    (ck / "gen0").mkdir()
    jid, rc, out = sbatch(cluster, SLURM / "long_run.sbatch",
                          env={"MPI_ENUM_DIR": str(REPO), "MPI_ENUM_RESULTS": str(tmp_path / "results"),
                               "MPI_ENUM_CHECKPOINTS": str(ck), "MPI_ENUM_CHAIN": "",
                               "MPI_ENUM_NETWORK": str(DEFAULT_NET)}, cwd=tmp_path)
    log = log_of(tmp_path, f"mpi-enum-long-{jid}.out")
    assert rc == 2, log
    assert "already holds a checkpoint" in log
    assert "mpi-enum run" not in log
