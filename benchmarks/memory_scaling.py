#!/usr/bin/env python3
"""Peak memory versus region count within one family of networks (issue #4, item 3).

    .venv/bin/python benchmarks/memory_scaling.py [--spill-mb M]

Builds random He-initialised MLPs of one family (d = 4, three hidden layers of width w, the
recipe of ../shared/bench/make_nets.py), chosen so that the region count grows about 10x, runs
``mpi-enum run`` on each (one rank, in its own process) and reports the peak RSS of that process
(``getrusage(RUSAGE_CHILDREN)`` of a fresh wrapper per run).  Regions stream into a per-rank
buffer that spills to a scratch file once it holds ``--spill-mb`` (the CLI's default is 16 MB;
a small value here shows the mechanism on a small run), so peak RSS must stay nearly flat.
Writes benchmarks/results/memory_scaling.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mpi_enum.model.network import random_mlp

REPO = Path(__file__).resolve().parents[1]
FAMILY = [(4, [12, 12, 12]), (4, [22, 22, 22])]


WRAPPER = """
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if p.returncode:
    sys.exit(p.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spill-mb", type=float, default=4.0)
    a = ap.parse_args()
    exe = Path(sys.executable).parent / "mpi-enum"
    tmp = tempfile.mkdtemp(prefix="memscale_")
    rows = []
    for d, widths in FAMILY:
        net = os.path.join(tmp, f"d{d}_{'x'.join(map(str, widths))}.npz")
        np.savez(net, **random_mlp(d, widths))
        out = os.path.join(tmp, "out.h5")
        rss_kb = int(subprocess.run([sys.executable, "-c", WRAPPER, str(exe), "run", net, "-o", out, "--force",
                                     "--spill-dir", tmp, "--spill-mb", str(a.spill_mb)], check=True,
                                    capture_output=True, text=True).stdout.split()[-1])
        info = json.loads(subprocess.run([str(exe), "info", out, "--json"], check=True, capture_output=True,
                                         text=True).stdout)
        rows.append({"network": os.path.basename(net), "regions": info["n_regions"],
                     "wall_seconds": info["wall_seconds"], "peak_rss_mb": rss_kb / 1024})
        print(f"{rows[-1]['network']:>18s}  {info['n_regions']:>10d} regions  {info['wall_seconds']:7.1f} s  "
              f"peak RSS {rss_kb / 1024:7.1f} MB", flush=True)
    growth_regions = rows[-1]["regions"] / rows[0]["regions"]
    growth_rss = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"regions x{growth_regions:.1f}  ->  peak RSS x{growth_rss:.2f}  (spill threshold {a.spill_mb} MB)")
    res = {"spill_mb": a.spill_mb, "runs": rows, "region_growth": growth_regions, "rss_growth": growth_rss}
    os.makedirs(REPO / "benchmarks" / "results", exist_ok=True)
    with open(REPO / "benchmarks" / "results" / "memory_scaling.json", "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
