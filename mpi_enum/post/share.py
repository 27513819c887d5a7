"""A process's share of a result's rows and the reductions over the job, for post-processing
commands that run on several ranks (``mpiexec -n P mpi-enum verify``): :class:`Share` (which
chunks and buckets are this rank's, sums, minima, merges), and :func:`run_on_every_rank` (the
command's failures turned into exit statuses without leaving a rank waiting).

May import: numpy.  No MPI import: the communicator is handed in (None: one process).
"""
from __future__ import annotations

import sys
import time
import traceback

import numpy as np

from ..console import abort_job, say
from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError


class Share:
    """This process's share of the rows and the reductions over the job (``comm`` None: serial).

    The row-by-row checks and the bucket pass are split (chunks and buckets by index modulo the
    job's size); the rest (layout of small datasets, the samples, the volumes of small results)
    is repeated on every rank.  Every rank returns the same checks."""

    def __init__(self, comm):
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None
        self.part = (self.comm.Get_rank(), self.comm.Get_size()) if self.comm else None

    def ticker(self, every, name):
        """A progress reporter (:class:`_Ticker`); ``every`` None or 0: silent."""
        return _Ticker(every, name, self.part[0] if self.part else 0, self.part[1] if self.part else 1)

    def sum(self, *vals):
        if self.comm is None:
            return vals if len(vals) > 1 else vals[0]
        out = tuple(self.comm.allreduce(v) for v in vals)
        return out if len(out) > 1 else out[0]

    def sum_list(self, vals):
        if self.comm is None:
            return list(vals)
        return [int(v) for v in self.comm.allreduce(np.asarray(vals, np.int64))]

    def min(self, v):
        if self.comm is None:
            return v
        return min(self.comm.allgather(v))

    def first(self, d):
        """Merge {key: first bad row} over the ranks (the smallest row of each key)."""
        if self.comm is None:
            return d
        out = {}
        for part in self.comm.allgather(d):
            for key, row in part.items():
                out[key] = min(row, out.get(key, row))
        return out

    def any(self, mask):
        if self.comm is None:
            return mask
        return self.comm.allreduce(np.asarray(mask, np.int64)) > 0  # element-wise sum

    def concat(self, items):
        if self.comm is None:
            return items
        return [x for part in self.comm.allgather(items) for x in part]


class _Ticker:
    """Progress lines of a long post-processing pass on stderr: rank 0 only, at most one every
    ``every`` seconds; rows are rank 0's share times the ranks (the shares are equal chunks)."""

    def __init__(self, every, name, rank, size):
        self.every, self.name, self.on, self.size = every, name, bool(every) and rank == 0, size
        self.t0 = self.last = time.perf_counter()
        self.done = 0

    def say(self, what):
        if self.on:
            say(f"mpi-enum {self.name}: {time.perf_counter() - self.t0:8.1f} s  {what}", sys.stderr)

    def rows(self, n_chunk, n_total):
        now = time.perf_counter()
        if self.done == 0:  # the rate counts from the first chunk of this pass
            self.t_rows = self.last = now
        self.done += n_chunk
        if self.on and now - self.last >= self.every:
            self.last = now
            est = min(self.done * self.size, n_total)
            rate = est / max(now - self.t_rows, 1e-9)
            left = (n_total - est) / max(rate, 1e-9)
            self.say(f"rows checked ~{est} of {n_total}  {rate:.0f} rows/s  ~{left:.0f} s left")


def run_on_every_rank(fn, comm):
    """``fn()`` on every rank of ``comm``: bad input is one line from rank 0 and exit 2 on every
    rank; an unexpected error on one rank prints its traceback and aborts the job (with one
    rank it propagates), so no rank waits forever in a reduction."""
    try:
        return fn()
    except InputError as exc:
        if comm.Get_rank() == 0:
            say(f"mpi-enum: error: {exc}", sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except BaseException:
        if comm.Get_size() == 1:
            raise
        say(f"mpi-enum: rank {comm.Get_rank()}: unexpected error, aborting the job:", sys.stderr)
        traceback.print_exc()
        abort_job(comm, 1)
        return 1
