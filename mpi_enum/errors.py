"""Errors that the command line turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad input or bad usage: the CLI prints ``mpi-enum: error: <message>`` and exits 2.

    The message must name the offending file (or option) and the problem.
    """


EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
