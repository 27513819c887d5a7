"""Build and load the C kernel (``mpi_enum/kernel/enum_kernel.c``) with ctypes.

The shared library is compiled with the system C compiler (``$CC`` or ``cc``):

    python -m mpi_enum.kernel_c            # build (or rebuild if stale) and print the path

On import of :func:`load` the library is looked up next to this file
(``mpi_enum/_enum_kernel.<hash>.so``); if it is missing it is compiled there, or, when the
package directory is not writable, into ``$MPI_ENUM_CACHE`` / ``~/.cache/mpi_enum``.  The file
name carries a hash of the source, so a stale library is never loaded.  Compilation writes to a
temporary file and renames it, so concurrent MPI ranks cannot see a half-written library.
If no compiler is available :func:`load` returns None and the engine uses the LP kernel.
Set ``MPI_ENUM_NO_CKERNEL=1`` to disable the C kernel.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent / "kernel" / "enum_kernel.c"
CFLAGS = ["-O2", "-fPIC", "-shared", "-std=c99", "-fno-strict-aliasing"]
VERSION = 3

LP_CB = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int, ctypes.POINTER(ctypes.c_double),
                         ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                         ctypes.c_double, ctypes.POINTER(ctypes.c_double))

_lib = None
_tried = False
_error = None


def _tag() -> str:
    h = hashlib.sha256(SRC.read_bytes())
    h.update(" ".join(CFLAGS).encode())
    return h.hexdigest()[:16]


def _candidates():
    name = f"_enum_kernel.{_tag()}.so"
    yield Path(__file__).resolve().parent / name
    cache = os.environ.get("MPI_ENUM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mpi_enum")
    yield Path(cache) / name


def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc.split()[0]):
            return cc.split()
    return None


def build(verbose=False) -> Path:
    """Compile the kernel if no up-to-date library exists; return its path (raises on failure)."""
    for p in _candidates():
        if p.exists():
            return p
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC) to build the mpi_enum C kernel")
    errors = []
    for p in _candidates():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=str(p.parent))
            os.close(fd)
        except OSError as exc:
            errors.append(f"{p.parent}: {exc}")
            continue
        cmd = cc + CFLAGS + ["-o", tmp, str(SRC), "-lm"]
        if verbose:
            print(" ".join(cmd), file=sys.stderr)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            os.unlink(tmp)
            raise RuntimeError(f"compiling {SRC} failed:\n{res.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, p)
        return p
    raise RuntimeError("cannot write the C kernel library: " + "; ".join(errors))


def _declare(lib):
    P = ctypes.c_void_p
    dp = ctypes.POINTER(ctypes.c_double)
    ip = ctypes.POINTER(ctypes.c_int)
    ub = ctypes.POINTER(ctypes.c_ubyte)
    lib.kc_version.restype = ctypes.c_int
    lib.kc_new.restype = P
    lib.kc_new.argtypes = [ctypes.c_int, ctypes.c_int, ip, dp, dp, dp, ctypes.c_int, dp, dp, ctypes.c_int,
                           dp, dp, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                           ctypes.c_int, LP_CB]
    lib.kc_free.argtypes = [P]
    lib.kc_free.restype = None
    lib.kc_start.argtypes = [P, ctypes.c_int, ub, dp, ctypes.c_double]
    lib.kc_start.restype = ctypes.c_int
    lib.kc_run.argtypes = [P, ctypes.c_longlong]
    lib.kc_run.restype = ctypes.c_int
    lib.kc_frontier.argtypes = [P, ip, ub, dp, dp]
    lib.kc_frontier.restype = ctypes.c_int
    for f in ("kc_pending", "kc_nemit"):
        getattr(lib, f).argtypes = [P]
        getattr(lib, f).restype = ctypes.c_int
    lib.kc_ebits.argtypes = [P]
    lib.kc_ebits.restype = ub
    lib.kc_ey.argtypes = [P]
    lib.kc_ey.restype = dp
    lib.kc_er.argtypes = [P]
    lib.kc_er.restype = dp
    lib.kc_erank.argtypes = [P]
    lib.kc_erank.restype = ip
    lib.kc_stats.argtypes = [P, ctypes.POINTER(ctypes.c_longlong)]
    lib.kc_stats.restype = None
    lib.kc_lp.argtypes = [P, ctypes.c_int, dp, dp, dp, ctypes.c_double, dp, dp]
    lib.kc_lp.restype = ctypes.c_double
    return lib


def load():
    """The loaded library, or None (no compiler, disabled, or build failure: see ``error()``)."""
    global _lib, _tried, _error
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("MPI_ENUM_NO_CKERNEL"):
        _error = "disabled by MPI_ENUM_NO_CKERNEL"
        return None
    try:
        path = build()
        lib = _declare(ctypes.CDLL(str(path)))
        if lib.kc_version() != VERSION:
            raise RuntimeError(f"kernel version {lib.kc_version()} != {VERSION}")
        _lib = lib
    except Exception as exc:  # no compiler, read-only install, ...: the LP kernel still works
        _error = f"{type(exc).__name__}: {exc}"
        _lib = None
    return _lib


def error():
    return _error


if __name__ == "__main__":
    print(build(verbose=True))
