"""The /regions datasets of the result file: their storage (plain, or chunked and compressed) and
the writes of one rank's rows, batch by batch, collective or not (an empty batch joins a
collective write with no selection), with /regions/selector derived from the patterns of a
network with max units.  The layout itself is documented in :mod:`mpi_enum.io.results`.

May import: numpy, h5py.
"""
from __future__ import annotations

import numpy as np

from .buffer import BATCH

CHUNK_BYTES = 1 << 20  # a compressed dataset's chunk: about this many bytes of rows


def _packed(shape, dtype):
    """Chunked, byte-shuffled, gzip-compressed storage for a dataset of ``shape`` (rows of
    about CHUNK_BYTES per chunk): lossless, read back by any HDF5 reader."""
    row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    rows = max(1, min(int(shape[0]), CHUNK_BYTES // max(row, 1)))
    return {"chunks": (rows,) + tuple(shape[1:]), "compression": "gzip", "compression_opts": 4, "shuffle": True}


def _create_regions(f, total, buf, compress=False, n_groups=0, points=True):
    """Create the /regions datasets (identically on every rank in the collective path);
    ``compress``: chunked and compressed (``--compress``); ``n_groups`` > 0: also /regions/selector;
    ``points`` False (``--points none``): no /regions/interior_point (None in its place in the
    returned list, so its rows are not written)."""
    g = f.create_group("regions")
    out = []
    specs = [("pattern", (total, buf.pb), np.uint8), ("interior_point", (total, buf.d), np.float64),
             ("radius", (total,), np.float64), ("affine_rank", (total, buf.L), np.int16)]
    if n_groups:
        specs.append(("selector", (total, int(n_groups)), np.int16))
    for name, shape, dtype in specs:
        if name == "interior_point" and not points:
            out.append(None)
            continue
        out.append(g.create_dataset(name, shape, dtype=dtype, **(_packed(shape, dtype) if compress else {})))
    return out


def _selector_of(net, n_bits):
    """The function pattern rows (packed) -> /regions/selector rows, or None without max groups."""
    if net.groups is None:
        return None
    return lambda P: net.selectors(np.unpackbits(P, axis=1, count=n_bits))


def _write_batches(dsets, offset, buf, dxpl=None, n_calls=None, after_first=None, selector=None):
    """Write this rank's rows from ``offset`` on, one call per batch and dataset.

    Collective writes need the same number of calls on every rank: with ``n_calls`` larger than
    this rank's batch count, the extra calls join with an empty selection.  ``after_first``: a
    test hook called after the first call (or at once when there is none).  ``selector``: the
    function that derives the fifth dataset's rows (/regions/selector) from the patterns.  A
    dataset given as None (the points of ``--points none``) is skipped."""
    it = buf.batches(BATCH)
    pos = offset
    if n_calls is None:
        n_calls = buf.n_batches(BATCH)
    for i in range(n_calls):
        arrs = next(it, None)
        if arrs is not None and selector is not None:
            arrs = tuple(arrs) + (selector(arrs[0]),)
        for ds, a in zip(dsets, arrs if arrs is not None else (None,) * len(dsets)):
            if ds is not None:
                _write_rows(ds, pos, a, dxpl)
        if arrs is not None:
            pos += len(arrs[2])
        if i == 0 and after_first is not None:
            after_first()
    if n_calls == 0 and after_first is not None:
        after_first()
    if pos - offset != buf.count or next(it, None) is not None:  # never a silently short file
        raise RuntimeError(f"wrote {pos - offset} of this rank's {buf.count} region rows")


def _write_rows(ds, start, a, dxpl):
    """Write rows [start, start+len(a)) of ``ds``; ``a`` None or empty joins with no selection."""
    import h5py

    fspace = ds.id.get_space()
    if a is None or len(a) == 0:
        fspace.select_none()
        shape = (1,) + ds.shape[1:]
        mspace = h5py.h5s.create_simple(shape)
        mspace.select_none()
        data = np.zeros(shape, dtype=ds.dtype)
    else:
        a = np.ascontiguousarray(a, dtype=ds.dtype)
        count = (len(a),) + ds.shape[1:]
        fspace.select_hyperslab((start,) + (0,) * (ds.ndim - 1), count)
        mspace = h5py.h5s.create_simple(count)
        data = a
    if dxpl is None:
        ds.id.write(mspace, fspace, data)
    else:
        ds.id.write(mspace, fspace, data, dxpl=dxpl)
