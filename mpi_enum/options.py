"""One configuration object for a run: :class:`RunOptions`.

Built once, from the command line (:meth:`RunOptions.from_args`) or from Python keyword
arguments (``mpi_enum.enumerate(net, **options)`` passes them to ``RunOptions(**options)``), and
validated in one place (:meth:`RunOptions.validate`, called on construction), raising
:class:`~mpi_enum.errors.InputError` with the command line's one-line messages.  The driver and the
result writer take it (or plain parameters derived from it); nothing in the package reads
environment variables for run settings.

User settings (CONTRACT §2): ``tol``, ``split_factor``, ``progress``, ``checkpoint_dir``,
``checkpoint_interval``, ``resume``, ``time_limit``, ``spill_dir``, ``spill_bytes``
(``--spill-mb``), ``force``; extensions: ``compress`` (``--compress``: the result's /regions
datasets chunked and gzip-compressed, lossless), ``points`` (``--points float64|none``: "none"
writes no /regions/interior_point, format version 5; the API's ``Result.save(points=...)``).

Developer and test knobs (hidden command-line options, ``--help`` does not list them):

=================  ============================  =================================================
field              option                        meaning
=================  ============================  =================================================
``budget``         ``--budget N``                initial node budget per work item (default: 64;
                                                 unlimited-ish with one rank)
``skew``           ``--skew``                    deal every static work item to rank 0, so that
                                                 all balance comes from stealing (benchmarks)
``fail_after``     ``--debug-fail-after R:N``    rank R raises after N search nodes (failure tests)
``node_delay``     ``--debug-node-delay S``      after every item, sleep S seconds per search node it
                                                 explored (a run's length set by its node count)
``write_delay``    ``--debug-write-delay S``     sleep S seconds in the middle of the result write
                                                 (signal-during-write tests)
``write_fail``     ``--debug-write-fail RANK``   that rank's result write fails with ENOSPC after
                                                 its first batch (disk-failure tests)
=================  ============================  =================================================

``--debug-phases`` (command line only, not a field): rank 0 prints the seconds of every phase of
the run on every rank as one JSON line on stderr (:mod:`mpi_enum.phases`; read by
``benchmarks/small_run.py``).

Constants: :data:`DEFAULT_SPILL_BYTES`; :data:`CHECKPOINT_DEFER_SECONDS`, how long a run's
checkpoint journal stays in memory before it is first written (a run that completes sooner never
writes it; a stop always does; see :mod:`mpi_enum.io.checkpoint.session`).

A base module: imports nothing of the package but :mod:`mpi_enum.errors`; importable by every layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from .errors import InputError

# region rows held in memory per rank before spilling to --spill-dir: 16 MB (was 64 MB: a run of
# 10^7 regions then peaked at 1.8x the RSS of one of 10^6, whose rows never filled it; issue 15)
DEFAULT_SPILL_BYTES = 16 << 20
# the checkpoint journal is first written this long after the run's start (or at a due checkpoint,
# a stop, a failure): a kill -9 before then loses at most this much work, which a resume redoes
CHECKPOINT_DEFER_SECONDS = 1.0
MB = 1 << 20


def _positive_number(name, v):
    """None or a finite number > 0 (the message of the command line's --progress and friends)."""
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"--{name.replace('_', '-')} must be a number > 0, got {v!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise InputError(f"--{name.replace('_', '-')} must be a number > 0, got {v}")
    return x


def _delay(option, v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a number >= 0, got {v!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise InputError(f"{option} must be a number >= 0, got {v}")
    return x


def _int(option, v, lowest):
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, float) and not v.is_integer()):
        raise InputError(f"{option} must be an integer >= {lowest}, got {v!r}")
    try:
        n = int(v)
    except ValueError:
        raise InputError(f"{option} must be an integer >= {lowest}, got {v!r}") from None
    if n < lowest:
        raise InputError(f"{option} must be >= {lowest}, got {v}")
    return n


def parse_fail_after(v):
    """``"RANK:NODES"`` or a pair ``(rank, nodes)`` -> ``(rank, nodes)`` ints; None stays None."""
    if v is None:
        return None
    parts = v.split(":") if isinstance(v, str) else list(v) if isinstance(v, (tuple, list)) else None
    if parts is None or len(parts) != 2:
        raise InputError(f"--debug-fail-after: expected RANK:NODES, got {v!r}")
    try:
        r, n = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"--debug-fail-after: expected RANK:NODES (integers), got {v!r}") from None
    if r < 0 or n < 0:
        raise InputError(f"--debug-fail-after: RANK and NODES must be >= 0, got {v!r}")
    return r, n


