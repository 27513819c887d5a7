"""The Python API (CONTRACT §5) and the run pipeline it shares with ``mpi-enum run``.

::

    import mpi_enum
    res = mpi_enum.enumerate("net.npz", box=(-1, 1))          # this process alone, no MPI
    res.n_regions, res.patterns, res.bits(), res.layer_counts
    res.save("out.h5")                                        # the file `mpi-enum run` writes
    res = mpi_enum.open("out.h5")                             # the same object, read back

``network``: a path (``.npz``/``.nnet``/``.onnx``/``.pt``), a :class:`mpi_enum.model.network.Network`
or a ``torch.nn.Sequential``.  Domain keywords as the command line's, with arrays instead of
files (see :mod:`mpi_enum.loaders.domain_options`).  Every other keyword is a
:class:`mpi_enum.options.RunOptions` field (``checkpoint_dir``, ``resume``, ``time_limit``,
``progress``, ``split_factor``, ``spill_dir``, ...).  Bad input raises
:class:`mpi_enum.errors.InputError` with the command line's one-line message.

Under a communicator (``comm=MPI.COMM_WORLD``, every rank calls ``enumerate``)
-------------------------------------------------------------------------------
The parallel driver runs on the communicator's ranks.  Each rank's :class:`Result` holds **the
rows that rank found** (``n_local`` of them; after a resume, also its share of the checkpoint's
rows): ``patterns``, ``interior_points``, ``radii``, ``affine_ranks``, ``bits()``.  They are rows
``row_offset ... row_offset + n_local - 1`` of the file :meth:`Result.save` writes (rank order).
``n_regions``, ``layer_counts``, ``stats``, ``complete`` are global and the same on every rank.
:meth:`Result.gather` (the full set on one rank) and :meth:`Result.allgather` (on every rank)
return a whole, communicator-free result in file order; :meth:`Result.save` is collective.
Every rank validates its inputs and the ranks agree on the verdict before anything else, so bad
input raises the same InputError on every rank (and inputs that differ between ranks, e.g. an
unseeded torch model, are an error too).  An unexpected exception on one rank leaves the others
waiting: run scripts as ``mpiexec -n P python -m mpi4py script.py``, which aborts the job then.

A stop signal (SIGINT, SIGTERM, SIGUSR1) or ``time_limit`` ends the run early with a partial
result (``complete`` False), resumable when ``checkpoint_dir`` was given; a second Ctrl-C raises
KeyboardInterrupt.

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.loaders`, :mod:`mpi_enum.engine`,
:mod:`mpi_enum.io`, :mod:`mpi_enum.parallel`; mpi4py only through the communicator passed in.
This module defines ``enumerate`` and ``open``: it never uses the builtins of those names.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .options import RunOptions
from .phases import NO_PHASES

__all__ = ["Result", "RunOptions", "enumerate", "open"]


# ----------------------------------------------------------------------------- the shared pipeline

@dataclass
class Plan:
    """The validated inputs of one run, built on every rank: network, domain, options, output.

    ``default_checkpoint``: the checkpoint folder is the default ``OUT.h5.checkpoint`` (the run
    removes it once its result is complete); ``replace_partial``: an existing ``OUT.partial.h5``
    may be replaced (``--force``, or ``--resume`` of the checkpoint it belongs to); ``locks``:
    the :class:`~mpi_enum.io.outfile.RunLock` objects this rank holds (rank 0)."""

    net: object
    domain: object
    options: RunOptions
    out: str | None = None
    default_checkpoint: bool = False
    replace_partial: bool = False
    locks: list = field(default_factory=list)

    def fingerprint(self) -> str:
        text = f"{self.net.sha256}\n{self.domain.to_json()}\n{self.options.tol!r}\n{self.options.checkpoint_dir}"
        return hashlib.sha256(text.encode()).hexdigest()

    def release(self, complete=False):
        """End of the run on this rank: drop the locks; once the result is ``complete`` and
        safely written, also remove the default checkpoint folder (never a user-given one)."""
        if complete and self.default_checkpoint and self.locks:
            from .io.checkpoint import remove_checkpoint

            clean = remove_checkpoint(self.options.checkpoint_dir)
        else:
            clean = False
        for lk in reversed(self.locks):
            lk.release(remove_dir=clean and lk.path is not None and os.path.basename(lk.path) == "lock")
        self.locks = []


@dataclass
class RunOutput:
    """What the driver returned on this rank (``res``: buffer, stats, layer counts, complete, ...)
    and the result file's metadata (``meta``, for :func:`mpi_enum.io.results.write_result`)."""

    res: dict
    meta: dict
    options: RunOptions


