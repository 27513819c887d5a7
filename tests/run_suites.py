"""Run the whole test suite: the serial tests, then the MPI tests at 1, 2 and 3 ranks.

    python tests/run_suites.py [PYTEST ARGS...]        (what ``./setup.sh test`` runs)

Each run writes a JUnit XML report (pytest's ``--junitxml``; under MPI one per rank, see
``pytest_configure`` in ``tests/conftest.py``), and the totals are read from those reports, not
from pytest's text output.  The MPI runs are started with the ``mpiexec`` next to this Python
(the launcher that matches mpi4py and h5py in the virtual environment), only rank 0 reports to
the terminal, every rank's output is kept in the log directory, and each run has a hard
timeout so that a hung rank can never stall CI.  The last line is
``tests: N passed, N failed, N skipped``; the exit status is 0 only if every run passed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RANKS = (1, 2, 3)
MPI_TIMEOUT = 900  # seconds per MPI run (the MPI suite takes well under a minute per rank count)
NO_TESTS = 5  # pytest's exit status when nothing was collected


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    return shutil.which("mpiexec.mpich") or shutil.which("mpiexec")


def _counts(xml_path: Path):
    """(passed, failed, skipped) from a JUnit XML report; None if it is missing or unreadable."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failed = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def _say(text):
    print(f"\n==> {text}", flush=True)


def main(argv=None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")  # harmless for MPICH, which oversubscribes anyway
    logdir = Path(tempfile.mkdtemp(prefix="mpi_enum_tests_"))
    totals = [0, 0, 0]
    failed_runs = []

    def account(name, rc, xml):
        c = _counts(xml)
        if c is not None:
            for i in range(3):
                totals[i] += c[i]
        if rc == NO_TESTS:
            print("    no tests collected (pytest exit 5): counted as success")
            rc = 0
        if rc != 0:
            failed_runs.append(f"{name}(rc={rc})")
            if c is None or c[1] == 0:  # a crash or a timeout that left no failure in the report
                totals[1] += 1

    py = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    serial_xml = logdir / "serial.xml"
    cmd = py + ["tests", "--ignore=tests/mpi", f"--junitxml={serial_xml}"] + extra
    _say("test: serial suite: " + " ".join(cmd[1:]))
    account("serial", subprocess.call(cmd, cwd=ROOT, env=env), serial_xml)

    mpx = _mpiexec()
    if (ROOT / "tests" / "mpi").is_dir() and mpx is not None:
        for p in RANKS:
            xml = logdir / f"mpi{p}.xml"
            cmd = [mpx, "-n", str(p), "-outfile-pattern", str(logdir / f"mpi{p}.rank%r.log"), sys.executable,
                   "-m", "mpi4py", "-m", "pytest", "-q", "--with-mpi", "tests/mpi", "-p", "no:cacheprovider",
                   f"--junitxml={xml}"] + extra
            _say(f"test: MPI suite on {p} rank(s): " + " ".join(cmd))
            try:
                rc = subprocess.call(cmd, cwd=ROOT, env=env, timeout=MPI_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"    timed out after {MPI_TIMEOUT} s")
                rc = 124
            log = logdir / f"mpi{p}.rank0.log"
            if log.exists():  # rank 0's report, without pytest-mpi's banner
                text = log.read_text(errors="replace")
                print(re.sub(r"=+ MPI Information =+.*?mpi4py config:[^\n]*\n", "", text, flags=re.S), end="")
            account(f"mpi-n{p}", rc, xml)
    else:
        _say("test: no tests/mpi directory or no mpiexec; MPI suite not run")
        failed_runs.append("mpi(not run)")
        totals[1] += 1

    _say("test summary")
    if failed_runs:
        print(f"    FAILED: {' '.join(failed_runs)} (reports and every rank's output in {logdir})")
    else:
        print("    all test runs passed")
    print(f"tests: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped", flush=True)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
