"""Command line (CONTRACT §2): ``mpi-enum run|info|verify|analyze|plot|convert``.

Bad input or usage: one line ``mpi-enum: error: <file>: <problem>`` on stderr, exit 2, and no
traceback.  In ``run``, every rank validates the inputs itself and the ranks agree on the verdict
with one collective before any other collective.  An unexpected exception on any rank prints its
traceback and aborts the whole MPI job (``MPI.COMM_WORLD.Abort``), so no rank ever hangs.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback

from .console import say
from .errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_STOPPED, InputError


def _is_number_list(arg):
    """'-1,-0.5,2' or '-1e-3': a negative number or comma list (a value such as --box LO, not an option)."""
    if not arg.startswith("-") or arg.startswith("--"):
        return False
    try:
        [float(t) for t in arg.split(",")]
    except ValueError:
        return False
    return True


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise InputError(f"usage: {self.prog}: {message}")

    def _parse_optional(self, arg_string):
        # argparse takes '-1,-1' and '-1e-3' for options; `--box -1,-1 1,1` must work (CONTRACT §2)
        if _is_number_list(arg_string):
            return None
        return super()._parse_optional(arg_string)


def build_parser():
    p = _Parser(prog="mpi-enum", description="Exact enumeration of the activation regions of ReLU networks (MPI).")
    from . import __version__

    p.add_argument("--version", action="version", version=f"mpi_enum {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", help="enumerate the regions of NETWORK over a domain")
    r.add_argument("network", metavar="NETWORK")
    r.add_argument("-o", "--output", metavar="OUT.h5", default=None,
                   help="result file (default results/<network name>.h5)")
    dom = r.add_argument_group("domain (at most one; default: the network's box, else [-1, 1]^d)")
    dom.add_argument("--box", nargs=2, metavar=("LO", "HI"), help="scalars or comma lists of length d")
    dom.add_argument("--polytope", metavar="FILE.npz", help="arrays A (m, d), b (m,): {x : A x <= b}")
    dom.add_argument("--ball", nargs=2, metavar=("CENTER.npy", "RADIUS"),
                     help="L-infinity ball around a point, cut to the network's default box")
    dom.add_argument("--plane", metavar="POINTS.npy", help="rows x0, x1, x2: a 2-D parallelogram slice")
    dom.add_argument("--line", metavar="POINTS.npy", help="rows x0, x1: a segment")
    dom.add_argument("--unbounded", action="store_true", help="all of R^d")
    r.add_argument("--tol", type=float, default=1e-9,
                   help="keep a side only if it holds a ball of radius > tol (relative to the domain's size)")
    r.add_argument("--checkpoint-dir", metavar="DIR", default=None)
    r.add_argument("--checkpoint-interval", type=float, metavar="S", default=None)
    r.add_argument("--resume", action="store_true")
    r.add_argument("--time-limit", type=float, metavar="S", default=None)
    r.add_argument("--progress", type=float, metavar="S", default=None,
                   help="print progress every S seconds (rank 0)")
    r.add_argument("--force", action="store_true", help="replace an existing output file")
    r.add_argument("--split-factor", type=int, default=16, metavar="K",
                   help="static partition: at least K subtrees per rank (default 16)")
    r.add_argument("--spill-dir", default=None, metavar="DIR",
                   help="per-rank scratch files for results larger than memory (default: $TMPDIR)")

    i = sub.add_parser("info", help="summary of a result file")
    i.add_argument("out_h5", metavar="OUT.h5")
    i.add_argument("--json", action="store_true")

    v = sub.add_parser("verify", help="independent checks of a result file")
    v.add_argument("out_h5", metavar="OUT.h5")
    v.add_argument("network", metavar="NETWORK")
    v.add_argument("--samples", type=int, default=100000)
    v.add_argument("--seed", type=int, default=0)

    a = sub.add_parser("analyze", help="per-layer counts; affine-map rank versus further partitioning")
    a.add_argument("out_h5", metavar="OUT.h5")
    a.add_argument("-o", "--output", metavar="DIR", default=None)

    pl = sub.add_parser("plot", help="picture of a 2-D partition")
    pl.add_argument("out_h5", metavar="OUT.h5")
    pl.add_argument("-o", "--output", metavar="FIG.png", required=True)
    pl.add_argument("--color-by", default="affine", help="affine | rank | radius | layerN")

    c = sub.add_parser("convert", help="convert an .onnx/.pt/.pth/.nnet model to .npz")
    c.add_argument("model", metavar="MODEL")
    c.add_argument("-o", "--output", metavar="NET.npz", required=True)
    c.add_argument("--force", action="store_true")
    return p


def _err(msg):
    say(f"mpi-enum: error: {msg}", sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except InputError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    if args.command == "run":
        return _run_guarded(args, argv)
    try:
        if args.command == "info":
            return cmd_info(args)
        if args.command == "verify":
            from . import verify

            return verify.main(args)
        if args.command == "analyze":
            from . import analyze

            return analyze.main(args)
        if args.command == "plot":
            from . import plot

            return plot.main(args)
        if args.command == "convert":
            from . import convert

            return convert.main(args)
    except InputError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mpi-enum info x.h5 | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    return EXIT_OK


def cmd_info(args):
    from .results import read_summary

    s = read_summary(args.out_h5)
    if args.json:
        print(json.dumps(s, sort_keys=True))
        return EXIT_OK
    print(f"{s['path']}: {s['n_regions']} regions ({'complete' if s['complete'] else 'PARTIAL'})")
    print(f"  network: input_dim {s['input_dim']}, hidden widths {s['hidden_widths']}, sha256 {s['network_sha256'][:16]}...")
    print(f"  domain: {json.dumps(s['domain'])[:200]}  (reduced dimension {s['reduced_dim']})")
    print(f"  regions per layer: {s['layer_counts']}")
    print(f"  tol {s['tol']:g}, {s['n_ranks']} ranks, {s['wall_seconds']:.2f} s wall"
          + (f", {s['regions_per_second']:.1f} regions/s" if 'regions_per_second' in s else "")
          + f", io_mode {s['io_mode']}")
    if "load_balance_max_over_mean" in s:
        st = s["stats"]
        print(f"  load balance (busy time max/mean): {s['load_balance_max_over_mean']:.3f}")
        for name in sorted(st):
            vals = st[name]
            print(f"    {name:18s} " + " ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in vals[:16])
                  + (" ..." if len(vals) > 16 else ""))
    return EXIT_OK


# ----------------------------------------------------------------------------- run

def _validate(args):
    """Load and check everything; raise InputError.  Runs on every rank."""
    from .domain import make_domain
    from .network import load_network

    net = load_network(args.network)
    domain = make_domain(net, box=args.box, polytope=args.polytope, ball=args.ball, plane=args.plane,
                         line=args.line, unbounded=args.unbounded)
    import math

    if not (math.isfinite(args.tol) and args.tol > 0):
        raise InputError(f"--tol must be a finite number > 0, got {args.tol}")
    if args.split_factor < 1:
        raise InputError(f"--split-factor must be >= 1, got {args.split_factor}")
    for opt in ("progress", "time_limit", "checkpoint_interval"):
        v = getattr(args, opt)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise InputError(f"--{opt.replace('_', '-')} must be a number > 0, got {v}")
    if args.resume and not args.checkpoint_dir:
        raise InputError("--resume needs --checkpoint-dir")
    out = args.output
    if out is None:
        stem = os.path.splitext(os.path.basename(args.network))[0]
        out = os.path.join("results", stem + ".h5")
    if os.path.isdir(out):
        raise InputError(f"{out}: is a directory")
    if os.path.exists(out) and not args.force:
        raise InputError(f"{out}: output file exists (use --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise InputError(f"{parent}: is not a directory")
    if os.path.isdir(parent) and not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output directory is not writable")
    if args.checkpoint_dir is None and (args.time_limit is not None or args.checkpoint_interval is not None):
        args.checkpoint_dir = out + ".checkpoint"  # a time-limited run must be resumable
    if args.checkpoint_dir is not None:
        from .checkpoint import check_checkpoint_dir, meta_for

        check_checkpoint_dir(args.checkpoint_dir, meta_for(net, domain, args.tol), args.resume)
    return net, domain, out


def partial_path(out):
    """Where a stopped run writes its partial result (the real output path is never touched)."""
    root, ext = os.path.splitext(out)
    return root + ".partial" + (ext or ".h5")


def _run_guarded(args, argv):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        return cmd_run(comm, args, argv)
    except SystemExit:
        raise
    except BaseException as exc:  # a bug or a signal: never leave the other ranks hanging
        if isinstance(exc, KeyboardInterrupt):
            say(f"mpi-enum: rank {comm.rank}: interrupted", sys.stderr)
        else:
            say(f"mpi-enum: rank {comm.rank}: unexpected error, aborting the job:", sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
        if comm.size > 1:
            comm.Abort(1)
        return 1


def cmd_run(comm, args, argv):
    from .stopper import Stopper

    t0 = time.perf_counter()
    stopper = Stopper(args.time_limit, args.checkpoint_interval)  # flag-only signal handlers, early
    try:
        return _cmd_run(comm, args, argv, t0, stopper)
    finally:
        stopper.restore()


def _cmd_run(comm, args, argv, t0, stopper):
    from mpi4py import MPI

    verdict = None
    try:
        net, domain, out = _validate(args)
    except InputError as exc:
        verdict = str(exc)
    # agree on the verdict before any other collective: the lowest failing rank reports
    bad = comm.allreduce(comm.rank if verdict is not None else comm.size, op=MPI.MIN)
    if bad < comm.size:
        if comm.rank == bad:
            _err(verdict)
        return EXIT_BAD_INPUT
    if comm.rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    from .engine import Problem
    from .parallel import run_parallel
    from .results import software_versions, write_result

    problem = Problem(net, domain, args.tol)
    try:
        res = run_parallel(comm, problem, args, stopper=stopper)
    except InputError as exc:  # an unusable checkpoint: raised on every rank together
        if comm.rank == 0:
            _err(str(exc))
        return EXIT_BAD_INPUT
    if not res["complete"]:
        out = partial_path(out)
    if args.progress:  # one line per rank (launchers label them): where the time went
        st = res["stats"]
        say(f"mpi-enum: rank {comm.rank}/{comm.size}: {st.get('regions', 0)} regions, {st.get('nodes', 0)} nodes, "
            f"busy {st.get('busy_seconds', 0.0):.2f} s, idle {st.get('idle_seconds', 0.0):.2f} s, "
            f"steals {st.get('steals_succeeded', 0)}/{st.get('steals_attempted', 0)}, "
            f"items given {st.get('items_given', 0)}")
    meta = {"net": net, "domain": domain, "tol": args.tol,
            "wall_seconds": comm.allreduce(time.perf_counter() - t0, op=MPI.MAX),
            "complete": res["complete"], "stopped_reason": res.get("stopped_reason", ""),
            "software": software_versions(comm),
            "command_line": "mpi-enum " + " ".join(shlex.quote(a) for a in argv)}
    io_mode = write_result(out, comm, meta, res["buffer"], res["stats"], res["layer_counts"])
    res["buffer"].close()
    total = comm.allreduce(res["buffer"].count)
    busy = comm.gather(res["stats"].get("busy_seconds", 0.0), root=0)
    wall = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    if comm.rank == 0:
        import numpy as np

        b = np.asarray(busy)
        lb = float(b.max() / b.mean()) if b.mean() > 0 else 1.0
        state = "complete" if res["complete"] else "PARTIAL (" + res.get("stopped_reason", "stopped") + ")"
        say(f"mpi-enum: {total} regions, {state}, {wall:.2f} s wall, {total / max(wall, 1e-9):.1f} regions/s, "
            f"{comm.size} ranks, load balance {lb:.2f}, io {io_mode} -> {out}")
        if res["complete"] and os.path.exists(partial_path(out)):
            os.unlink(partial_path(out))  # a resumed run is complete: its partial file is stale
        if not res["complete"]:
            if res.get("checkpointed"):
                say(f"mpi-enum: stopped early; checkpoint saved in {args.checkpoint_dir}; continue with the "
                    f"same command plus --resume --checkpoint-dir {args.checkpoint_dir}", sys.stderr)
            else:
                say("mpi-enum: stopped early without a checkpoint (no --checkpoint-dir): the partial result "
                    "cannot be resumed", sys.stderr)
    return EXIT_OK if res["complete"] else EXIT_STOPPED
