"""mpi_enum: exact, parallel enumeration of the activation regions of ReLU networks.

The layers, bottom up (each imports only those below it; ``tests/test_layout.py`` checks it):

* :mod:`mpi_enum.model`: network, domain, problem (pure data, no I/O, no MPI);
* :mod:`mpi_enum.loaders`: network files (npz, nnet, onnx, torch) and domain options;
* :mod:`mpi_enum.engine`: the search (compiled kernel, LP fallback, work items; no MPI);
* :mod:`mpi_enum.io`: the result file (layout, collective writer, the only reader) and the
  checkpoint journal;
* :mod:`mpi_enum.parallel`: the driver, work queues and stopper: the owner of the communicator;
* :mod:`mpi_enum.post`: verify, analyze, plot, convert;
* :mod:`mpi_enum.api`: the Python API, :func:`mpi_enum.enumerate` and :func:`mpi_enum.open`
  (and the run pipeline the command line shares);
* :mod:`mpi_enum.cli`: the ``mpi-enum`` command.

Base modules, importable by every layer: :mod:`mpi_enum.errors`, :mod:`mpi_enum.options`
(:class:`~mpi_enum.options.RunOptions`, the one configuration object), :mod:`mpi_enum.console`.

``import mpi_enum`` stays cheap (no numpy, h5py or mpi4py): ``enumerate``, ``open``, ``Result``
and ``RunOptions`` are loaded on first use.  They are not in ``__all__``, so that
``from mpi_enum import *`` does not hide the builtins ``enumerate`` and ``open``.
"""
from ._version import __version__

__all__ = ["__version__"]

_LAZY = {"enumerate": "api", "open": "api", "Result": "api", "RunOptions": "options"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'mpi_enum' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
