"""Errors that the command line turns into a one-line message and an exit code (CONTRACT §2).

* :class:`InputError`: bad input or bad usage, exit 2.
* :class:`OutputError`: the result, a scratch file or the checkpoint could not be written (disk
  full, quota, I/O error, file-size limit), exit 4.  The output path is never left holding a
  partial file, and a checkpoint stays usable (its journal is append-only and checksummed).
"""


class InputError(Exception):
    """Bad input or bad usage: the CLI prints ``mpi-enum: error: <message>`` and exits 2.

    The message must name the offending file (or option) and the problem.
    """


class OutputError(Exception):
    """A file of the run could not be written: the CLI prints one line and exits 4.

    The message names the file (or folder) and the problem (e.g. "No space left on device")."""


EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_IO = 4
