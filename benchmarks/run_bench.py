#!/usr/bin/env python3
"""One-command benchmark of the serial engine against the yardstick (../shared/bench/naive_enum.py).

    .venv/bin/python benchmarks/run_bench.py              # full: every bench net + ACAS Xu 1_1 prop-3 box
    .venv/bin/python benchmarks/run_bench.py --short      # CI: small nets; pattern sets must equal the
                                                          # yardstick's and the test oracle's (no timing claims)
    .venv/bin/python benchmarks/run_bench.py --high-dim   # d = 16, 32, 64, 784 rows (two hidden layers)

    options: --yard-cap S (yardstick time cap per net, default 60), --engine-cap S (the engine's
             window on a net it cannot finish in S seconds, default 600), --no-tol (skip the tol sweep),
             --reference (time the test oracle tests/reference_engine.py, the pure Python + HiGHS
             search, instead of the engine), --nets GLOB, --no-acas, --out FILE

Every measurement runs in its own subprocess (one core: OPENBLAS/OMP threads = 1), so the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that of the one run.

How the yardstick rate is measured (in the same run, on the same machine): the yardstick's
``enumerate_regions`` runs unmodified in a subprocess; its ``linprog`` is wrapped to count LPs
and to stop the run once ``--yard-cap`` seconds have passed, reading the number of regions found
so far from the caller's frame.  Its rate is regions found / seconds elapsed.  Nets that finish
within the cap are measured fully (and their pattern sets are compared with the engine's).  A
partial run's depth-first order visits regions at a roughly steady rate, so the partial rate is a
fair estimate of the full one (the README's full runs agree within the noise).  The yardstick is
given the same problem as the engine: the first layer composed with the domain's normalisation
(the box becomes [-1, 1]^k), so both use the same tol in the same coordinates (for the bench nets,
whose box already is [-1, 1]^d, this changes nothing).  The engine is capped the same way
(``--engine-cap``): where it stops early its rate is regions / seconds of its window, and the
table says so (``full`` = no).

Network specs: a path (.npz, .nnet, ...), ``random:SEED:D:W1,W2`` (the --short nets) or
``mlp:D:W1,W2:SEED`` (``mpi_enum.model.network.random_mlp``, the recipe of the bench nets).

Output: a table on stdout and JSON in benchmarks/results/bench-<time>.json.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
BENCH = SHARED / "bench"
ACAS = SHARED / "data" / "acasxu" / "ACASXU_run2a_1_1_batch_2000.nnet"
ACAS_BOX = ([1500, -0.06, 3.10, 980, 960], [1800, 0.06, 3.14, 1200, 1200])
TOLS = [1e-10, 1e-9, 1e-8, 1e-7]
HIGH_DIM = ["mlp:16:14,14:1", "mlp:32:12,12:1"]  # with the d = 64 and 784 bench nets: --high-dim
# --cnn: the CNNs of inputs/digits_cnn, each followed by a random MLP with the same gated widths,
# on the plane through three digits: the two-block ResNet (1,280 gated units, 512 linear) and the
# LeNet (two Conv -> ReLU -> MaxPool2d(2): 512 ReLU units and 512 max candidates in 128 groups)
DIGITS_CNN = REPO / "inputs" / "digits_cnn"
CNN = [(f"plane:{DIGITS_CNN / 'resnet.onnx'}:{DIGITS_CNN / 'plane_017.npy'}",
        f"plane:mlp/64/256,256,256,256,256/1:{DIGITS_CNN / 'plane_017.npy'}", "resnet.onnx (2 residual blocks)"),
       (f"plane:{DIGITS_CNN / 'lenet.onnx'}:{DIGITS_CNN / 'plane_017.npy'}",
        f"plane:mlp/64/384,384,128,128/1:{DIGITS_CNN / 'plane_017.npy'}", "lenet.onnx (2 MaxPool2d)")]


# ------------------------------------------------------------------------------ children
def _problem(spec, tol):
    sys.path.insert(0, str(REPO))
    import numpy as np

    from mpi_enum.model.domain import box_domain
    from mpi_enum.model.problem import Problem
    from mpi_enum.model.network import Network
    from mpi_enum.loaders import load_network

    if spec.startswith("plane:"):  # plane:<network or mlp/d/widths/seed>:<points.npy>
        from mpi_enum.model.domain import plane_domain

        _, net_spec, points = spec.split(":")
        if net_spec.startswith("mlp/"):
            prob = _problem(net_spec.replace("/", ":"), tol)
            net = prob.net
        else:
            net = load_network(net_spec)
        return Problem(net, plane_domain(np.load(points), net.input_dim), tol)
    if spec.startswith("mlp:"):
        from mpi_enum.model.network import random_mlp

        _, d, widths, seed = spec.split(":")
        arrays = random_mlp(int(d), [int(w) for w in widths.split(",")], seed=int(seed))
        nl = len(widths.split(",")) + 1
        net = Network([arrays[f"W{i}"] for i in range(nl)], [arrays[f"b{i}"] for i in range(nl)])
        lo, hi = arrays["input_lo"], arrays["input_hi"]
    elif spec.startswith("random:"):
        _, seed, d, widths = spec.split(":")
        rng = np.random.default_rng(int(seed))
        sizes = [int(d)] + [int(w) for w in widths.split(",")] + [1]
        Ws = [rng.normal(size=(sizes[i + 1], sizes[i])) * math.sqrt(2.0 / sizes[i]) for i in range(len(sizes) - 1)]
        bs = [rng.normal(size=sizes[i + 1]) * 0.3 for i in range(len(sizes) - 1)]
        net = Network(Ws, bs)
        lo, hi = -np.ones(int(d)), np.ones(int(d))
    else:
        net = load_network(spec)
        if spec.endswith(".nnet"):
            lo, hi = np.array(ACAS_BOX[0], float), np.array(ACAS_BOX[1], float)
        else:
            lo, hi = net.default_box()
    return Problem(net, box_domain(lo, hi), tol)


class PatternHash:
    """Order-independent digest of a set of patterns in O(1) memory (sum of 64-bit blake2b hashes)."""

    def __init__(self):
        self.s = 0
        self.n = 0

    def add(self, b):
        self.s = (self.s + int.from_bytes(hashlib.blake2b(bytes(b), digest_size=8).digest(), "little")) & (2**64 - 1)
        self.n += 1

    def hexdigest(self):
        return f"{self.n}:{self.s:016x}"


def _pattern_hash(pats):
    h = PatternHash()
    for p in pats:
        h.add(p)
    return h.hexdigest()


def _engine_class(which):
    """The engine class: the package's (compiled kernel), or with "reference" the test oracle."""
    if which == "reference":
        sys.path.insert(0, str(REPO / "tests"))
        from reference_engine import ReferenceEngine

        return ReferenceEngine
    from mpi_enum.engine.search import Engine

    return Engine