@dataclass
class RunOptions:
    """Everything a run is configured with besides the network and the domain.

    Constructing one validates it (:meth:`validate`); :func:`dataclasses.replace` does too.
    """

    tol: float = 1e-9
    split_factor: int = 16
    progress: float | None = None
    checkpoint_dir: str | None = None
    checkpoint_interval: float | None = None
    resume: bool = False
    time_limit: float | None = None
    spill_dir: str | None = None
    spill_bytes: int | None = None  # None: DEFAULT_SPILL_BYTES
    force: bool = False
    compress: bool = False
    points: str = "float64"
    # developer / test knobs (hidden command-line options)
    budget: int | None = None
    skew: bool = False
    fail_after: tuple | None = None  # (rank, nodes)
    node_delay: float = 0.0
    write_delay: float = 0.0
    write_fail: int | None = None  # rank

    def __post_init__(self):
        self.validate()

    def validate(self) -> "RunOptions":
        """Check and normalise every field; raise InputError with the CLI's one-line message."""
        try:
            tol = float(self.tol)
        except (TypeError, ValueError):
            raise InputError(f"--tol must be a finite number > 0, got {self.tol!r}") from None
        if not (math.isfinite(tol) and tol > 0):
            raise InputError(f"--tol must be a finite number > 0, got {self.tol}")
        self.tol = tol
        sf = self.split_factor
        if isinstance(sf, bool) or not isinstance(sf, int):
            if isinstance(sf, float) and sf.is_integer():
                sf = int(sf)
            else:
                raise InputError(f"--split-factor must be an integer >= 1, got {sf!r}")
        if sf < 1:
            raise InputError(f"--split-factor must be >= 1, got {sf}")
        self.split_factor = sf
        for opt in ("progress", "time_limit", "checkpoint_interval"):
            setattr(self, opt, _positive_number(opt, getattr(self, opt)))
        self.resume, self.force, self.skew = bool(self.resume), bool(self.force), bool(self.skew)
        self.compress = bool(self.compress)
        if self.points not in ("float64", "none"):
            raise InputError(f"--points must be float64 or none, got {self.points!r}")
        for opt in ("checkpoint_dir", "spill_dir"):
            v = getattr(self, opt)
            if v is not None:
                v = str(v.__fspath__() if hasattr(v, "__fspath__") else v)
                if not v:
                    raise InputError(f"--{opt.replace('_', '-')}: empty path")
                setattr(self, opt, v)
        if self.resume and not self.checkpoint_dir:  # the command line defaults it to OUT.h5.checkpoint
            raise InputError("--resume needs --checkpoint-dir")
        if self.spill_bytes is not None:
            try:
                sb = int(self.spill_bytes)
            except (TypeError, ValueError):
                sb = 0
            if isinstance(self.spill_bytes, bool) or sb < 1:
                raise InputError(f"--spill-mb must be a number > 0, got spill_bytes={self.spill_bytes!r}")
            self.spill_bytes = sb
        if self.budget is not None:
            self.budget = _int("--budget", self.budget, 1)
        self.fail_after = parse_fail_after(self.fail_after)
        self.node_delay = _delay("--debug-node-delay", self.node_delay)
        self.write_delay = _delay("--debug-write-delay", self.write_delay)
        if self.write_fail is not None:
            self.write_fail = _int("--debug-write-fail", self.write_fail, 0)
        return self

    @classmethod
    def field_names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def args_fields(cls, ns) -> dict:
        """The fields given by an ``mpi-enum run`` argparse namespace (not yet validated)."""
        kw = {name: getattr(ns, name) for name in ("tol", "split_factor", "progress", "checkpoint_dir",
                                                    "checkpoint_interval", "resume", "time_limit", "spill_dir",
                                                    "force", "compress", "points", "budget", "skew") if hasattr(ns, name)}
        mb = getattr(ns, "spill_mb", None)
        if mb is not None:
            if not (math.isfinite(mb) and mb > 0):
                raise InputError(f"--spill-mb must be a number > 0, got {mb}")
            kw["spill_bytes"] = max(1, int(mb * MB))
        for name, opt in (("fail_after", "debug_fail_after"), ("node_delay", "debug_node_delay"),
                          ("write_delay", "debug_write_delay"), ("write_fail", "debug_write_fail")):
            v = getattr(ns, opt, None)
            if v is not None:
                kw[name] = v
        return kw

    @classmethod
    def from_args(cls, ns) -> "RunOptions":
        """Build (and validate) from an ``mpi-enum run`` argparse namespace."""
        return cls(**cls.args_fields(ns))

    def replace(self, **changes) -> "RunOptions":
        return replace(self, **changes)

    @property
    def spill_limit(self) -> int:
        """Bytes of region rows held in memory per rank before spilling."""
        return DEFAULT_SPILL_BYTES if self.spill_bytes is None else self.spill_bytes
