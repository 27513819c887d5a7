"""Group-by-pattern-prefix computations in bounded memory: the result's rows split into buckets
by a hash of their first-layer pattern.

Every question that ``verify`` and ``analyze`` ask of the patterns as a whole (are they unique,
how many distinct prefixes has each layer, which layer-l region is the parent of which
layer-(l+1) region) only ever compares rows with the same first-layer pattern: a layer-l prefix
extends the first-layer one.  So :func:`buckets` hashes each row's first-layer bits to one of B
buckets, streams the file (:meth:`mpi_enum.io.reader.Result.chunks`) into one scratch file per
bucket and column (``TMPDIR``), and yields the buckets one at a time; the answers are sums over
buckets.  A file of at most ``BUCKET_ROWS`` rows is one bucket read straight into memory (no
scratch).  Also :func:`packed_prefix_groups`, the prefix groups from packed patterns.

May import: numpy, :mod:`mpi_enum.io.reader` (through the Result it is handed).
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

#: rows of one bucket (on average): a file with more rows is split into scratch buckets
BUCKET_ROWS = 1 << 20
_MIX = np.uint64(0x9E3779B97F4A7C15)


def first_layer_hash(packed, n_bits):
    """A 64-bit hash (n,) of the first ``n_bits`` pattern bits of every packed row."""
    nb = (int(n_bits) + 7) // 8
    h = np.zeros(len(packed), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(nb):
            col = packed[:, j]
            if j == nb - 1 and n_bits % 8:
                col = col & np.uint8((0xFF << (8 - n_bits % 8)) & 0xFF)
            h = (h ^ col.astype(np.uint64)) * _MIX
            h ^= h >> np.uint64(29)
    return h


def packed_prefix_groups(packed, n_bits):
    """Group ids (n,) of the rows by their first ``n_bits`` bits (packed rows) and the number of
    groups: the same as :func:`mpi_enum.post.geometry.prefix_groups` on the unpacked bits."""
    n = len(packed)
    if n_bits == 0 or n == 0:
        return np.zeros(n, np.int64), (1 if n else 0)
    nb = (int(n_bits) + 7) // 8
    pk = np.array(packed[:, :nb], dtype=np.uint8, copy=True)
    if n_bits % 8:
        pk[:, -1] &= np.uint8((0xFF << (8 - n_bits % 8)) & 0xFF)
    v = np.ascontiguousarray(pk).view(np.dtype((np.void, nb))).ravel()
    _, inv = np.unique(v, return_inverse=True)
    inv = inv.ravel()
    return inv.astype(np.int64), int(inv.max()) + 1


def n_buckets(n, rows=None):
    rows = int(rows or BUCKET_ROWS)
    return 1 if n <= rows else int(2 * -(-n // rows))


def buckets(res, names=("pattern",), rows=None, part=None):
    """Yield ``(b, B, {name: array, "row": global row indices})`` for each bucket ``b`` of ``B``
    (rows of one first-layer pattern are always in the same bucket; within a bucket rows keep
    their file order).  ``part = (r, P)``: only the buckets ``b = r mod P`` (one process's share;
    every process still reads the whole file, but writes and holds only its own buckets)."""
    B = n_buckets(res.n, rows)
    r, P = part if part is not None else (0, 1)
    w0 = int(res.widths[0]) if res.widths else 0
    if B == 1:
        if r != 0:
            return
        parts = {k: [] for k in names}
        for s, ch in res.chunks(tuple(dict.fromkeys(("pattern",) + tuple(names)))):
            for k in names:
                parts[k].append(ch[k])
        out = {k: (np.concatenate(v) if v else _empty(res, k)) for k, v in parts.items()}
        out["row"] = np.arange(res.n, dtype=np.int64)
        yield 0, 1, out
        return
    tmp = tempfile.mkdtemp(prefix="mpi_enum_buckets_")
    try:
        cols = tuple(names) + ("row",)
        mine = [b for b in range(B) if b % P == r]
        files = {(b, k): open(os.path.join(tmp, f"{b}.{k}"), "wb", buffering=0) for b in mine for k in cols}
        shapes = {}
        for s, ch in res.chunks(tuple(dict.fromkeys(("pattern",) + tuple(names)))):
            ch["row"] = np.arange(s, s + len(ch["pattern"]), dtype=np.int64)
            which = (first_layer_hash(ch["pattern"], w0) % np.uint64(B)).astype(np.int64)
            order = np.argsort(which, kind="stable")
            cuts = np.searchsorted(which[order], np.arange(B + 1))
            for k in cols:
                a = np.ascontiguousarray(ch[k][order])
                shapes[k] = (a.dtype, a.shape[1:])
                for b in mine:
                    if cuts[b + 1] > cuts[b]:
                        a[cuts[b]:cuts[b + 1]].tofile(files[(b, k)])
        for fh in files.values():
            fh.close()
        for b in mine:
            out = {}
            for k in cols:
                p = os.path.join(tmp, f"{b}.{k}")
                dt, tail = shapes.get(k, (np.int64, ()))
                out[k] = np.fromfile(p, dtype=dt).reshape((-1,) + tuple(tail))
                os.unlink(p)
            yield b, B, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _empty(res, k):
    cols = {"pattern": ((res.N + 7) // 8, np.uint8), "interior_point": (res.d, np.float64),
            "radius": (None, np.float64), "affine_rank": (res.L, np.int64)}[k]
    return np.zeros((0,) if cols[0] is None else (0, cols[0]), cols[1])
