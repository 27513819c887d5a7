"""What a failed result write does, and the test hooks that make one (for
:func:`mpi_enum.io.results.write_result`): :func:`fail` (alone: OutputError and no file left;
with other ranks: one line on stderr, the temporary file removed, MPI_Abort with exit status 4,
so that no rank waits forever in a collective HDF5 call), :class:`Agreed` (an error every rank
knows), :func:`injected` (``--debug-write-fail``) and :func:`pause_for_tests` (``--debug-write-delay``).

May import: :mod:`mpi_enum.errors`, :mod:`mpi_enum.console`, :mod:`.outfile`.
"""
from __future__ import annotations

import errno
import os
import time

from ..errors import OutputError
from .outfile import io_problem, unlink_quietly


def pause_for_tests(delay):
    """Test hook (``--debug-write-delay S``): sleep S seconds in the middle of the write, so
    that tests can deliver a signal while the file is being written."""
    if delay:
        time.sleep(float(delay))


class Agreed(Exception):
    """An error that every rank knows (rank 0 found it and broadcast it): rank 0 reports it."""

    def __init__(self, exc):
        super().__init__(str(exc))
        self.exc = exc


def fail(comm, f, tmp, path, exc, note=""):
    """A write failed on this rank.  Alone (or without MPI): close quietly, remove the temporary
    file and raise OutputError.  With other ranks, which may be waiting inside a collective HDF5
    call that can never complete: remove the temporary file, say why in one line and abort the
    whole job (MPI_Abort) with exit status 4 (a bug: 1)."""
    from ..errors import EXIT_IO

    agreed = isinstance(exc, Agreed)
    exc = exc.exc if agreed else exc
    io_like = isinstance(exc, (OSError, RuntimeError))
    msg = (f"{path}: cannot write the result ({io_problem(exc)}); no file was left at {path}"
           if io_like else f"unexpected error while writing {path}: {exc!r}")
    msg += note
    unlink_quietly(tmp)
    if comm is not None and comm.size > 1:
        import sys
        import traceback

        from ..console import abort_job, say

        if agreed and comm.rank != 0:
            time.sleep(10)  # rank 0 reports it and aborts the job (this rank with it)
        elif not io_like:
            traceback.print_exc()
        say(f"mpi-enum: rank {comm.rank}: error: {msg}; aborting the job", sys.stderr)
        abort_job(comm, EXIT_IO if io_like else 1)
    if f is not None:
        try:
            f.close()
        except Exception:
            pass
    if not io_like:
        raise exc
    raise OutputError(msg) from None


def injected(rank, fail_rank, tmp):
    """Test hook (``--debug-write-fail RANK``): that rank's write fails as on a full disk."""
    if fail_rank is not None and rank == fail_rank:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected by --debug-write-fail)", tmp)
