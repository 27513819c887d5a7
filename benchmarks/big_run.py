"""A long run end to end (issue 15): ``mpi-enum run`` on 2 ranks, interrupted once, resumed, then
every post-processing command on its result, each with its time and peak RSS.

    .venv/bin/python benchmarks/big_run.py --net mlp:4:46,46,46:1 --expect 100 --work /tmp/bigrun/e7

Steps: the network (``mlp:D:W1,W2,...:SEED``, ``mpi_enum.model.network.random_mlp``, the recipe
of the bench nets, saved as .npz; or a path) over the box ``--box LO HI`` (default its own
[-1, 1]^d); leg 1 ``mpiexec -n P mpi-enum run NET -o OUT.h5 --box .. --checkpoint-interval 120
--progress 30 --debug-phases``, SIGTERM to the ranks after ``--interrupt`` x ``--expect`` seconds
(exit 3 and ``mpi-enum status`` 3 expected: a usable checkpoint), leg 2 the same with
``--resume``; the peak RSS of every rank (psutil, sampled each second) and its spill files'
size (their open descriptors in /proc) over time; the final collective write's time (the
``write`` phases of ``--debug-phases``); then ``info``, ``info --json``, ``verify --samples``,
``analyze -o DIR`` (``plot`` applies only to d = 2 results), each a subprocess sampled the same
way (``verify`` on ``--post-ranks`` ranks, default ``--ranks``).  Exactness: ``verify`` (every row re-checked, patterns unique, layer counts recomputed,
samples covered) and the same network on a small box enumerated by the engine and by the test
oracle ``tests/reference_engine.py`` (same patterns and layer counts), and ``--cells`` random
first-layer cells of the result (the cells of uniformly drawn rows) enumerated by the oracle on
the cell: exactly the result's rows with that first-layer pattern.  ``--no-run`` only redoes
the post-processing of an existing result.  The record: ``benchmarks/results/big_run-<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv", "bin")
MB = 1 << 20
REF_MAX_REGIONS = 3000  # the oracle check's box is halved until the engine finds at most this many


def make_net(spec, work):
    if not spec.startswith("mlp:"):
        return os.path.abspath(spec)
    from mpi_enum.model.network import random_mlp

    _, d, widths, seed = spec.split(":")
    path = os.path.join(work, f"mlp_{d}_{widths.replace(',', 'x')}_{seed}.npz")
    np.savez(path, **random_mlp(int(d), [int(w) for w in widths.split(",")], seed=int(seed)))
    return path


def _ranks(proc):
    """The rank processes under ``proc`` (the Python interpreters the launcher started)."""
    try:
        kids = proc.children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            if "python" in os.path.basename(k.exe()) or "mpi-enum" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def _spill_bytes(p, spill_dir):
    total = 0
    try:
        for fd in os.listdir(f"/proc/{p.pid}/fd"):
            try:
                if os.readlink(f"/proc/{p.pid}/fd/{fd}").startswith(spill_dir):
                    total += os.stat(f"/proc/{p.pid}/fd/{fd}").st_size
            except OSError:
                pass
    except OSError:
        pass
    return total


def monitored(cmd, spill_dir=None, stop_after=None, every=1.0, stderr_path=None, stdout_path=None):
    """Run ``cmd``; sample its ranks' RSS (and spill files); SIGTERM the ranks after ``stop_after``
    seconds.  Returns a dict: rc, wall, per-rank peak RSS, the samples."""
    t0 = time.time()
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    err = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
    ps = psutil.Process(proc.pid)
    samples, peak, sent = [], {}, None
    while proc.poll() is None:
        now = time.time() - t0
        rows = []
        for i, r in enumerate(sorted(_ranks(ps), key=lambda q: q.pid) or [ps]):
            try:
                rss = r.memory_info().rss
            except psutil.Error:
                continue
            peak[i] = max(peak.get(i, 0), rss)
            rows.append([round(rss / MB, 1), round(_spill_bytes(r, spill_dir) / MB, 1) if spill_dir else 0.0])
        if rows:
            samples.append([round(now, 1), rows])
        if stop_after is not None and sent is None and now >= stop_after:
            for r in _ranks(ps):
                try:
                    r.send_signal(signal.SIGTERM)
                except psutil.Error:
                    pass
            sent = now
        time.sleep(every)
    wall = time.time() - t0
    return {"cmd": " ".join(cmd), "rc": proc.returncode, "wall_s": round(wall, 2), "sigterm_at_s": sent,
            "peak_rss_mb": [round(peak[i] / MB, 1) for i in sorted(peak)],
            "rss_over_time": _thin(samples, 60)}


def _thin(samples, n):
    """At most ``n`` samples (time, [[rss MB, spill MB] per rank]), always keeping the last."""
    if len(samples) <= n:
        return samples
    step = len(samples) / n
    return [samples[int(i * step)] for i in range(n)] + [samples[-1]]


def _phases(stderr_path):
    with open(stderr_path) as fh:
        for line in fh:
            if line.startswith("mpi-enum: phases "):
                return json.loads(line[len("mpi-enum: phases "):])
    return None


def _dir_bytes(path):
    tot = 0
    for dp, _, files in os.walk(path):
        for f in files:
            try:
                tot += os.path.getsize(os.path.join(dp, f))
            except OSError:
                pass
    return tot


def post_commands(out, net, work, samples, ranks=1):
    cli = os.path.join(VENV, "mpi-enum")
    launch = [os.path.join(VENV, "mpiexec"), "-n", str(ranks)] if ranks > 1 else []
    vname = f"verify --samples {samples}" + (f" on {ranks} ranks" if ranks > 1 else "")
    cmds = {"info": [cli, "info", out], "info --json": [cli, "info", out, "--json"],
            vname: launch + [cli, "verify", out, net, "--samples", str(samples), "--progress", "60"],
            "analyze -o DIR": [cli, "analyze", out, "-o", os.path.join(work, "analysis")]}
    rep = {}
    for name, cmd in cmds.items():
        so = os.path.join(work, name.split()[0] + ".out")
        r = monitored(cmd, every=0.2, stdout_path=so, stderr_path=so + ".err")
        with open(so) as fh:
            text = fh.read()
        r["output_tail"] = text[-3000:]
        rep[name] = r
        print(f"{name}: rc {r['rc']}, {r['wall_s']} s, peak RSS {r['peak_rss_mb']} MB", flush=True)
    return rep


def subtree_check(out, net, n_cells=12, seed=0):
    """Random first-layer cells of the result (the cells of uniformly drawn rows): each cell
    (the box cut by its first-layer signs, a polytope domain) enumerated by the test oracle
    ``tests/reference_engine.py`` gives exactly the result's rows with that first-layer pattern."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from reference_engine import enumerate_reference

    from mpi_enum.io.reader import load_result
    from mpi_enum.loaders import load_network
    from mpi_enum.model.domain import polytope_domain
    from mpi_enum.model.problem import Problem

    t0 = time.time()
    network = load_network(net)
    res = load_result(out, regions=False)
    w0, d = int(res.widths[0]), res.d
    nb0 = (w0 + 7) // 8
    keep = np.uint8((0xFF << (8 - w0 % 8)) & 0xFF) if w0 % 8 else np.uint8(0xFF)

    def prefix(P):
        q = np.array(P[:, :nb0], np.uint8, copy=True)
        q[:, -1] &= keep
        return q

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(res.n, size=min(n_cells, res.n), replace=False))
    import h5py

    with h5py.File(out, "r") as f:
        picked = prefix(np.stack([f["regions/pattern"][int(r)] for r in rows]))
    want = {p.tobytes(): set() for p in picked}
    for _, ch in res.chunks(("pattern",)):  # every row with a picked first-layer pattern
        pre = prefix(ch["pattern"])
        for i in np.flatnonzero(np.isin(pre.view(np.dtype((np.void, nb0))).ravel(),
                                        np.array(list(want), dtype=np.dtype((np.void, nb0))))):
            want[pre[i].tobytes()].add(ch["pattern"][i].tobytes())
    W, b = np.asarray(network.weights[0], float), np.asarray(network.biases[0], float)
    bx_lo, bx_hi = np.asarray(res.spec["lo"], float), np.asarray(res.spec["hi"], float)  # a box run
    cells = []
    first_row = {}
    for r, p in zip(rows, picked):
        first_row.setdefault(p.tobytes(), int(r))
    for key, mine in want.items():
        row = first_row[key]
        bits = np.unpackbits(np.frombuffer(key, np.uint8), count=w0).astype(bool)
        sgn = np.where(bits, -1.0, 1.0)  # active: -(W x + b) <= 0; inactive: W x + b <= 0
        A = np.vstack([sgn[:, None] * W, np.eye(d), -np.eye(d)])
        rhs = np.concatenate([-sgn * b, bx_hi, -bx_lo])
        prob = Problem(network, polytope_domain(A, rhs, d), float(res.attrs.get("tol", 1e-9)))
        ref, _ = enumerate_reference(prob)
        theirs = {np.packbits(np.frombuffer(bb, np.uint8) if isinstance(bb, bytes) else np.asarray(bb, np.uint8)).tobytes()
                  for bb, _, _, _ in ref}
        cells.append({"row": int(row), "rows_in_result": len(mine), "reference_regions": len(theirs),
                      "same": theirs == mine})
    return {"what": "random first-layer cells: the result's rows with that first-layer pattern vs the test oracle "
                    "on the cell (box and first-layer signs as a polytope domain)",
            "cells": cells, "ok": all(c["same"] for c in cells), "seconds": round(time.time() - t0, 1)}