def check_tol(domain, tol):
    """A bounded domain has normalised inscribed radius 1 (see :mod:`mpi_enum.model.domain`): with
    ``tol >= 1`` not even the domain itself holds a ball of radius > tol, so nothing could ever
    be reported.  InputError."""
    if domain.bounded and tol >= 1:
        raise InputError(f"--tol {tol:g}: no region can hold a ball of radius > tol: tol is relative to the domain, "
                         f"whose own inscribed ball has radius 1 in normalised coordinates; use a value well "
                         f"below 1 (the default is 1e-9)")


LARGE_TOL = 1e-3  # above this a warning says that thin regions are dropped


def check_partial(out, force, resume, ckdir):
    """Whether an existing ``OUT.partial.h5`` may be replaced: ``force``, or a ``resume`` of the
    checkpoint it was written from.  Otherwise InputError (it is never silently replaced)."""
    from .io.outfile import partial_checkpoint, partial_path

    part = partial_path(out)
    if not os.path.lexists(part) or force:
        return True
    if resume and ckdir:
        owner = partial_checkpoint(part)
        if owner == "" or (owner and os.path.abspath(owner) == os.path.abspath(ckdir)):
            return True
    raise InputError(f"{part}: a partial result of another run exists (use --force to replace it, or --resume with "
                     f"the checkpoint it came from to continue that run)")


def check_output(out, force, hint="--force"):
    """The output path must be replaceable (``force``) or new, in a writable directory."""
    if os.path.isdir(out):
        raise InputError(f"{out}: is a directory")
    if os.path.exists(out) and not force:
        raise InputError(f"{out}: output file exists (use {hint} to replace it)")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise InputError(f"{parent}: is not a directory")
    if os.path.isdir(parent) and not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output directory is not writable")


def plan_run(network, domain_kw, options, out=None, lock=False) -> Plan:
    """Load and check everything (network, domain, options, output path, checkpoint directory);
    raise InputError.  Runs on every rank; :func:`agree` then settles the verdict.

    ``options``: a :class:`RunOptions` or a dict of its fields (validated after the network and
    the domain, the command line's order of messages).  With an output path the run always
    journals a checkpoint: to ``--checkpoint-dir``, else to ``OUT.h5.checkpoint`` (so that a stop,
    exit 3, is always resumable, with ``--resume`` alone).  ``lock`` (rank 0): take the locks of
    the output and the checkpoint folder (a second run on either is refused while this one
    lives); release them with :meth:`Plan.release`."""
    from .loaders import as_network
    from .loaders.domain_options import make_domain

    net = as_network(network)
    domain = make_domain(net, **domain_kw)
    default_ck = False
    if out is not None:
        given = options.checkpoint_dir if isinstance(options, RunOptions) else options.get("checkpoint_dir")
        if given is None:
            default_ck = True
            if isinstance(options, RunOptions):
                options = options.replace(checkpoint_dir=out + ".checkpoint")
            else:
                options = dict(options, checkpoint_dir=out + ".checkpoint")
    opts = options if isinstance(options, RunOptions) else RunOptions(**options)
    check_tol(domain, opts.tol)
    plan = Plan(net, domain, opts, out, default_checkpoint=default_ck)
    if out is not None:
        check_output(out, opts.force)
        plan.replace_partial = check_partial(out, opts.force, opts.resume, opts.checkpoint_dir)
    if lock:  # before the checkpoint's checks: a run that is still alive is reported as such
        _take_locks(plan)
    if opts.checkpoint_dir is not None:
        from .io.checkpoint import check_checkpoint_dir, meta_for

        try:
            check_checkpoint_dir(opts.checkpoint_dir, meta_for(net, domain, opts.tol), opts.resume)
        except InputError as exc:
            plan.release()
            if default_ck and "already holds a checkpoint" in str(exc):
                raise InputError(f"{opts.checkpoint_dir}: holds the checkpoint of an earlier run of {out} that did not "
                                 f"finish: rerun with --resume to continue it, or remove the folder to start "
                                 f"afresh") from None
            raise
    return plan


def _take_locks(plan):
    from .io.outfile import RunLock, lock_path_for_checkpoint, lock_path_for_output

    try:
        if plan.out is not None:
            plan.locks.append(RunLock.acquire(lock_path_for_output(plan.out), plan.out,
                                              "wait for it to finish, or choose another -o"))
        ck = plan.options.checkpoint_dir
        if ck is not None:
            plan.locks.append(RunLock.acquire(lock_path_for_checkpoint(ck), ck,
                                              "wait for it to finish, or use another --checkpoint-dir"))
    except InputError:
        plan.release()
        raise


