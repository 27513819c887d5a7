"""A throw-away one-node Slurm cluster on this host, for the tests in tests/test_slurm.py.

    cluster = SlurmCluster(workdir)        # a scratch directory: config, state, logs, socket
    cluster.start()                        # raises SlurmUnavailable(reason) if it cannot
    subprocess.run(["sbatch", ...], env=cluster.env)
    cluster.stop()                         # stops only the daemons it started, by PID

What start() does:

1. installs Debian's ``slurmctld slurmd slurm-client munge`` with apt-get when a program is
   missing (root only, each apt-get call under a timeout);
2. writes a private munge key and a ``slurm.conf`` for a single node named after this host
   (``NodeAddr=127.0.0.1``, CPUs from ``nproc``, ``ProctrackType=proctrack/linuxproc``,
   ``TaskPlugin=task/none``, ``SelectType=select/cons_tres``, ``MpiDefault=pmi2``, a short
   ``KillWait``, ``MinJobAge=4`` (so that ``sbatch --wait`` polls every 2 s instead of backing
   off to 32 s), free TCP ports, every state/spool/log path inside
   ``workdir``, ``SlurmUser`` = the current user, i.e. root);
3. starts ``munged``, ``slurmctld -D``, ``slurmd -D`` as child processes (each in its own
   process group; a system munged or Slurm, if any, is left alone: the private munge socket and
   ports keep them apart) and waits until ``sinfo`` shows the node idle.

Clients find the cluster through ``SLURM_CONF`` (set in ``cluster.env``); jobs inherit it.

By hand (prints the environment to use, keeps running until Ctrl-C):

    .venv/bin/python tests/slurm_cluster.py [WORKDIR]
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APT_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
PROGRAMS = ["munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "srun"]
APT_TIMEOUT = float(os.environ.get("SLURM_TEST_APT_TIMEOUT", "600"))
START_TIMEOUT = float(os.environ.get("SLURM_TEST_START_TIMEOUT", "60"))


class SlurmUnavailable(RuntimeError):
    """Slurm could not be installed or started here; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(lines[-n:])


SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # daemons live in sbin, often not on a user's PATH


def which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path=SYSTEM_PATH)


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if not which(p)]


def ensure_installed(log=print) -> None:
    """apt-get install the Slurm and munge packages if any program is missing."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"Slurm programs missing ({', '.join(missing)}) and not root to install them")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable(f"Slurm programs missing ({', '.join(missing)}) and no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    t0 = time.monotonic()
    for attempt in ("install", "update+install"):
        try:
            if attempt == "update+install":
                log("slurm_cluster: apt-get update")
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                               timeout=max(30.0, APT_TIMEOUT - (time.monotonic() - t0)))
            log(f"slurm_cluster: {' '.join(cmd)}")
            r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=max(30.0, APT_TIMEOUT - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"apt-get timed out after {APT_TIMEOUT:.0f} s") from None
        if r.returncode == 0 and not missing_programs():
            return
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-5:])
    raise SlurmUnavailable(f"apt-get install {' '.join(APT_PACKAGES)} exited {r.returncode}, still "
                           f"missing: {', '.join(missing_programs())}:\n{tail}")


class SlurmCluster:
    def __init__(self, workdir: str | os.PathLike, cpus: int | None = None,
                 partition: str = "debug", log=print):
        self.dir = Path(workdir).resolve()
        self.cpus = cpus or len(os.sched_getaffinity(0)) or 1  # nproc
        self.partition = partition
        self.node = socket.gethostname().split(".")[0]
        self.user = pwd.getpwuid(os.getuid()).pw_name  # root when run as root
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = str(self.conf)
        self.env["PATH"] = os.pathsep.join(x for x in (self.env.get("PATH"), SYSTEM_PATH) if x)
        # A stale allocation of the caller must not leak into the jobs.
        for k in list(self.env):
            if k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")) and k != "SLURM_CONF":
                del self.env[k]

    # -- set-up ---------------------------------------------------------------------------------
    def _write_munge(self) -> None:
        d = self.munge_socket.parent
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        key = d / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)

    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        d = self.dir
        self.conf.write_text(f"""\
