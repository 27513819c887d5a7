"""Command line (CONTRACT §2, §4): ``mpi-enum run|status|info|verify|analyze|plot|convert|graph``.

Bad input or usage: one line ``mpi-enum: error: <file>: <problem>`` on stderr, exit 2, and no
traceback.  In ``run``, every rank validates the inputs itself and the ranks agree on the verdict
with one collective before any other collective.  An unexpected exception on any rank prints its
traceback and aborts the whole MPI job (``MPI.COMM_WORLD.Abort``), so no rank ever hangs.

``run`` goes through the pipeline of :mod:`mpi_enum.api` (``plan_run``, ``agree``, ``execute``),
the same one as ``mpi_enum.enumerate``; its options become one
:class:`mpi_enum.options.RunOptions` (hidden developer options included: ``--budget``,
``--skew``, ``--debug-fail-after``, ``--debug-node-delay``, ``--debug-write-delay``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback

from .console import abort_job, say
from .errors import EXIT_BAD_INPUT, EXIT_IO, EXIT_OK, EXIT_STOPPED, InputError, OutputError
from .phases import Phases


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


class _Once(argparse.Action):
    """A domain option may be given only once (a second --box must not silently win)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "_given_" + self.dest, False):
            raise argparse.ArgumentError(self, "given twice (give it once)")
        setattr(namespace, "_given_" + self.dest, True)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def build_parser():
    p = _Parser(prog="mpi-enum", description="Exact enumeration of the activation regions of ReLU networks (MPI).")
    from ._version import __version__

    p.add_argument("--version", action="version", version=f"mpi_enum {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, required=True)

    r = sub.add_parser("run", help="enumerate the regions of NETWORK over a domain")
    r.add_argument("network", metavar="NETWORK")
    r.add_argument("-o", "--output", metavar="OUT.h5", default=None,
                   help="result file (default results/<network name>.h5)")
    dom = r.add_argument_group("domain (at most one; default: the network's box, else [-1, 1]^d)")
    dom.add_argument("--box", nargs=2, metavar=("LO", "HI"), action=_Once, help="scalars or comma lists of length d")
    dom.add_argument("--polytope", metavar="FILE.npz", action=_Once, help="arrays A (m, d), b (m,): {x : A x <= b}")
    dom.add_argument("--ball", nargs=2, metavar=("CENTER.npy", "RADIUS"), action=_Once,
                     help="L-infinity ball around a point, cut to the network's default box")
    dom.add_argument("--plane", metavar="POINTS.npy", action=_Once, help="rows x0, x1, x2: a 2-D parallelogram slice")
    dom.add_argument("--line", metavar="POINTS.npy", action=_Once, help="rows x0, x1: a segment")
    dom.add_argument("--unbounded", nargs=0, action=_Once, default=False, help="all of R^d")
    r.add_argument("--input-box", nargs=2, metavar=("LO", "HI"), action=_Once, default=None,
                   help="the network's default box (scalars or comma lists of length d): the domain when none is "
                        "given, and what --ball is cut to")
    r.add_argument("--tol", type=float, default=1e-9,
                   help="keep a side only if it holds a ball of radius > tol (relative to the domain's size)")
    r.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                   help="journal of finished work (default OUT.h5.checkpoint, removed once the result is complete)")
    r.add_argument("--checkpoint-interval", type=float, metavar="S", default=None)
    r.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint (--checkpoint-dir, default OUT.h5.checkpoint)")
    r.add_argument("--time-limit", type=float, metavar="S", default=None)
    r.add_argument("--progress", type=float, metavar="S", default=None,
                   help="print progress every S seconds (rank 0)")
    r.add_argument("--force", action="store_true", help="replace an existing output file (or OUT.partial.h5)")
    r.add_argument("--compress", action="store_true",
                   help="store the region datasets chunked and gzip-compressed (lossless; smaller at high d)")
    r.add_argument("--points", choices=("float64", "none"), default="float64", help="none: no interior points")
    r.add_argument("--split-factor", type=int, default=16, metavar="K",
                   help="static partition: at least K subtrees per rank (default 16)")
    r.add_argument("--spill-dir", default=None, metavar="DIR",
                   help="per-rank scratch files for results larger than memory (default: $TMPDIR)")
    r.add_argument("--spill-mb", type=float, default=None, metavar="MB",
                   help="region rows held in memory per rank before they spill to --spill-dir (default 16)")
    # developer and test knobs (mpi_enum.options.RunOptions): not listed by --help
    r.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    r.add_argument("--skew", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--debug-fail-after", metavar="RANK:NODES", default=None, help=argparse.SUPPRESS)
    r.add_argument("--debug-node-delay", type=float, metavar="S", default=None, help=argparse.SUPPRESS)
    r.add_argument("--debug-write-delay", type=float, metavar="S", default=None, help=argparse.SUPPRESS)
    r.add_argument("--debug-write-fail", type=int, metavar="RANK", default=None, help=argparse.SUPPRESS)
    r.add_argument("--debug-phases", action="store_true", help=argparse.SUPPRESS)

    stat = sub.add_parser("status", help="how a run ended: exit 0 complete, 3 stopped early (resumable), 2 no result")
    stat.add_argument("out_h5", metavar="OUT.h5", help="the run's -o path")

    i = sub.add_parser("info", help="summary of a result file")
    i.add_argument("out_h5", metavar="OUT.h5"), i.add_argument("--json", action="store_true")

    v = sub.add_parser("verify", help="independent checks of a result file")
    v.add_argument("out_h5", metavar="OUT.h5")
    v.add_argument("network", metavar="NETWORK")
    v.add_argument("--samples", type=int, default=100000)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--progress", type=float, metavar="S", default=None, help="print progress every S seconds")

    a = sub.add_parser("analyze", help="per-layer counts; affine-map rank versus further partitioning")
    a.add_argument("out_h5", metavar="OUT.h5")
    a.add_argument("-o", "--output", metavar="DIR", default=None)

    pl = sub.add_parser("plot", help="picture of a 2-D partition")
    pl.add_argument("out_h5", metavar="OUT.h5")
    pl.add_argument("-o", "--output", metavar="FIG.png", required=True)
    pl.add_argument("--color-by", default="affine", help="affine | linear | class | rank | radius | layerN")

    gr = sub.add_parser("graph", help="region adjacency graph, linear regions, vertices and volumes (MPI-parallel)")
    gr.add_argument("out_h5", metavar="OUT.h5")
    gr.add_argument("-o", "--output", metavar="NEW.h5", default=None,
                    help="write a new file (default: add to OUT.h5, replaced atomically)")
    gr.add_argument("--force", action="store_true", help="replace an existing -o file")
    gr.add_argument("--vertices", action="store_true",
                    help="also every region's vertices and exact volume (bounded domains of dimension <= 8)")
    gr.add_argument("--seed", type=int, default=0, help="seed of the random rays of the facet certificates")

    c = sub.add_parser("convert", help="convert an .onnx/.pt/.pth/.nnet model to .npz")
    c.add_argument("model", metavar="MODEL")
    c.add_argument("-o", "--output", metavar="NET.npz", required=True)
    c.add_argument("--force", action="store_true")
    c.add_argument("--input-box", nargs=2, metavar=("LO", "HI"), action=_Once, default=None,
                   help="write this box (scalars or comma lists of length d) as the file's input_lo/input_hi")
    return p


def _err(msg):
    say(f"mpi-enum: error: {msg}", sys.stderr)


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread():
    """One BLAS thread per process unless the environment says otherwise: every MPI rank is one
    core's worth of search, and BLAS threads spinning between calls compete with the other ranks
    (a d x k product per region batch once cost a 2-rank run at d = 784 two thirds of its rate).
    Effective only before numpy is imported, as in the ``mpi-enum`` command."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


def main(argv=None):
    one_blas_thread()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except InputError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    if args.command == "run":
        return _run_guarded(args, argv)
    if args.command in ("graph", "verify"):  # on every rank of the job: mpiexec -n P shares the work
        from mpi4py import MPI

        from .geometry.command import main as graph_main
        from .post import verify
        from .post.share import run_on_every_rank
        w = MPI.COMM_WORLD
        if args.command == "graph":
            return graph_main(args, w)
        return run_on_every_rank(lambda: verify.main(args, w if w.Get_size() > 1 else None), w)
    try:
        if args.command == "info":
            return cmd_info(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "analyze":
            from .post import analyze

            return analyze.main(args)
        if args.command == "plot":
            from .post import plot

            return plot.main(args)
        if args.command == "convert":
            from .post import convert

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
    from .io.results import read_summary

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
          + f", io_mode {s['io_mode']}" + (", no interior points" if s.get("interior_points") == "none" else ""))
    if "load_balance_max_over_mean" in s:
        st = s["stats"]
        print(f"  load balance (busy time max/mean): {s['load_balance_max_over_mean']:.3f}")
        for name in sorted(st):
            vals = st[name]
            print(f"    {name:18s} " + " ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in vals[:16])
                  + (" ..." if len(vals) > 16 else ""))
    return EXIT_OK


def cmd_status(args):
    """The state of a run's output path, as an exit status that means what ``run``'s means
    (0 complete, 3 stopped early with a checkpoint), whatever the launcher returned."""
    from .io.checkpoint import list_generations
    from .io.outfile import partial_path
    from .io.results import read_summary

    out = args.out_h5
    if os.path.exists(out):
        s = read_summary(out)
        if s["complete"]:
            print(f"{out}: complete, {s['n_regions']} regions")
            return EXIT_OK
    part = partial_path(out)
    if not os.path.exists(part):
        raise InputError(f"{out}: no result: neither {out} nor {part} exists")
    s = read_summary(part)
    ck = s.get("checkpoint_dir", "")
    if s["complete"] or not ck or not os.path.isdir(ck) or not list_generations(ck):
        raise InputError(f"{part}: a partial result without its checkpoint ({ck or 'none recorded'}): it cannot be "
                         f"continued")
    print(f"{out}: stopped early ({s.get('stopped_reason') or 'stopped'}), {s['n_regions']} regions so far in {part}; "
          f"checkpoint {ck}; continue with: {s.get('resume_hint') or '--resume'}")
    return EXIT_STOPPED


# ----------------------------------------------------------------------------- run

DOMAIN_OPTIONS = ("box", "polytope", "ball", "plane", "line", "unbounded")


def default_output(network):
    stem = os.path.splitext(os.path.basename(network))[0]
    return os.path.join("results", stem + ".h5")


def _plan(args, lock=False):
    """Load and check everything (:func:`mpi_enum.api.plan_run`, shared with the Python API);
    raise InputError.  Runs on every rank; rank 0 (``lock``) also takes the run's locks."""
    from .api import plan_run
    from .options import RunOptions

    out = args.output if args.output is not None else default_output(args.network)
    domain_kw = {k: getattr(args, k) for k in DOMAIN_OPTIONS}
    domain_kw["input_box"] = getattr(args, "input_box", None)
    return plan_run(args.network, domain_kw, RunOptions.args_fields(args), out, lock=lock)


def partial_path(out):
    """Where a stopped run writes its partial result (the real output path is never touched)."""
    from .io.outfile import partial_path as pp

    return pp(out)


def _run_guarded(args, argv):
    from .io.outfile import io_problem, is_io_error
    from .parallel.stopper import Stopper

    # flag-only signal handlers before MPI starts, and kept until the process exits: a stop signal
    # never kills a rank, however early or late it comes (once the result is written it is moot)
    stopper = Stopper(args.time_limit, args.checkpoint_interval)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    import_run_modules(args.network)  # start-up, outside the run's measured wall time
    if comm.size > 1:
        comm.Barrier()  # every rank is up (their start-ups differ): the run starts together
    t0 = time.perf_counter()  # the start of the run: wall_seconds and the printed wall count from here
    stopper.restart_clock()  # --time-limit counts from here too
    try:
        return _cmd_run(comm, args, argv, t0, stopper, Phases(t0))
    except SystemExit:
        raise
    except BaseException as exc:  # a bug, a signal or a failing disk: never leave the other ranks hanging
        code = 1
        if isinstance(exc, KeyboardInterrupt):
            say(f"mpi-enum: rank {comm.rank}: interrupted", sys.stderr)
        elif is_io_error(exc):  # a full disk or quota in --spill-dir or the checkpoint: one line
            code = EXIT_IO
            where = exc.filename or "a file of the run"
            say(f"mpi-enum: rank {comm.rank}: error: {where}: {io_problem(exc)}; the job stops here"
                f"{getattr(args, '_ck_note', '')}", sys.stderr)
        else:
            say(f"mpi-enum: rank {comm.rank}: unexpected error, aborting the job:", sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
        if comm.size > 1:
            abort_job(comm, code)
        return code


def cmd_run(comm, args, argv):
    """``mpi-enum run`` on ``comm`` (the signal handlers are put back afterwards)."""
    from .parallel.stopper import Stopper

    import_run_modules(args.network)
    t0 = time.perf_counter()
    stopper = Stopper(args.time_limit, args.checkpoint_interval)
    try:
        return _cmd_run(comm, args, argv, t0, stopper, Phases(t0))
    finally:
        stopper.restore()


def _continue_command(argv, size):
    """The command that continues a stopped run: the same arguments plus --resume."""
    words = [a for a in argv if a != "--resume"] + ["--resume"]
    launch = f"mpiexec -n {size} " if size > 1 else ""
    return launch + "mpi-enum " + " ".join(shlex.quote(a) for a in words)


RUN_MODULES = ("encodings.cp437", "h5py", "mpi_enum.api", "mpi_enum.io.checkpoint", "mpi_enum.io.outfile",
               "mpi_enum.io.results", "mpi_enum.loaders.domain_options", "mpi_enum.model.problem",
               "mpi_enum.parallel.driver", "mpi_enum.parallel.rma")  # cp437: zipfile's names (an .npz)
LOADER_MODULES = {".npz": "mpi_enum.loaders.npz", ".nnet": "mpi_enum.loaders.nnet"}


def import_run_modules(network):
    """Import what a run needs before its clock starts (module imports are start-up, like the
    interpreter's: README "The result file", ``wall_seconds``).  The stop-signal handlers are
    installed before this, so a signal during the imports is honoured too."""
    import importlib

    loader = LOADER_MODULES.get(os.path.splitext(str(network))[1].lower())
    for name in RUN_MODULES + ((loader,) if loader else ()):
        importlib.import_module(name)


def _cmd_run(comm, args, argv, t0, stopper, phases):
    from .api import agree

    try:  # every rank validates; one collective agrees on the verdict before any other collective
        with phases("plan: network, domain, checks, locks"):
            plan = agree(comm, lambda: _plan(args, lock=comm.rank == 0))
    except InputError as exc:  # the lowest failing rank reports
        if comm.rank == getattr(exc, "rank", comm.rank):
            _err(str(exc))
        return EXIT_BAD_INPUT
    if comm.rank == 0:
        for note in plan.net.meta.get("notes", ()):  # e.g. a dropped trailing Softmax
            say(f"mpi-enum: note: {note}", sys.stderr)
    complete = False
    try:
        rc, complete = _run_plan(comm, plan, args, argv, t0, stopper, phases)
        return rc
    finally:
        with phases("after the rename: locks, default checkpoint removed"):
            plan.release(complete=complete)  # the locks; the default checkpoint once the result is complete
        if getattr(args, "debug_phases", False):
            _report_phases(comm, phases)


def _report_phases(comm, phases):
    """``--debug-phases``: rank 0 prints one line ``mpi-enum: phases {JSON}`` on stderr: the
    run's ``wall_seconds`` (the printed wall time; None if the run did not get that far), the
    seconds of every phase on every rank (lists in rank order) and ``total_seconds``, the time
    from the start of the run to this report."""
    mine = dict(phases.as_dict(), total_seconds=phases.elapsed())
    every = comm.gather(mine, root=0) if comm.size > 1 else [mine]
    if comm.rank == 0:
        names = list(dict.fromkeys(k for d in every for k in d))
        say("mpi-enum: phases " + json.dumps({"n_ranks": comm.size, "wall_seconds": phases.wall, "phases": {
            k: [round(d.get(k, 0.0), 6) for d in every] for k in names}}), sys.stderr)


def _run_plan(comm, plan, args, argv, t0, stopper, phases):
    """The run after the inputs are agreed on.  Returns (exit status, complete and written)."""
    from .api import LARGE_TOL, execute
    from .io.outfile import fsync_path, io_problem, is_io_error, remove_stale_temps, unlink_quietly
    from .io.results import write_result

    out, opts = plan.out, plan.options
    ck = opts.checkpoint_dir
    again = _continue_command(argv, comm.size)
    args._ck_note = f"; the checkpoint in {ck} stays usable: continue with {again} once the problem is fixed"
    if comm.rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        if opts.tol > LARGE_TOL and plan.domain.bounded:
            say(f"mpi-enum: warning: --tol {opts.tol:g} is large: tol is relative to the domain (its inscribed "
                f"radius is 1), and regions that hold no ball of radius > tol are not reported", sys.stderr)
    try:
        run = execute(comm, plan, stopper, t0, command_line="mpi-enum " + " ".join(shlex.quote(a) for a in argv),
                      phases=phases)
    except InputError as exc:  # an unusable checkpoint: raised on every rank together
        if comm.rank == 0:
            _err(str(exc))
        return EXIT_BAD_INPUT, False
    except OSError as exc:  # --spill-dir or the checkpoint on a full disk: this rank ends the job
        if not is_io_error(exc):
            raise
        say(f"mpi-enum: rank {comm.rank}: error: {exc.filename or 'a file of the run'}: {io_problem(exc)}; "
            f"the job stops here{args._ck_note}", sys.stderr)
        if comm.size > 1:
            plan.release()  # rank 0: its lock files (the locks themselves die with the process)
            abort_job(comm, EXIT_IO)
        return EXIT_IO, False
    res = run.res
    complete = bool(res["complete"])
    target = out if complete else partial_path(out)
    meta = dict(run.meta, compress=opts.compress, points=opts.points)
    if not complete:
        meta.update(checkpoint_dir=os.path.abspath(ck), resume_hint=again)
    if opts.progress:  # one line per rank (launchers label them): where the time went
        st = res["stats"]
        say(f"mpi-enum: rank {comm.rank}/{comm.size}: {st.get('regions', 0)} regions, {st.get('nodes', 0)} nodes, "
            f"busy {st.get('busy_seconds', 0.0):.2f} s, idle {st.get('idle_seconds', 0.0):.2f} s, "
            f"steals {st.get('steals_succeeded', 0)}/{st.get('steals_attempted', 0)}, "
            f"items given {st.get('items_given', 0)}")
    note = (f"; the checkpoint in {ck} holds every region found: continue with {again} once the problem is fixed")
    try:
        io_mode = write_result(target, comm, meta, res["buffer"], res["stats"], res["layer_counts"],
                               write_delay=opts.write_delay, write_fail=opts.write_fail, note=note,
                               replace=opts.force if complete else plan.replace_partial, t0=t0, phases=phases)
    except OutputError as exc:  # raised on every rank together; nothing at the output path
        if comm.rank == 0:
            _err(str(exc))
        return EXIT_IO, False
    finally:
        res["buffer"].close()
    # the run's wall time: from t0 to the result file closed and in place, the maximum over ranks
    # (every rank is past write_result, whose last step tells every rank that the rename is done)
    mine = (time.perf_counter() - t0, res["buffer"].count,
            int(res["layer_counts"][0]) if len(res["layer_counts"]) else 0, res["stats"].get("busy_seconds", 0.0))
    every = comm.gather(mine, root=0) if comm.size > 1 else [mine]  # one collective for the summary
    if comm.rank == 0:
        t_end = time.perf_counter()
        wall = phases.wall = max(e[0] for e in every)
        total = sum(e[1] for e in every)
        first_layer = sum(e[2] for e in every)
        busy = [e[3] for e in every]
        b_mean = sum(busy) / len(busy)
        lb = float(max(busy) / b_mean) if b_mean > 0 else 1.0
        state = "complete" if complete else "PARTIAL (" + res.get("stopped_reason", "stopped") + ")"
        old = int(res.get("old_regions", 0))
        new = total - old
        extra = f" ({new} in this run, {old} from the checkpoint)" if old else ""
        say(f"mpi-enum: {total} regions{extra}, {state}, {wall:.2f} s wall, {new / max(wall, 1e-9):.1f} regions/s, "
            f"{first_layer} first-layer cells, {comm.size} ranks, load balance {lb:.2f}, "
            f"io {io_mode} -> {target}")
        phases.add("summary", time.perf_counter() - t_end)
        t_end = time.perf_counter()
        remove_stale_temps(out, partial_path(out))  # of earlier killed runs (this run holds the output's lock)
        if complete:
            fsync_path(out)  # durable before the checkpoint goes
            unlink_quietly(partial_path(out))  # a resumed run is complete: its partial file is stale
            if total == 0:
                say(f"mpi-enum: warning: no region holds a ball of radius > tol = {opts.tol:g} (tol is relative: "
                    f"the domain's inscribed radius is 1); a smaller --tol, e.g. the default 1e-9, finds them",
                    sys.stderr)
        else:
            say(f"mpi-enum: stopped early ({res.get('stopped_reason', 'stopped')}); checkpoint saved in {ck}; "
                f"continue with: {again}", sys.stderr)
            if res.get("stopped_reason", "").startswith("signal"):
                say(f"mpi-enum: exit status 3 (stopped, resumable); if the signal was sent to mpiexec itself, MPICH's "
                    f"mpiexec may report 0 instead: `mpi-enum status {out}` tells (exit 3: stopped early)",
                    sys.stderr)
        phases.add("after the rename: stale temps, fsync, partial file", time.perf_counter() - t_end)
    return (EXIT_OK if complete else EXIT_STOPPED), complete
