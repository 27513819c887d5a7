"""Provenance of a result: the versions of everything that made it (the root attribute
``software`` of the result file, CONTRACT §3).  No MPI call other than reading the library's
version string."""
from __future__ import annotations

import platform

import numpy as np


def software_versions(comm=None):
    import h5py

    info = {"mpi_enum": _version(), "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "h5py_mpi": bool(h5py.get_config().mpi)}
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        info["highspy"] = version("highspy")
    except Exception:
        pass
    if comm is not None:
        from mpi4py import MPI

        import mpi4py

        info["mpi4py"] = mpi4py.__version__
        info["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0]
    return info


def _version():
    from .._version import __version__

    return __version__
