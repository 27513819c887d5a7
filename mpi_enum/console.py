"""Whole-line output for MPI jobs.

Launchers that label lines by rank (``srun --label``, ``mpiexec -prepend-rank``) split what they
read at write boundaries, and ``print`` issues the text and its newline as two writes when
Python is unbuffered (``PYTHONUNBUFFERED=1``, common in batch jobs), so labels then land in the
middle of lines.  :func:`say` writes each line in one call.
"""
import sys


def say(text, file=None):
    f = sys.stdout if file is None else file
    f.write(f"{text}\n")
    f.flush()