def agree(comm, fn):
    """``fn()`` on every rank, then one collective (before any other) to agree on the verdict.

    Returns ``fn()``'s value, or raises InputError on every rank with the lowest failing rank's
    message (the exception's ``rank`` attribute names that rank: the CLI prints it there only).
    A :class:`Plan` must also be the same on every rank (network, domain and tol)."""
    value, verdict = None, None
    try:
        value = fn()
    except InputError as exc:
        verdict = str(exc)
    if comm is None or comm.size == 1:
        if verdict is not None:
            raise _input_error(verdict, 0)
        return value
    fp = value.fingerprint() if isinstance(value, Plan) else None
    votes = comm.allgather((verdict, fp))
    bad = [r for r in range(len(votes)) if votes[r][0] is not None]
    err = None
    if bad:
        err = _input_error(votes[bad[0]][0], bad[0])
    elif len({v[1] for v in votes}) > 1:
        err = _input_error("the ranks were given different networks, domains, tolerances or checkpoint folders: "
                           "build the network identically on every rank (seed it) or load it from a file", 0)
    if err is not None:
        if isinstance(value, Plan):
            value.release()
        raise err
    return value


def _input_error(msg, rank):
    exc = InputError(msg)
    exc.rank = rank
    return exc


def _max(comm, v):
    if comm is None or comm.size == 1:
        return v
    from mpi4py import MPI

    return comm.allreduce(v, op=MPI.MAX)


def execute(comm, plan, stopper=None, t0=None, command_line="", phases=NO_PHASES) -> RunOutput:
    """Build the problem and run the driver on every rank of ``comm`` (None: this process alone).

    ``meta["wall_seconds"]``: from ``t0`` to the end of the search, the maximum over ranks (the
    command line's result writer replaces it by the time until the file's last row is written).
    ``phases``: a :class:`~mpi_enum.phases.Phases` that the steps add their seconds to.
    Raises InputError on every rank together when the checkpoint cannot be used."""
    from .io.results import software_versions
    from .model.problem import Problem
    from .parallel import run_parallel

    t0 = time.perf_counter() if t0 is None else t0
    with phases("problem"):
        problem = Problem(plan.net, plan.domain, plan.options.tol)
    res = run_parallel(comm, problem, plan.options, stopper=stopper, phases=phases,
                       ephemeral_checkpoint=plan.default_checkpoint)
    wall = _max(comm, time.perf_counter() - t0)
    with phases("provenance"):
        software = software_versions(comm)
    meta = {"net": plan.net, "domain": plan.domain, "tol": plan.options.tol, "wall_seconds": wall,
            "complete": res["complete"], "stopped_reason": res.get("stopped_reason", ""),
            "software": software, "command_line": command_line}
    return RunOutput(res, meta, plan.options)


# ----------------------------------------------------------------------------- the result object