# written by tests/slurm_cluster.py: a one-node test cluster
ClusterName=mpienumtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser={self.user}
SlurmdUser={self.user}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=4
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")
        # cgroup.conf is read by some plugins even when unused; keep it harmless.
        (d / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")

    def _spawn(self, name: str, argv: list[str]) -> None:
        exe = which(argv[0])
        if not exe:
            raise SlurmUnavailable(f"{argv[0]} not found")
        argv = [exe, *argv[1:]]
        logf = open(self.dir / "log" / f"{name}.stdout", "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=self.env, start_new_session=True, cwd=self.dir)
        logf.close()
        self.procs[name] = p
        self.log(f"slurm_cluster: started {name} pid {p.pid}")

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                logs = _tail(self.dir / "log" / f"{name}.stdout") + "\n" + \
                    _tail(self.dir / "log" / f"{name}.log")
                raise SlurmUnavailable(f"{name} exited with status {p.returncode}:\n{logs}")

    def run(self, argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kw)

    def start(self) -> "SlurmCluster":
        ensure_installed(self.log)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_munge()
        self._write_conf()
        try:
            m = self.munge_socket.parent
            self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}",
                                   f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
                                   f"--seed-file={m / 'munged.seed'}", f"--log-file={m / 'munged.log'}"])
            self._wait(lambda: self.munge_socket.exists(), 10, "munged socket")
            r = subprocess.run(["sh", "-c", f"munge -S '{self.munge_socket}' -n | unmunge -S '{self.munge_socket}'"],
                               capture_output=True, text=True, timeout=10, env=self.env)
            if r.returncode != 0:
                raise SlurmUnavailable(f"munge round trip failed: {r.stderr.strip()}")
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._wait(lambda: self.run(["scontrol", "ping"], timeout=10).stdout.count("UP") > 0,
                       START_TIMEOUT, "slurmctld to answer scontrol ping")
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
            self._wait(self._node_idle, START_TIMEOUT, f"node {self.node} idle in sinfo")
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise SlurmUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _node_idle(self) -> bool:
        r = self.run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], timeout=10)
        return r.returncode == 0 and r.stdout.strip().rstrip("*") == "idle"

    def _wait(self, cond, timeout: float, what: str) -> None:
        t_end = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if cond():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > t_end:
                raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}; "
                                       f"slurmctld log:\n{_tail(self.dir / 'log' / 'slurmctld.log')}\n"
                                       f"slurmd log:\n{_tail(self.dir / 'log' / 'slurmd.log')}")
            time.sleep(0.3)

    # -- tear-down ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the daemons this object started (slurmd, slurmctld, munged), by PID."""
        # Jobs first, so that slurmd does not leave steps behind.
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run(["scancel", "--full", "--partition", self.partition], timeout=10)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            self.log(f"slurm_cluster: stopped {name} pid {p.pid} (status {p.returncode})")
        self.procs.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    workdir = argv[1] if len(argv) > 1 else tempfile.mkdtemp(prefix="slurm-cluster-")
    cluster = SlurmCluster(workdir)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        print(f"Slurm unavailable: {e}", file=sys.stderr)
        return 1
    # Ctrl-C, or SIGTERM (a background job of a non-interactive shell ignores SIGINT): clean stop.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"cluster up; in another shell:\n  export SLURM_CONF={cluster.conf}\n  sinfo\n"
          "Ctrl-C or SIGTERM stops it.", flush=True)
    try:
        while True:
            time.sleep(1)
            cluster._check_alive()
    except KeyboardInterrupt:
        pass
    except SlurmUnavailable as e:
        print(e, file=sys.stderr)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
