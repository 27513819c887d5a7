"""The parallel layer: the only owner of the communicator (apart from the collective I/O it
hands the communicator to).

* :mod:`.driver`: static first-layer partition, budgeted depth-first search per rank,
  checkpoint commits, termination;
* :mod:`.rma`: the work queues (MPI one-sided windows; a serial stand-in for one rank);
* :mod:`.stopper`: signals, ``--time-limit`` and checkpoint timing (flags only).

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.engine`, :mod:`mpi_enum.io`, mpi4py (through the
communicator passed in).

Importing this package is cheap: the driver (and with it the engine and numpy) loads on first use,
so that ``mpi-enum run`` installs the stop-signal handlers of :mod:`.stopper` within a few
milliseconds of starting (a signal that came before would kill the rank).
"""

__all__ = ["run_dynamic", "run_parallel", "top_partition"]


def __getattr__(name):
    if name in __all__:
        from . import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
