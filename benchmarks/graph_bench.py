"""Speed of ``mpi-enum graph``: facets per second and seconds per million regions, in one run.

For every network it enumerates the regions (one core, the engine), then runs the graph
(:func:`mpi_enum.geometry.graph.build_graph`) on one process and reports, from that same run:
regions, facets (one per region side), edges, LPs per region, how the facet questions were
decided (ray certificates, vertex screening, LPs), wall seconds, facets/s and seconds per million
regions.  Optionally ``--ranks P`` also runs ``mpiexec -n P mpi-enum graph`` on the same file.

    .venv/bin/python benchmarks/graph_bench.py [--nets A.npz ...] [--vertices] [--ranks 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
NETS = os.path.join(os.path.dirname(REPO), "shared", "bench", "nets")
DEFAULT = ["bench_d2_16x3.npz", "bench_d3_24x2.npz", "bench_d4_12x3.npz", "bench_d8_10x2.npz"]


def enumerate_to(net, path):
    import mpi_enum

    res = mpi_enum.enumerate(net)
    res.save(path)
    return res.n_regions


def one(net, tmp, vertices, ranks):
    from mpi_enum.geometry.graph import build_graph

    src = os.path.join(tmp, os.path.basename(net).replace(".npz", ".h5"))
    n = enumerate_to(net, src)
    t = time.perf_counter()
    s = build_graph(src, os.path.join(tmp, "g.h5"), vertices=vertices, force=True)
    wall = time.perf_counter() - t
    row = {"network": os.path.basename(net), "regions": n, "facets": s["graph_facets"], "edges": s["n_edges"],
           "linear_regions": s["n_linear_regions"], "lps_per_region": s["graph_lps"] / max(n, 1),
           "by_ray": s["graph_by_ray"], "by_screen": s["graph_by_screen"], "lps": s["graph_lps"],
           "unmatched": s["graph_unmatched"], "one_sided": s["graph_one_sided"], "seconds": wall,
           "facets_per_second": s["graph_facets"] / wall, "seconds_per_million_regions": wall / max(n, 1) * 1e6}
    if ranks > 1:
        mpx = os.path.join(REPO, ".venv", "bin", "mpiexec")
        exe = os.path.join(REPO, ".venv", "bin", "mpi-enum")
        t = time.perf_counter()
        subprocess.run([mpx, "-n", str(ranks), exe, "graph", src, "-o", os.path.join(tmp, "gp.h5"), "--force"]
                       + (["--vertices"] if vertices else []), check=True, capture_output=True)
        row[f"seconds_{ranks}_ranks"] = time.perf_counter() - t  # includes start-up of the ranks
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", nargs="*", default=[os.path.join(NETS, n) for n in DEFAULT])
    ap.add_argument("--vertices", action="store_true")
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="graph_bench_")
    rows = []
    try:
        for net in a.nets:
            row = one(net, tmp, a.vertices, a.ranks)
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"vertices": a.vertices, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
