"""Provenance of a result: the versions of everything that made it (the root attribute
``software`` of the result file, CONTRACT §3).  No MPI call other than reading the library's
version string.

Cheap by construction (it runs inside every run's measured wall time): the versions of modules
the run has already imported come from their ``__version__``; those of packages it does not
need (scipy, highspy) from the name of their installed ``NAME-VERSION.dist-info`` folder, never
by importing them (``import scipy`` alone took 50 ms of a 930-region run) nor through
:mod:`importlib.metadata` (its import costs tens of milliseconds), which is only the fallback
where no such folder is found.  The result is cached per process (per communicator kind).
"""
from __future__ import annotations

import os
import platform
import re
import sys

import numpy as np

_cache = {}


def software_versions(comm=None):
    """``{"mpi_enum", "python", "numpy", "h5py", "hdf5", "h5py_mpi", "scipy", "highspy"}`` and,
    with a communicator, ``"mpi4py"`` and ``"mpi_library"`` (a package that is not installed is
    left out).  A fresh dict each call; computed once per process."""
    key = comm is not None
    if key not in _cache:
        _cache[key] = _collect(key)
    return dict(_cache[key])


def _collect(with_mpi):
    import h5py

    info = {"mpi_enum": _version(), "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "h5py_mpi": bool(h5py.get_config().mpi)}
    for name in ("scipy", "highspy"):
        v = installed_version(name)
        if v is not None:
            info[name] = v
    if with_mpi:
        from mpi4py import MPI

        import mpi4py

        info["mpi4py"] = mpi4py.__version__
        info["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0]
    return info


def installed_version(name):
    """The installed version of the distribution ``name`` (None if it is not installed): its
    module's ``__version__`` when already imported, else its ``.dist-info`` folder on
    ``sys.path``, else :func:`importlib.metadata.version`."""
    mod = sys.modules.get(name)
    v = getattr(mod, "__version__", None) if mod is not None else None
    if isinstance(v, str):
        return v
    want = re.sub(r"[-_.]+", "_", name).lower()
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in names:
            if entry.endswith(".dist-info"):
                dist, _, ver = entry[:-len(".dist-info")].partition("-")
                if ver and re.sub(r"[-_.]+", "_", dist).lower() == want:
                    return ver
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed, or unreadable metadata: left out, as before
        return None


def _version():
    from .._version import __version__

    return __version__