@dataclass(repr=False)
class Result:
    """An enumeration result: from :func:`enumerate` or read back by :func:`open`.

    Rows (``patterns`` uint8 (n_local, ceil(N/8)) as ``/regions/pattern``, ``interior_points``
    (n_local, d; None with ``points="none"``), ``radii``, ``affine_ranks`` int16 (n_local, L)) are
    this rank's under a communicator, all of them otherwise.  ``n_regions``, ``layer_counts``
    (int64 (L,)), ``stats`` (name -> per-rank list), ``complete`` are global."""

    network: object
    domain: object
    tol: float
    n_regions: int
    layer_counts: np.ndarray
    patterns: np.ndarray
    interior_points: np.ndarray
    radii: np.ndarray
    affine_ranks: np.ndarray
    complete: bool = True
    stopped_reason: str = ""
    stats: dict = field(default_factory=dict)
    n_ranks: int = 1
    wall_seconds: float = 0.0
    software: dict = field(default_factory=dict)
    command_line: str = ""
    created: str = ""
    path: str | None = None  # the file it was read from
    comm: object = None
    row_offset: int = 0  # index of this rank's first row in the saved file
    _lc_local: np.ndarray | None = None  # this rank's share of layer_counts (what the writer sums)

    @property
    def n_local(self) -> int:
        return int(len(self.radii))

    @property
    def input_dim(self) -> int:
        return int(self.network.input_dim if self.interior_points is None else self.interior_points.shape[1])

    @property
    def hidden_widths(self) -> list:
        return list(self.network.hidden_widths) if self.network is not None else []

    def bits(self, rows=None):
        """Patterns as a 0/1 uint8 matrix (n_local, N), layer-major (or for ``rows``)."""
        p = self.patterns if rows is None else self.patterns[rows]
        N = int(sum(self.hidden_widths)) if self.network is not None else p.shape[1] * 8
        return np.unpackbits(p, axis=1, count=N) if len(p) else np.zeros((len(p), N), np.uint8)

    @property
    def selectors(self) -> np.ndarray:
        """Max units: each region's selected member of every max group, int16 (n_local, G)."""
        return self.network.selectors(self.bits())

    def __repr__(self):
        where = "" if self.comm is None else f", {self.n_local} on rank {self.comm.rank} of {self.comm.size}"
        return (f"<mpi_enum.Result: {self.n_regions} regions ({'complete' if self.complete else 'PARTIAL'}){where}, "
                f"input dim {self.input_dim}, hidden widths {self.hidden_widths}, domain "
                f"{getattr(self.domain, 'kind', '?')}, tol {self.tol:g}>")

    # -- the whole set
    def gather(self, root=0):
        """The full result (every rank's rows, in file order) on ``root``, None on the other
        ranks.  Collective.  Without a communicator: the result itself."""
        if self.comm is None:
            return self
        rows = [None if a is None else _collect(self.comm, a, root) for a in self._rows()]
        return self._whole(rows) if self.comm.rank == root else None

    def allgather(self):
        """The full result (in file order) on every rank.  Collective."""
        if self.comm is None:
            return self
        return self._whole([None if a is None else _collect(self.comm, a, None) for a in self._rows()])

    def _rows(self):
        return self.patterns, self.interior_points, self.radii, self.affine_ranks

    def _whole(self, rows):
        return Result(self.network, self.domain, self.tol, self.n_regions, self.layer_counts.copy(), *rows,
                      complete=self.complete, stopped_reason=self.stopped_reason, stats=dict(self.stats),
                      n_ranks=self.n_ranks, wall_seconds=self.wall_seconds, software=dict(self.software),
                      command_line=self.command_line, created=self.created, path=self.path)

    # -- the file
    def save(self, path, force=False, compress=False, points=None):
        """Write the result file (CONTRACT §3), the same file ``mpi-enum run`` writes; collective
        under a communicator (every rank calls it).  An existing ``path`` is an InputError
        unless ``force``.  ``compress``, ``points``: as ``mpi-enum run --compress``, ``--points``
        (default: "none" where ``interior_points`` is None, else "float64").  Returns the path."""
        from .io.results import RegionBuffer, points_choice, write_result

        path, comm = os.fspath(path), self.comm
        points = points_choice(points, self.interior_points is not None, self.path)
        if self.network is None:
            raise InputError(f"{self.path}: the result has no network (/network group), so it cannot be saved")
        agree(comm, lambda: check_output(path, force, hint="force=True"))
        if comm is None or comm.rank == 0:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        meta = {"net": self.network, "domain": self.domain, "tol": self.tol, "wall_seconds": self.wall_seconds,
                "complete": self.complete, "stopped_reason": self.stopped_reason, "software": self.software,
                "command_line": self.command_line, "n_ranks": self.n_ranks, "compress": bool(compress),
                "points": points}
        if self.created:
            meta["created"] = self.created
        buf = RegionBuffer.of_arrays(*self._rows())
        lc = self.layer_counts if self._lc_local is None else self._lc_local
        write_result(path, comm, meta, buf, None, lc, stats_all=self.stats, replace=force)
        return path

    @classmethod
    def from_run(cls, comm, run: RunOutput) -> "Result":
        """This rank's result from :func:`execute` (closes the run's buffer)."""
        res, meta = run.res, run.meta
        buf = res["buffer"]
        try:
            pat, pts, rad, rk = buf.arrays()
        finally:
            buf.close()
        pts = None if run.options.points == "none" else pts  # points="none": none kept, none saved
        lc = np.asarray(res["layer_counts"], dtype=np.int64)
        names = sorted(res["stats"])
        if comm is not None and comm.size > 1:
            counts = comm.allgather(len(rad))
            stats = {k: comm.allgather(res["stats"][k]) for k in names}
            total_lc = comm.allreduce(lc)
        else:
            counts, stats, total_lc = [len(rad)], {k: [res["stats"][k]] for k in names}, lc
        rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
        return cls(meta["net"], meta["domain"], float(meta["tol"]), int(sum(counts)), np.asarray(total_lc, np.int64),
                   pat, pts, rad, np.asarray(rk, np.int16), complete=bool(meta["complete"]),
                   stopped_reason=str(meta.get("stopped_reason", "")), stats=stats, n_ranks=size,
                   wall_seconds=float(meta["wall_seconds"]), software=dict(meta["software"]),
                   command_line=str(meta["command_line"]), comm=comm, row_offset=int(sum(counts[:rank])),
                   _lc_local=lc if comm is not None else None)


