"""The geometry datasets of a result file (CONTRACT §4; layout in :mod:`mpi_enum.io.results`):
their collective write and their reader.

:func:`write_geometry` never touches the source file: rank 0 copies it to a temporary name
beside the destination (``.NEW.h5.XXXXXXXX.tmp``), every rank writes its rows of the new
datasets into the copy collectively (MPI-IO, ``mpio-collective``; without MPI-enabled h5py the
ranks write in turn, ``serial-ordered``), and rank 0 renames the copy to the destination at the
very end (the source itself for an in-place ``mpi-enum graph OUT.h5``; an atomic rename).  A
failure on any rank leaves the source as it was and no file at the destination.  Earlier
geometry datasets in the copy are replaced.

May import: :mod:`mpi_enum.io.results`, :mod:`mpi_enum.io.outfile`, :mod:`mpi_enum.io.write_failure`,
numpy, h5py.
"""
from __future__ import annotations

import shutil

import numpy as np

from ..errors import OutputError
from .outfile import install_agreed, io_problem, new_temp, unlink_quietly
from .results import FORMAT_VERSION, _write_rows, h5py_has_mpi
from .write_failure import fail

GEOMETRY_PATHS = ("graph", "vertices", "decision", "regions/linear_region", "regions/volume")


class Part:
    """One dataset: its global shape and dtype, and this rank's rows from ``start``."""

    def __init__(self, name, shape, dtype, start, local):
        self.name, self.shape, self.dtype = name, tuple(int(v) for v in shape), np.dtype(dtype)
        self.start, self.local = int(start), np.asarray(local, dtype=dtype)


def _prepare(f, parts, attrs):
    """Remove earlier geometry, create the datasets and set the attributes (identically on
    every rank: collective metadata)."""
    for p in GEOMETRY_PATHS:
        if p in f:
            del f[p]
    dsets = [f.create_dataset(p.name, p.shape, dtype=p.dtype) for p in parts]
    for key, val in attrs.items():
        f.attrs[key] = val
    # version 1 becomes 2 (the geometry datasets); a version-3 file (non-ReLU units) stays 3
    f.attrs["format_version"] = max(FORMAT_VERSION, int(f.attrs.get("format_version", FORMAT_VERSION)))
    return dsets


def _write_parts(dsets, parts, dxpl=None):
    for ds, p in zip(dsets, parts):
        _write_rows(ds, p.start, p.local if len(p.local) else None, dxpl)


def write_geometry(src, dst, comm, parts, attrs, replace):
    """Collectively write ``parts`` (list of :class:`Part`) and root ``attrs`` into a copy of
    ``src`` that becomes ``dst`` (``comm`` None or of size 1: this process alone).  ``replace``:
    ``dst`` may be replaced (always so in place).  Returns the I/O mode; raises OutputError on
    every rank (or, on several ranks after the file is open, ends the job with exit status 4)."""
    import h5py

    size = comm.size if comm is not None else 1
    rank = comm.rank if comm is not None else 0
    tmp, err = None, None
    if rank == 0:
        try:
            tmp = new_temp(dst)
            shutil.copyfile(src, tmp)
        except OSError as exc:
            unlink_quietly(tmp)
            err = f"{dst}: cannot write the result ({io_problem(exc)}); {src} is unchanged"
    if size > 1:
        tmp, err = comm.bcast((tmp, err), root=0)
    if err is not None:
        raise OutputError(err)
    fail_comm = comm if size > 1 else None
    use_mpio = size > 1 and h5py_has_mpi()
    f = None
    try:
        if use_mpio:
            f = h5py.File(tmp, "r+", driver="mpio", comm=comm)
            dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
            dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
            _write_parts(_prepare(f, parts, attrs), parts, dxpl)
            f.close()
            f = None
        else:
            for r in range(size):
                if rank == r:
                    f = h5py.File(tmp, "r+")
                    dsets = _prepare(f, parts, attrs) if r == 0 else [f[p.name] for p in parts]
                    _write_parts(dsets, parts)
                    f.close()
                    f = None
                if size > 1:
                    comm.Barrier()
        if size > 1:
            comm.Barrier()
    except BaseException as exc:
        fail(fail_comm, f, tmp, dst, exc, f"; {src} is unchanged")
    install_agreed(comm if size > 1 else None, tmp, dst, replace, f"; {src} is unchanged")
    return "mpio-collective" if use_mpio else "serial-ordered"


def read_geometry(path):
    """The graph datasets of a result file as a dict (empty when ``mpi-enum graph`` has not run):
    ``edges``, ``neuron``, ``linear_region``, the root attributes it wrote, and ``decision_*``
    arrays where present.  Raises InputError for a file that is not a result file."""
    from .results import open_result

    out = {}
    with open_result(path) as f:
        if "graph/edges" not in f:
            return out
        out["edges"] = np.asarray(f["graph/edges"][()], np.int64).reshape(-1, 2)
        out["neuron"] = np.asarray(f["graph/neuron"][()], np.int64)
        if "regions/linear_region" in f:
            out["linear_region"] = np.asarray(f["regions/linear_region"][()], np.int64)
        for name in ("segments", "region", "classes"):
            if f"decision/{name}" in f:
                out[f"decision_{name}"] = np.asarray(f[f"decision/{name}"][()])
        for key, val in f.attrs.items():
            if key.startswith("graph_") or key in ("n_linear_regions", "n_affine_maps", "n_edges",
                                                   "decision_boundary_length"):
                out[key] = val.item() if hasattr(val, "item") else val
    return out
