#!/usr/bin/env python3
"""The fixed cost of a small run: the in-program wall time of ``mpi-enum run`` on a small net
(bench_d2_16x3: 930 regions over [-1, 1]^2) and where it goes, phase by phase.

    .venv/bin/python benchmarks/small_run.py                 # 1 rank, 7 runs
    .venv/bin/python benchmarks/small_run.py --ranks 2 --repeat 5
    options: --net PATH, --repeat N, --ranks P, --out FILE (default benchmarks/results/small_run-<time>.json)

Each run is the real command (``mpi-enum run NET -o OUT --force --debug-phases``, through
``.venv/bin/mpiexec -n P`` when P > 1) in its own process, on a fresh output folder, so each one
pays everything a user's run pays.  The in-program wall time is the run's own figure (README
"The result file"): from the start of the run, after the interpreter's start-up, the imports and
MPI_Init, until the result file is closed and renamed into place, the maximum over ranks (the
printed "s wall"); the file's ``wall_seconds`` attribute ends when its last row is written.  The
start-up (process start to the run's start) is shown beside it, measured from outside: the
process's whole time minus the run's ``total_seconds``.  Phases come from ``--debug-phases``
(maximum over ranks per phase); the table shows the run with the median wall time.

Output: a table on stdout and JSON in benchmarks/results/.  Acceptance line of issue 16: the
1-rank wall time of bench_d2_16x3 is under 0.05 s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NET = REPO.parent / "shared" / "bench" / "nets" / "bench_d2_16x3.npz"
VENV_BIN = REPO / ".venv" / "bin"
GOAL_SECONDS = 0.05  # issue 16: a 930-region run inside the program, 1 rank


def one_run(net, ranks, folder):
    out = Path(folder) / "small.h5"
    cmd = [str(VENV_BIN / "mpi-enum"), "run", str(net), "-o", str(out), "--force", "--debug-phases"]
    if ranks > 1:
        cmd = [str(VENV_BIN / "mpiexec"), "-n", str(ranks)] + cmd
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=folder, timeout=300)
    process = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"mpi-enum run failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("mpi-enum: phases "))
    rep = json.loads(line[len("mpi-enum: phases "):])
    import h5py

    with h5py.File(out, "r") as f:
        n, complete, file_wall = int(f.attrs["n_regions"]), bool(f.attrs["complete"]), float(f.attrs["wall_seconds"])
    phases = {k: max(v) for k, v in rep["phases"].items()}
    total = phases.pop("total_seconds")
    return {"wall_seconds": rep["wall_seconds"], "file_wall_seconds": file_wall, "total_seconds": total,
            "process_seconds": process, "startup_seconds": process - total, "n_regions": n, "complete": complete,
            "phases": phases}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default=str(NET))
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    runs = []
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory(prefix="small_run_") as folder:
            runs.append(one_run(a.net, a.ranks, folder))
    walls = sorted(r["wall_seconds"] for r in runs)
    med = sorted(runs, key=lambda r: r["wall_seconds"])[len(runs) // 2]
    summary = {k: {"median": statistics.median(r[k] for r in runs), "min": min(r[k] for r in runs)}
               for k in ("wall_seconds", "file_wall_seconds", "total_seconds", "startup_seconds", "process_seconds")}
    print(f"{Path(a.net).name}: {med['n_regions']} regions ({'complete' if med['complete'] else 'PARTIAL'}), "
          f"{a.ranks} rank(s), {a.repeat} runs")
    print(f"  in-program wall (to the file renamed into place): median {summary['wall_seconds']['median']:.4f} s, "
          f"min {walls[0]:.4f} s, max {walls[-1]:.4f} s   (goal at 1 rank: < {GOAL_SECONDS} s)")
    print(f"  file wall_seconds (to the last row written):      median {summary['file_wall_seconds']['median']:.4f} s")
    print(f"  whole process (start-up and imports included):    median {summary['process_seconds']['median']:.4f} s"
          f" (start-up {summary['startup_seconds']['median']:.4f} s)")
    print("  phases of the median run (ms, max over ranks):")
    for k, v in med["phases"].items():
        print(f"    {1000 * v:8.2f}  {k}")
    print(f"    {1000 * med['total_seconds']:8.2f}  total, start of the run to the end of the cleanup")
    report = {"benchmark": "small_run", "net": Path(a.net).name, "ranks": a.ranks, "repeat": a.repeat,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host_cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "goal_seconds": GOAL_SECONDS, "summary": summary,
              "median_run": med, "runs": runs}
    out = Path(a.out) if a.out else HERE / "results" / f"small_run-{a.ranks}rank-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