def _collect(comm, arr, root):
    """Every rank's rows of ``arr`` in rank order: on ``root``, or on every rank (root None)."""
    from mpi4py import MPI

    arr = np.ascontiguousarray(arr)
    row_bytes = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.itemsize
    counts = comm.allgather(int(arr.shape[0]))
    sizes = [c * row_bytes for c in counts]
    displs = [int(sum(sizes[:r])) for r in range(len(sizes))]
    out = np.empty((int(sum(counts)),) + arr.shape[1:], dtype=arr.dtype)
    send = [arr.reshape(-1).view(np.uint8), MPI.BYTE]
    recv = [out.reshape(-1).view(np.uint8), (sizes, displs), MPI.BYTE]
    if root is None:
        comm.Allgatherv(send, recv)
    else:
        comm.Gatherv(send, recv if comm.rank == root else None, root=root)
    return out


# ----------------------------------------------------------------------------- the entry points

def _describe(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    if isinstance(v, os.PathLike):
        return repr(os.fspath(v))
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_describe(x) for x in v) + ")"
    if hasattr(v, "shape"):
        return f"<array {tuple(v.shape)}>"
    return f"<{type(v).__name__}>"


def enumerate(network, box=None, tol=1e-9, comm=None, *, polytope=None, ball=None, plane=None, line=None,
              unbounded=False, input_box=None, **options):
    """Enumerate the activation regions of ``network`` over a domain; returns a :class:`Result`.

    ``comm``: None for this process alone (no MPI needed), or an mpi4py communicator: then every
    rank of it must call this with the same arguments (see the module docstring for which rank
    holds which rows).  ``input_box=(lo, hi)``: the network's default box, as ``--input-box``.
    ``options``: :class:`~mpi_enum.options.RunOptions` fields."""
    unknown = sorted(set(options) - set(RunOptions.field_names()))
    if unknown:
        raise TypeError(f"enumerate() got unexpected keyword argument(s) {', '.join(unknown)}; the options are "
                        f"the domain keywords and {', '.join(RunOptions.field_names())}")
    from .parallel.stopper import Stopper

    t0 = time.perf_counter()
    domain_kw = {"box": box, "polytope": polytope, "ball": ball, "plane": plane, "line": line,
                 "unbounded": bool(unbounded), "input_box": input_box}
    lead = comm is None or comm.rank == 0
    plan = agree(comm, lambda: plan_run(network, domain_kw, dict(options, tol=tol), lock=lead))
    given = [f"{k}={_describe(v)}" for k, v in domain_kw.items() if v is not None and v is not False]
    call = "mpi_enum.enumerate(" + ", ".join([_describe(network)] + given + [f"tol={plan.options.tol!r}"]) + ")"
    stopper = Stopper(plan.options.time_limit, plan.options.checkpoint_interval)
    try:
        run = execute(comm, plan, stopper, t0, command_line=call)
    finally:
        stopper.restore()
        plan.release()
    return Result.from_run(comm, run)


def open(path):
    """Read a result file (through :func:`mpi_enum.io.reader.load_result`, the only reader) into
    a :class:`Result`.  Raises InputError for anything that is not a readable result file."""
    from .io.reader import load_result

    r = load_result(os.fspath(path))
    a = r.attrs
    net = r.net
    if net is not None and a.get("network_source"):
        net.source = str(a["network_source"])
    try:
        software = json.loads(a.get("software") or "{}")
    except ValueError:
        software = {}
    return Result(net, r.domain, float(a.get("tol", 1e-9)), int(r.n), np.asarray(r.layer_counts, np.int64),
                  r.packed, r.points, r.radius, np.asarray(r.ranks, np.int16), complete=bool(a.get("complete", True)),
                  stopped_reason=str(a.get("stopped_reason", "")), stats=dict(r.stats),
                  n_ranks=int(a.get("n_ranks", 1)), wall_seconds=float(a.get("wall_seconds", 0.0)),
                  software=software, command_line=str(a.get("command_line", "")), created=str(a.get("created", "")),
                  path=os.fspath(path))
