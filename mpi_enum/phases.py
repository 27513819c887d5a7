"""Where a run's wall time goes: :class:`Phases`, named intervals measured with ``perf_counter``.

A run makes one :class:`Phases` at its start (the command line: after the imports and MPI_Init,
see README "The result file"); the layers it passes through add their own intervals to it
(``with phases("write: rows"): ...``) and the command line prints them on request
(``--debug-phases``, a developer option: one JSON line on stderr, which
``benchmarks/small_run.py`` reads).  :data:`NO_PHASES` is the do-nothing stand-in that every
function taking a ``phases`` argument defaults to, so measuring costs nothing when nobody asks.

A base module: imports nothing of the package; importable by every layer.
"""
from __future__ import annotations

import time
from contextlib import contextmanager


class Phases:
    """Seconds per named phase of one rank's run, from ``start`` (a ``perf_counter`` value)."""

    def __init__(self, start=None):
        self.start = time.perf_counter() if start is None else float(start)
        self.seconds = {}  # name -> seconds, in the order the phases first ran
        self.wall = None  # the run's reported wall time, once known (rank 0 of the command line)

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    @contextmanager
    def __call__(self, name):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def elapsed(self) -> float:
        """Seconds since ``start``."""
        return time.perf_counter() - self.start

    def as_dict(self) -> dict:
        return dict(self.seconds)


class _NoPhases(Phases):
    """Measures nothing (the default of every ``phases`` argument)."""

    def __init__(self):
        super().__init__(0.0)

    def add(self, name, seconds):
        pass

    @contextmanager
    def __call__(self, name):
        yield


NO_PHASES = _NoPhases()
