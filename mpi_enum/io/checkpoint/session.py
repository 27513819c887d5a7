"""The driver's whole interface to checkpoints: :class:`Checkpoint` (collective setup, commit,
flush, close); a disabled shell without a directory."""
from __future__ import annotations


import numpy as np

from ...errors import InputError
from ..rows import Recorder
from .journal import Journal
from .layout import CheckpointError, Shape, check_checkpoint_dir, make_meta, start_generation
from .resume import load_checkpoint

# ----------------------------------------------------------------------------- driver helpers

class Checkpoint:
    """The driver's whole interface (see the module docstring).  Disabled without a directory."""

    def __init__(self, problem, rank=0, size=1, ckdir=None, generation=None, roots=(), resume=None,
                 journal=None):
        self.problem = problem
        self.shape = Shape.of(problem)
        self.rank, self.size = rank, size
        self.dir = ckdir
        self.generation = generation
        self.roots = list(roots)
        self.resume = resume
        self.journal = journal

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    @classmethod
    def setup(cls, comm, problem, ckdir, engine, resume=False) -> "Checkpoint":
        """Collective (``comm`` may be None for a serial run).  Rank 0 loads or creates the
        checkpoint and starts a new generation; every rank opens its own journal.  Raises
        InputError (CheckpointError) on every rank when the checkpoint cannot be used."""
        rank = comm.rank if comm is not None else 0
        size = comm.size if comm is not None else 1
        if not ckdir:
            return cls(problem, rank, size, roots=[engine.root_item()])
        shape = Shape.of(problem)
        payload = None
        exc_local = None
        if rank == 0:
            try:
                meta = make_meta(problem, size)
                check_checkpoint_dir(ckdir, meta, resume)
                res = load_checkpoint(ckdir, meta)
                if res.complete:
                    roots, gen = [], None
                else:
                    roots = res.open_items if not res.fresh else [engine.root_item()]
                    gen = res.generation
                    start_generation(ckdir, gen, meta, roots, shape, res.frozen)
                payload = ("ok", res, roots, gen)
            except InputError as exc:
                payload = ("input", str(exc), type(exc) is CheckpointError, None)
            except BaseException as exc:  # a bug: tell the others, then raise it here
                payload = ("bug", f"rank 0 failed while loading {ckdir}: {exc!r}", None, None)
                exc_local = exc
        if comm is not None and size > 1:
            payload = comm.bcast(payload, root=0)
        status, a, b, c = payload
        if status == "input":
            raise (CheckpointError if b else InputError)(a)
        if status == "bug":
            if exc_local is not None:
                raise exc_local
            raise RuntimeError(a)
        res, roots, gen = a, b, c
        journal = Journal(ckdir, gen, rank, shape) if gen is not None else None
        if comm is not None and size > 1:
            comm.Barrier()  # every journal exists before anyone can steal
        return cls(problem, rank, size, ckdir, gen, roots, res, journal)

    # -- before the work
    def feed_old_regions(self, buf) -> int:
        """Append this rank's share of earlier generations' committed regions to ``buf``."""
        if self.resume is None:
            return 0
        return self.resume.feed(buf, self.rank, self.size)

    def base_layer_counts(self) -> np.ndarray:
        """Earlier generations' layer counts on rank 0 (zeros elsewhere): add to the new ones."""
        if self.resume is None or self.rank != 0:
            return np.zeros(self.shape.L, np.int64)
        return self.resume.layer_counts.copy()

    @property
    def old_regions(self) -> int:
        return 0 if self.resume is None else self.resume.n_regions

    @property
    def notes(self) -> list:
        return [] if self.resume is None else list(self.resume.notes)

    # -- during the work
    def recorder(self, buf=None) -> Recorder:
        return Recorder(self.problem.domain, self.shape.row_dtype, buf, keep=self.journal is not None)

    def done(self, item, children, recorder=None, layer_counts_delta=None, stats_delta=None):
        """Commit a finished item (or list of items): its rows (taken from ``recorder``), its
        children (the frontier) and deltas.  Call before publishing the children to others."""
        rows = recorder.take() if recorder is not None else None
        if self.journal is None:
            if self.enabled and (rows is not None and len(rows) or children):
                raise RuntimeError("Checkpoint.done: the checkpoint is complete; there is nothing to explore")
            return
        self.journal.item_done(item, children, rows, layer_counts_delta, stats_delta)

    def flush(self, fsync=True):
        if self.journal is not None:
            self.journal.flush(fsync)

    def close(self):
        if self.journal is not None:
            self.journal.close()
            self.journal = None
