"""The compiled kernel :mod:`mpi_enum.engine._kernel`: loaded once, checked against its sources.

The kernel is a CPython extension built at install time (``pip install -e .``, ``./setup.sh``;
CMakeLists.txt with scikit-build-core) from ``mpi_enum/engine/kernel/``.  It is required: there
is no Python fallback.  Importing this module fails with an error naming the fix when

* the extension is missing (a checkout that was never installed), or
* it was built from other sources than those on disk (an edited C file not yet rebuilt: the
  extension carries the sha256 of every source it was compiled from).

The decision constants (``mpi_enum/engine/kernel/decisions.h``) are attributes of the
extension; Python code reads them from here (``native.DROP_MARGIN``, ...), never restates them.

May import: the extension, the standard library.
"""
from __future__ import annotations

import hashlib
import os

_FIX = "run `pip install --no-build-isolation -e .` in the repository (or `./setup.sh`)"

try:
    from . import _kernel
except ImportError as exc:  # never a silent slow path: the kernel is the engine
    raise ImportError(f"the compiled kernel mpi_enum.engine._kernel is missing ({exc}): {_FIX}") from exc

KERNEL_SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel")


def stale_sources(directory: str = KERNEL_SOURCES) -> list:
    """Kernel sources in ``directory`` whose sha256 differs from the one the extension was built
    from (files that are absent, as in an installation without sources, are not compared)."""
    stale = []
    for name, sha in sorted(_kernel.SOURCES_SHA256.items()):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != sha:
                stale.append(name)
    return stale


_stale = stale_sources()
if _stale:
    raise ImportError(f"the compiled kernel mpi_enum.engine._kernel is older than "
                      f"{', '.join('mpi_enum/engine/kernel/' + n for n in _stale)}: {_FIX}")

Kernel = _kernel.Kernel
DECISIONS = dict(_kernel.DECISIONS)  # name -> what it decides (decisions.h)
BALL_CAP = _kernel.BALL_CAP
DROP_MARGIN = _kernel.DROP_MARGIN
BAND_REL = _kernel.BAND_REL
DENSE_LP_MAX_K = _kernel.DENSE_LP_MAX_K
VREP_MAX_K = _kernel.VREP_MAX_K
EMIT_MAX = _kernel.EMIT_MAX
STATS = _kernel.STATS