def reference_check(net, box_half):
    """The network on a small box [-h, h]^d (h halved until at most REF_MAX_REGIONS regions): the
    engine and the test oracle give the same patterns and the same per-layer counts."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from reference_engine import enumerate_reference

    import mpi_enum
    from mpi_enum.loaders import load_network
    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.problem import Problem

    network = load_network(net)
    d = network.input_dim
    res = mpi_enum.enumerate(net, box=(-box_half, box_half))
    while res.n_regions > REF_MAX_REGIONS:  # the oracle does a few hundred regions a second
        box_half /= 2.0
        res = mpi_enum.enumerate(net, box=(-box_half, box_half))
    prob = Problem(network, box_domain(-box_half * np.ones(d), box_half * np.ones(d), {"kind": "box"}), 1e-9)
    ref, _ = enumerate_reference(prob)
    mine = {bytes(r) for r in res.patterns}
    bits = np.array([np.frombuffer(b, np.uint8) if isinstance(b, bytes) else np.asarray(b, np.uint8)
                     for b, _, _, _ in ref]).reshape(len(ref), -1)
    theirs = {np.packbits(row).tobytes() for row in bits}
    off = np.cumsum(network.hidden_widths)
    ref_counts = [len({row[:o].tobytes() for row in bits}) for o in off]
    return {"box": [-box_half, box_half], "engine_regions": int(res.n_regions), "reference_regions": len(ref),
            "same_patterns": mine == theirs, "engine_layer_counts": [int(c) for c in res.layer_counts],
            "reference_layer_counts": ref_counts,
            "ok": mine == theirs and [int(c) for c in res.layer_counts] == ref_counts}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", required=True)
    ap.add_argument("--box", nargs=2, default=None)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--expect", type=float, default=None, help="expected seconds of the run (for the SIGTERM)")
    ap.add_argument("--interrupt", type=float, default=0.4, help="SIGTERM after this share of --expect (0: none)")
    ap.add_argument("--work", required=True, help="folder for the network, result, checkpoint and scratch")
    ap.add_argument("--samples", type=int, default=100000)
    ap.add_argument("--ref-box", type=float, default=0.05, help="half side of the box of the oracle check")
    ap.add_argument("--spill-mb", type=float, default=None, help="mpi-enum run --spill-mb (default: the run's)")
    ap.add_argument("--post-ranks", type=int, default=None, help="ranks of verify (default --ranks)")
    ap.add_argument("--cells", type=int, default=12, help="random first-layer cells checked by the oracle")
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--no-post", action="store_true")
    ap.add_argument("--tag", default="")
    a = ap.parse_args(argv)
    os.makedirs(a.work, exist_ok=True)
    net = make_net(a.net, a.work)
    out = os.path.join(a.work, "big.h5")
    spill = os.path.join(a.work, "spill")
    os.makedirs(spill, exist_ok=True)
    rec = {"net": a.net, "network_file": net, "ranks": a.ranks, "host_cpus": os.cpu_count(),
           "load_avg_at_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not a.no_run:
        import shutil

        for old in (out, out.replace(".h5", ".partial.h5")):  # this script's own folder: a fresh run
            if os.path.exists(old):
                os.unlink(old)
        shutil.rmtree(out + ".checkpoint", ignore_errors=True)
        base = [os.path.join(VENV, "mpiexec"), "-n", str(a.ranks), os.path.join(VENV, "mpi-enum"), "run", net,
                "-o", out, "--checkpoint-interval", "120", "--progress", "30", "--debug-phases", "--spill-dir", spill]
        if a.box:
            base += ["--box", a.box[0], a.box[1]]
        if a.spill_mb is not None:
            base += ["--spill-mb", str(a.spill_mb)]
        legs = []
        stop = a.expect * a.interrupt if (a.expect and a.interrupt > 0) else None
        r1 = monitored(base, spill, stop_after=stop, stderr_path=os.path.join(a.work, "leg1.err"))
        ck = out + ".checkpoint"
        r1["checkpoint_bytes"] = _dir_bytes(ck) if os.path.isdir(ck) else 0
        r1["status_rc"] = subprocess.run([os.path.join(VENV, "mpi-enum"), "status", out],
                                         capture_output=True).returncode
        r1["phases"] = _phases(os.path.join(a.work, "leg1.err"))
        legs.append(r1)
        print(f"leg 1: rc {r1['rc']} (status {r1['status_rc']}), {r1['wall_s']} s, peak {r1['peak_rss_mb']} MB", flush=True)
        r1["finished_before_the_signal"] = r1["rc"] == 0 and r1["status_rc"] == 0
        if stop is not None and not r1["finished_before_the_signal"]:
            r2 = monitored(base + ["--resume"], spill, stderr_path=os.path.join(a.work, "leg2.err"))
            r2["phases"] = _phases(os.path.join(a.work, "leg2.err"))
            legs.append(r2)
            print(f"leg 2: rc {r2['rc']}, {r2['wall_s']} s, peak {r2['peak_rss_mb']} MB", flush=True)
        rec["legs"] = legs
        rec["interrupted_ok"] = stop is None or (legs[0]["rc"] == 3 or legs[0]["status_rc"] == 3)
        if legs[0]["finished_before_the_signal"] and stop is not None:
            rec["interrupted_ok"] = None  # the run ended before the signal: give a smaller --expect
        ph = legs[-1]["phases"] or {}
        rec["write_seconds"] = {k: v for k, v in (ph.get("phases") or {}).items() if k.startswith("write")}
        with open(os.path.join(a.work, "leg1.err")) as fh:
            rec["leg1_stderr_tail"] = fh.read()[-1500:]
        with open(os.path.join(a.work, "leg2.err" if len(legs) > 1 else "leg1.err")) as fh:
            rec["last_leg_stderr_tail"] = fh.read()[-1500:]
        rec["wall_s_total"] = round(sum(r["wall_s"] for r in legs), 2)
        rec["peak_rss_mb_per_rank"] = [max(r["peak_rss_mb"][i] for r in legs if i < len(r["peak_rss_mb"]))
                                       for i in range(a.ranks)]
    import h5py

    with h5py.File(out, "r") as f:
        n = int(f.attrs["n_regions"])
        rec["n_regions"] = n
        rec["layer_counts"] = [int(v) for v in f["layers/n_regions"][()]]
        rec["complete"] = bool(f.attrs["complete"])
        rec["wall_seconds_attr"] = float(f.attrs["wall_seconds"])
    rec["result_bytes"] = os.path.getsize(out)
    rec["bytes_per_region"] = round(rec["result_bytes"] / max(n, 1), 2)
    if "wall_s_total" in rec:
        rec["regions_per_s"] = round(n / rec["wall_s_total"], 1)
    if not a.no_post:
        rec["post"] = post_commands(out, net, a.work, a.samples, ranks=a.post_ranks or a.ranks)
        rec["post_max_peak_rss_mb"] = max(max(r["peak_rss_mb"] or [0]) for r in rec["post"].values())
        rec["plot"] = "not applicable: plot draws 2-D partitions (d = 2 or a --plane result); this is d >= 3"
        try:
            rec["reference_check"] = reference_check(net, a.ref_box)
        except Exception as exc:  # the record of the rest is kept
            rec["reference_check"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"reference check: {rec['reference_check']}", flush=True)
        if a.cells > 0:
            try:
                rec["subtree_check"] = subtree_check(out, net, n_cells=a.cells)
            except Exception as exc:
                rec["subtree_check"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"subtree check: ok {rec['subtree_check']['ok']}", flush=True)
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benchmarks", "results", f"big_run{a.tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(rec, fh, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
