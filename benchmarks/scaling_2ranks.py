#!/usr/bin/env python3
"""2 ranks versus 1 rank on one benchmark network, same invocation (issue #3, item 9).

    .venv/bin/python benchmarks/scaling_2ranks.py [NETWORK.npz] [--repeat R] [--run-args "..."]

Runs ``mpi-enum run`` with 1 rank, 2 ranks (round-robin static partition + stealing) and
2 ranks with a skewed static partition (every subtree dealt to rank 0, the hidden option
``--skew``, so all balance comes from stealing), alternating, R times.  Prints the throughput ratio (regions/s of
2 ranks over 1 rank, each run's own ``wall_seconds``) and busy max/mean; writes
benchmarks/results/scaling_2ranks.json.  The machine is shared: the best of R runs is reported
next to the medians.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NET = REPO.parent / "shared" / "bench" / "nets" / "bench_d6_16x2.npz"


def run(net, n, flags, out, extra=()):
    exe = Path(sys.executable).parent / "mpi-enum"
    mpiexec = shutil.which("mpiexec.mpich") or "mpiexec"
    cmd = [mpiexec, "-n", str(n), str(exe), "run", str(net), "-o", out, "--force"] + list(flags) + list(extra)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outer = time.perf_counter() - t
    info = json.loads(subprocess.run([str(exe), "info", out, "--json"], check=True, capture_output=True,
                                     text=True).stdout)
    st = info.get("stats", {})
    return {"ranks": n, "flags": list(flags), "regions": info["n_regions"], "wall_seconds": info["wall_seconds"],
            "outer_seconds": outer, "regions_per_second": info["n_regions"] / info["wall_seconds"],
            "busy_max_over_mean": info.get("load_balance_max_over_mean", 1.0),
            "busy_seconds": st.get("busy_seconds"), "steals_succeeded": st.get("steals_succeeded"),
            "poll_seconds": st.get("poll_seconds"), "nodes": st.get("nodes")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("network", nargs="?", default=str(DEFAULT_NET))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--run-args", default="--box -3 3",
                    help="extra `mpi-enum run` arguments (default: a larger box than the net's own, so "
                         "that the 1-rank run lasts >= 20 s with the C kernel)")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "scaling_2ranks.json"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="scaling2_")
    runs = []
    for r in range(a.repeat):
        for n, flags, tag in ((1, [], "p1"), (2, [], "p2"), (2, ["--skew"], "p2skew")):
            res = run(a.network, n, flags, os.path.join(tmp, f"{tag}.h5"), a.run_args.split())
            res["tag"] = tag
            runs.append(res)
            print(f"[{tag}] {res['regions']} regions, {res['wall_seconds']:.2f} s, "
                  f"{res['regions_per_second']:.0f} regions/s, busy max/mean {res['busy_max_over_mean']:.3f}, "
                  f"steals {res['steals_succeeded']}, poll s {res['poll_seconds']}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    def best(tag):
        return max(r["regions_per_second"] for r in runs if r["tag"] == tag)

    def med(tag):
        v = sorted(r["regions_per_second"] for r in runs if r["tag"] == tag)
        return v[len(v) // 2]

    summary = {"network": os.path.basename(a.network), "run_args": a.run_args, "repeat": a.repeat, "cpus": os.cpu_count(),
               "loadavg_end": os.getloadavg(),
               "speedup_best": best("p2") / best("p1"), "speedup_median": med("p2") / med("p1"),
               "speedup_skew_best": best("p2skew") / best("p1"),
               "busy_max_over_mean_p2": max(r["busy_max_over_mean"] for r in runs if r["tag"] == "p2"),
               "busy_max_over_mean_skew": max(r["busy_max_over_mean"] for r in runs if r["tag"] == "p2skew"),
               "runs": runs}
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"throughput ratio 2 ranks / 1 rank: {summary['speedup_best']:.2f} (best of {a.repeat}), "
          f"{summary['speedup_median']:.2f} (median); skewed start {summary['speedup_skew_best']:.2f}; "
          f"busy max/mean {summary['busy_max_over_mean_p2']:.3f} (round-robin), "
          f"{summary['busy_max_over_mean_skew']:.3f} (skewed)")


if __name__ == "__main__":
    main()
