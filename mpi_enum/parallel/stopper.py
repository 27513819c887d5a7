"""Stop requests (signals, ``--time-limit``) and the ``--checkpoint-interval`` clock.

A :class:`Stopper` never interrupts the enumeration itself: the signal handlers only set a flag,
and the driver polls :meth:`Stopper.should_stop` between work items (the engine returns at the
next node-budget boundary, so the latency of a stop is one budget of nodes).  The driver then
journals the frontier of the interrupted item, flushes the journals with fsync, writes a partial
result (``complete = false``) and exits 3 (CONTRACT §2).

* ``SIGTERM`` (batch systems before a kill), ``SIGUSR1`` (e.g. ``sbatch --signal=USR1@120``)
  and ``SIGINT`` (Ctrl-C) request a stop.  A *second* ``SIGINT`` raises ``KeyboardInterrupt``
  (the impatient user's hard stop; the journal stays consistent, only uncommitted work is lost).
* ``--time-limit S``: stop once the elapsed time exceeds ``S - margin`` with
  ``margin = min(30 s, 10% of S)``, leaving the margin for the journal flush and the result file.
* ``--checkpoint-interval S``: :meth:`Stopper.due_checkpoint` is true once every ``S`` seconds
  (default :data:`DEFAULT_CHECKPOINT_INTERVAL`); the driver then calls ``flush(fsync=True)``.

The handlers are Python-level handlers (run by the interpreter in the main thread between
bytecodes), they only assign attributes, so they are safe whatever the driver is doing.  Ranks
should agree on the stop (any rank stopping stops all) through the driver's termination
protocol; correctness of the checkpoint never depends on that agreement, only liveness does.

Usage::

    stopper = Stopper(time_limit=args.time_limit, checkpoint_interval=args.checkpoint_interval)
    try:
        while work:
            ...
            if stopper.due_checkpoint():
                ck.flush()
            if stopper.should_stop():      # stopper.reason says why
                break
    finally:
        stopper.restore()                  # put the previous handlers back
"""
from __future__ import annotations

import signal
import threading
import time

DEFAULT_CHECKPOINT_INTERVAL = 60.0
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


def time_limit_margin(limit: float) -> float:
    """Seconds kept free before a ``--time-limit``: ``min(30, 10% of the limit)``."""
    return min(30.0, 0.1 * float(limit))


class Stopper:
    """Flag-only signal handlers plus the time-limit and checkpoint-interval clocks."""

    def __init__(self, time_limit=None, checkpoint_interval=None, *, start=None, clock=time.monotonic,
                 signals=STOP_SIGNALS, install=True):
        self.clock = clock
        self.start = clock() if start is None else float(start)
        self.time_limit = None if time_limit is None else float(time_limit)
        self.deadline = (None if self.time_limit is None
                         else self.start + self.time_limit - time_limit_margin(self.time_limit))
        self.interval = float(checkpoint_interval) if checkpoint_interval else DEFAULT_CHECKPOINT_INTERVAL
        self._last_ck = self.start
        self.reason = ""  # "" while running; e.g. "signal SIGTERM" or "time limit 3600 s"
        self._stop = False
        self._sigint_count = 0
        self._old = {}
        if install:
            self.install(signals)

    def restart_clock(self):
        """Start the time-limit and checkpoint clocks now (the handlers stay): the command line
        installs the handlers before MPI starts but counts ``--time-limit`` from the run's start."""
        self.start = self.clock()
        self._last_ck = self.start
        if self.time_limit is not None:
            self.deadline = self.start + self.time_limit - time_limit_margin(self.time_limit)

    # ------------------------------------------------------------------ signals
    def install(self, signals=STOP_SIGNALS):
        """Install the handlers (main thread only; elsewhere this is a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in signals:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):  # not allowed here (embedded interpreter, ...)
                pass

    def restore(self):
        """Put back the handlers that were there before :meth:`install`."""
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._old = {}

    def _handler(self, signum, frame):  # flag only
        if signum == signal.SIGINT:
            self._sigint_count += 1
            if self._sigint_count > 1:
                raise KeyboardInterrupt
        if not self._stop:
            self._stop = True
            try:
                self.reason = "signal " + signal.Signals(signum).name
            except ValueError:
                self.reason = f"signal {signum}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False

    # ------------------------------------------------------------------ polling
    def request(self, reason="requested"):
        """Request a stop from code (e.g. another rank asked for one)."""
        if not self._stop:
            self._stop = True
            self.reason = str(reason)

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self):
        """Seconds until the time-limit stop (None without a limit)."""
        return None if self.deadline is None else self.deadline - self.clock()

    def should_stop(self) -> bool:
        """True once a signal arrived, :meth:`request` was called or the time limit is near."""
        if not self._stop and self.deadline is not None and self.clock() > self.deadline:
            self._stop = True
            self.reason = f"time limit {self.time_limit:g} s"
        return self._stop

    def due_checkpoint(self) -> bool:
        """True (and the interval restarts) once ``checkpoint_interval`` seconds have passed."""
        now = self.clock()
        if now - self._last_ck >= self.interval:
            self._last_ck = now
            return True
        return False
