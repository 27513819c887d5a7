"""Whole-line output for MPI jobs.

Launchers that label lines by rank (``srun --label``, ``mpiexec -prepend-rank``) split what they
read at write boundaries, and ``print`` issues the text and its newline as two writes when
Python is unbuffered (``PYTHONUNBUFFERED=1``, common in batch jobs), so labels then land in the
middle of lines.  :func:`say` writes each line in one call.  :func:`abort_job` ends an MPI job
after a rank's last lines have had time to reach the launcher.
"""
import sys
import time

#: seconds between a rank's last lines and its MPI_Abort: MPICH's launcher tears the job down at
#: the abort and can drop what it has not yet forwarded from that rank's pipes (seen at 3 ranks:
#: exit 4 with the rank's one-line error missing from stderr)
ABORT_GRACE = 0.5


def say(text, file=None):
    f = sys.stdout if file is None else file
    f.write(f"{text}\n")
    f.flush()


def abort_job(comm, code):
    """Flush this rank's output, wait ABORT_GRACE seconds for the launcher to forward it, then
    ``comm.Abort(code)`` (every rank of the job ends)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE)
    comm.Abort(code)
