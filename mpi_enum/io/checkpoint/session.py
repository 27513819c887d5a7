"""The driver's whole interface to checkpoints: :class:`Checkpoint` (collective setup, commit,
flush, close); a disabled shell without a directory.

Deferred checkpoints (``defer=S``, what ``mpi-enum run`` uses): rank 0 still validates the
folder and starts the generation (roots.npy and meta.json, not yet fsynced), but each rank's
journal holds its commits in memory (:class:`~.journal.Journal` ``defer``) until the first of:
``S`` seconds after the setup or ``DEFER_BYTES`` of commits (:meth:`Checkpoint.done`), a due
checkpoint (:meth:`Checkpoint.flush`), the end of a stopped or failed run
(:meth:`Checkpoint.close`).  Only then are the files created, written and (flush, close)
fsynced.  A run that completes sooner never writes its journal: with ``ephemeral`` (the
default ``OUT.h5.checkpoint``, removed once the result is written) its commits are dropped;
otherwise they are written at the close, as always.  A stop (signal, time limit) always leaves
the whole checkpoint on disk.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from ...errors import InputError
from ..rows import Recorder
from .journal import Journal
from .layout import CheckpointError, Shape, check_checkpoint_dir, make_meta, start_generation, sync_generation
from .resume import load_checkpoint

DEFER_BYTES = 16 << 20  # deferred commits held in memory per rank before they are written anyway

# ----------------------------------------------------------------------------- driver helpers

def _trim_heap():
    """Hand the heap that the replay freed back to the OS (glibc ``malloc_trim``), so that it is
    not held for the rest of a long resumed run; a no-op where there is no such call."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Checkpoint:
    """The driver's whole interface (see the module docstring).  Disabled without a directory."""

    def __init__(self, problem, rank=0, size=1, ckdir=None, generation=None, roots=(), resume=None,
                 journal=None, defer=None, ephemeral=False):
        self.problem = problem
        self.shape = Shape.of(problem)
        self.rank, self.size = rank, size
        self.dir = ckdir
        self.generation = generation
        self.roots = list(roots)
        self.resume = resume
        self.journal = journal
        self.ephemeral = bool(ephemeral)
        # deferred: the journal is written from this time on (monotonic clock); the generation's
        # files (rank 0) still need their fsync
        self._write_from = None if defer is None else time.monotonic() + float(defer)
        self._gen_unsynced = defer is not None and rank == 0 and generation is not None
        self.written = journal is not None and not journal.deferred  # the journal files exist

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    @classmethod
    def setup(cls, comm, problem, ckdir, engine, resume=False, defer=None, ephemeral=False) -> "Checkpoint":
        """Collective (``comm`` may be None for a serial run).  Rank 0 loads or creates the
        checkpoint and starts a new generation; every rank opens its own journal.  Raises
        InputError (CheckpointError) on every rank when the checkpoint cannot be used.
        ``defer``, ``ephemeral``: see the module docstring (None: every commit is written at
        once, and everything is fsynced at the start)."""
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
                    start_generation(ckdir, gen, meta, roots, shape, res.frozen, sync=defer is None)
                payload = ("ok", res, roots, gen)
            except InputError as exc:
                payload = ("input", str(exc), type(exc) is CheckpointError, None)
            except BaseException as exc:  # a bug: tell the others, then raise it here
                payload = ("bug", f"rank 0 failed while loading {ckdir}: {exc!r}", None, None)
                exc_local = exc
        if comm is not None and size > 1:
            payload = comm.bcast(payload, root=0)
        if rank == 0 and resume:
            _trim_heap()
        status, a, b, c = payload
        if status == "input":
            raise (CheckpointError if b else InputError)(a)
        if status == "bug":
            if exc_local is not None:
                raise exc_local
            raise RuntimeError(a)
        res, roots, gen = a, b, c
        journal = Journal(ckdir, gen, rank, shape, defer=defer is not None) if gen is not None else None
        if comm is not None and size > 1 and defer is None:
            comm.Barrier()  # every journal exists before anyone can steal
        return cls(problem, rank, size, ckdir, gen, roots, res, journal, defer, ephemeral)

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
        if not self.written and (time.monotonic() >= self._write_from or self.journal.pending_bytes > DEFER_BYTES):
            self._write()

    def _write(self):
        """A deferred journal: create its files and write what it holds (no fsync)."""
        self.journal.materialize()
        self.written = True

    def _sync_generation(self):
        if self._gen_unsynced:
            self._gen_unsynced = False
            sync_generation(self.dir, self.generation)

    def flush(self, fsync=True):
        if self.journal is not None:
            if fsync:
                self._sync_generation()
            self.journal.flush(fsync)
            self.written = True

    def close(self, complete=False):
        """End of the run on this rank: write and fsync the journal (on every exit path), except
        that a deferred, unwritten journal of an ``ephemeral`` checkpoint is dropped when the run
        is ``complete`` (the same on every rank: after the ranks agreed)."""
        if self.journal is not None:
            journal, self.journal = self.journal, None
            if complete and self.ephemeral and journal.deferred:
                journal.close(discard=True)
                return
            self._sync_generation()
            journal.close()
            self.written = True
