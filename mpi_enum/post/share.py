"""A process's share of a result's rows and the reductions over the job, for post-processing
commands that run on several ranks (``mpiexec -n P mpi-enum verify``): :class:`Share` (which
chunks and buckets are this rank's, sums, minima, merges), and :func:`run_on_every_rank` (the
command's failures turned into exit statuses without leaving a rank waiting).

May import: numpy.  No MPI import: the communicator is handed in (None: one process).
"""
from __future__ import annotations

import sys
import traceback

import numpy as np

from ..console import say
from ..errors import EXIT_BAD_INPUT, EXIT_OK, InputError


class Share:
    """This process's share of the rows and the reductions over the job (``comm`` None: serial).

    The row-by-row checks and the bucket pass are split (chunks and buckets by index modulo the
    job's size); the rest (layout of small datasets, the samples, the volumes of small results)
    is repeated on every rank.  Every rank returns the same checks."""

    def __init__(self, comm):
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None
        self.part = (self.comm.Get_rank(), self.comm.Get_size()) if self.comm else None

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
        sys.stderr.flush()
        comm.Abort(1)
        return 1