def child_fast(spec, tol, which, cap=None):
    import resource

    prob = _problem(spec, tol)
    Engine = _engine_class(which)
    # short runs are repeated (fresh engine each time) until 2 s have passed, at most 5 times;
    # the best time counts (the machines are shared and noisy)
    best, spent, reps = math.inf, 0.0, 0
    while reps < 5 and (reps == 0 or spent < 2.0):
        eng = Engine(prob)
        # the regions come in batches, as the program's writer takes them (engine.explore's
        # emit_batch); they are hashed after the clock stops, so the hashing is not timed
        batches = []
        t0 = time.perf_counter()
        frontier = eng.explore(eng.root_item(), None, seconds=cap, emit_batch=lambda b, y, r, rk: batches.append(b.copy()))
        sec = time.perf_counter() - t0
        pats = PatternHash()
        for bits in batches:
            for row in bits:
                pats.add(row.tobytes())
        if frontier:  # stopped by the cap: one window, not repeated
            best, reps = sec, reps + 1
            break
        best, spent, reps = min(best, sec), spent + sec, reps + 1
    sec = best
    st = eng.stats.as_dict()
    return {"regions": pats.n, "seconds": sec, "lps": st["lps"], "nodes": st["nodes"],
            "lp_fallbacks": int(getattr(eng.stats, "lp_fallbacks", 0)), "layer_counts": st["layer_counts"],
            "vertex_sets": bool(getattr(eng, "vertex_sets", False)),
            "vertex_lost": int(getattr(eng.stats, "vertex_lost", 0)),
            "engine": type(eng).__name__, "patterns_sha": pats.hexdigest(), "repeats": reps,
            "complete": not frontier,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "k": prob.k, "widths": prob.widths, "n_bits": int(prob.n_bits)}


class _Cap(Exception):
    pass


def child_yard(spec, cap, tol):
    import resource

    import numpy as np

    sys.path.insert(0, str(BENCH))
    import naive_enum

    prob = _problem(spec, tol)
    dom = prob.domain
    # the engine's problem in the yardstick's terms: first layer composed with the normalisation
    Ws = [np.array(W) for W in prob.Ws] + [np.array(prob.net.weights[-1])]
    bs = [np.array(b) for b in prob.bs] + [np.array(prob.net.biases[-1])]
    lo, hi = np.array(dom.y_lo), np.array(dom.y_hi)
    real = naive_enum.linprog
    state = {"lps": 0, "regions": 0}
    t0 = time.perf_counter()

    def wrapped(*a, **kw):
        if time.perf_counter() - t0 > cap:
            state["regions"] = len(sys._getframe(1).f_locals["patterns"])
            raise _Cap()
        state["lps"] += 1
        return real(*a, **kw)

    naive_enum.linprog = wrapped
    complete = True
    pats = None
    try:
        pats, _ = naive_enum.enumerate_regions(Ws, bs, lo, hi, tol=tol)
        state["regions"] = len(pats)
    except _Cap:
        complete = False
    sec = time.perf_counter() - t0
    out = {"regions": state["regions"], "lps": state["lps"], "seconds": sec, "complete": complete,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if complete:
        out["patterns_sha"] = _pattern_hash([np.array(p, dtype=np.uint8).tobytes() for p in pats])
    return out


def child_ref(spec, tol):
    """Pattern hash of the test oracle (tests/reference_engine.py, for --short)."""
    prob = _problem(spec, tol)
    eng = _engine_class("reference")(prob)
    pats = []
    eng.explore(eng.root_item(), lambda b, y, r, rk: pats.append(b))
    return {"regions": len(pats), "patterns_sha": _pattern_hash(pats)}


# ------------------------------------------------------------------------------ parent
def spawn(args, timeout=None):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(Path(__file__).resolve())] + [str(a) for a in args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"child {args} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--yard-cap", type=float, default=60.0)
    ap.add_argument("--engine-cap", type=float, default=600.0)
    ap.add_argument("--high-dim", action="store_true", help="the d = 16, 32, 64, 784 rows only")
    ap.add_argument("--cnn", action="store_true", help="the CNN and equal-unit MLP rows on a plane only "
                    "(engine only: the yardstick has no plane domain)")
    ap.add_argument("--no-tol", action="store_true")
    ap.add_argument("--no-acas", action="store_true")
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--nets", default=str(BENCH / "nets" / "*.npz"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        kind, spec = a.child[0], a.child[1]
        if kind == "fast":
            res = child_fast(spec, float(a.child[2]), a.child[3], float(a.child[4]) if len(a.child) > 4 else None)
        elif kind == "yard":
            res = child_yard(spec, float(a.child[2]), float(a.child[3]))
        else:
            res = child_ref(spec, float(a.child[2]))
        print(json.dumps(res))
        return 0

    if not (BENCH / "naive_enum.py").exists():
        print(f"run_bench: the yardstick {BENCH}/naive_enum.py is missing", file=sys.stderr)
        return 2
    import platform

    which = "reference" if a.reference else "engine"

    report = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "short": a.short,
              "yard_cap_s": a.yard_cap, "engine": which, "python": sys.version.split()[0], "nets": []}
    failures = []

    if a.short:
        specs = ["random:1:2:6,5", "random:2:3:5,4", "random:3:1:7,7", "random:4:4:6"]
        nets_d2 = BENCH / "nets" / "bench_d2_16x3.npz"
        if nets_d2.exists():
            specs.append(str(nets_d2))
        print(f"{'network':<24} {'regions':>8} {'yardstick':>9} {'oracle':>8}  same")
        for spec in specs:
            f = spawn(["--child", "fast", spec, 1e-9, which])
            y = spawn(["--child", "yard", spec, 1e9, 1e-9])
            r = spawn(["--child", "ref", spec, 1e-9])
            same = f["patterns_sha"] == y["patterns_sha"] == r["patterns_sha"]
            print(f"{Path(spec).stem:<24} {f['regions']:>8} {y['regions']:>9} {r['regions']:>8}  {same}", flush=True)
            report["nets"].append({"net": spec, "fast": f, "yardstick": y, "reference": r, "same_patterns": same})
            if not same:
                failures.append(spec)
    elif a.cnn:
        print(f"{'network (plane through three digits)':<40} {'units':>11} {'regions':>8} {'sec':>7} {'regions/s':>10} "
              f"{'LPs/reg':>7} {'full':>4}")
        report["cnn_over_mlp"] = {}
        for cnn, mlp, label in CNN:
            r = []
            for spec, name in ((cnn, label), (mlp, "random MLP, same gated widths")):
                f = spawn(["--child", "fast", spec, 1e-9, which, a.engine_cap])
                r.append(f["regions"] / f["seconds"])
                print(f"{name:<40} {sum(f['widths']):>5}/{f['n_bits']:>5} {f['regions']:>8,} {f['seconds']:>7.2f} "
                      f"{r[-1]:>10,.0f} {f['lps'] / max(f['regions'], 1):>7.2f} "
                      f"{('yes' if f['complete'] else 'no'):>4}", flush=True)
                report["nets"].append({"net": spec, "fast": f, "regions_per_s": r[-1]})
            report["cnn_over_mlp"][label] = r[0] / r[1]
            print(f"  {label}: CNN / MLP regions per second {r[0] / r[1]:.2f}", flush=True)
    else:
        if a.high_dim:
            specs = HIGH_DIM + [str(BENCH / "nets" / n) for n in ("bench_d64_10x2.npz", "bench_d784_12x2.npz",
                                                                  "bench_d784_16x2.npz")]
        else:
            specs = sorted(glob.glob(a.nets))
            if not a.no_acas and ACAS.exists():
                specs.append(str(ACAS))
        hdr = (f"{'network':<32} {'k':>2} {'regions':>9} {'sec':>7} {'regions/s':>10} {'LPs/reg':>7} {'fallb':>5} "
               f"{'RSS MB':>7} {'full':>4} | {'yard reg':>8} {'yard s':>6} {'yard r/s':>8} {'full':>4} | {'ratio':>8}")
        print(hdr)
        print("-" * len(hdr), flush=True)
        for spec in specs:
            f = spawn(["--child", "fast", spec, 1e-9, which, a.engine_cap])
            y = spawn(["--child", "yard", spec, a.yard_cap, 1e-9])
            fr = f["regions"] / f["seconds"]
            yr = y["regions"] / y["seconds"] if y["regions"] else None
            ratio = fr / yr if yr else None
            same = None
            if y["complete"] and f["complete"]:
                same = f["patterns_sha"] == y["patterns_sha"]
                if not same:
                    failures.append(spec)
            name = Path(spec).stem + (" (prop-3 box)" if spec.endswith(".nnet") else "")
            print(f"{name[:32]:<32} {f['k']:>2} {f['regions']:>9,} {f['seconds']:>7.2f} {fr:>10,.0f} "
                  f"{f['lps'] / max(f['regions'], 1):>7.2f} {f['lp_fallbacks']:>5} {f['peak_rss_mb']:>7.1f} "
                  f"{('yes' if f['complete'] else 'no'):>4} | "
                  f"{y['regions']:>8,} {y['seconds']:>6.0f} {fmt(yr, 1):>8} {('yes' if y['complete'] else 'no'):>4} | "
                  f"{fmt(ratio, 0):>8}" + ("" if same is None else ("  patterns=yardstick" if same else "  PATTERNS DIFFER")),
                  flush=True)
            report["nets"].append({"net": spec, "fast": f, "yardstick": y, "regions_per_s": fr,
                                   "yard_regions_per_s": yr, "ratio": ratio, "same_patterns_as_yardstick": same})
        bench = [n["ratio"] for n in report["nets"] if n["ratio"] and not n["net"].endswith(".nnet")]
        if bench:
            gm = math.exp(sum(math.log(r) for r in bench) / len(bench))
            report["geomean_ratio_bench_nets"] = gm
            print(f"\ngeometric mean of the ratio over the {len(bench)} bench nets: {gm:,.0f}x")
        if not a.no_tol and not a.high_dim:
            print("\ntol stability (regions):")
            print(f"{'network':<32} " + " ".join(f"{t:>10.0e}" for t in TOLS))
            report["tol_sweep"] = {}
            for spec in specs:
                counts = [spawn(["--child", "fast", spec, t, which])["regions"] for t in TOLS]
                report["tol_sweep"][spec] = dict(zip([str(t) for t in TOLS], counts))
                print(f"{Path(spec).stem[:32]:<32} " + " ".join(f"{c:>10,}" for c in counts), flush=True)

    out = Path(a.out) if a.out else HERE / "results" / f"bench-{'short-' if a.short else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    if failures:
        print(f"FAILED: pattern sets differ on {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
