"""Engine output -> result rows: the one conversion from the engine's domain coordinates
(bits, centre ``y``, radius in ``y``, ranks) to what the result file stores (packed pattern,
interior point and radius in input coordinates, ranks).

May import: numpy.
"""
from __future__ import annotations

import numpy as np


def region_row(domain, bits, yc, r, ranks):
    """Engine output (domain coordinates) -> a result row (packed pattern, x, radius in x, ranks)."""
    return np.packbits(np.frombuffer(bits, dtype=np.uint8)), domain.to_x(yc), r * domain.rscale, ranks


def region_rows(domain, bits, Y, r, ranks):
    """The same for a batch: bits (n, N) 0/1, Y (n, k), r (n,), ranks (n, L)."""
    return (np.packbits(np.asarray(bits, dtype=np.uint8), axis=1), domain.to_x(Y),
            np.asarray(r) * domain.rscale, ranks)



class Recorder:
    """The engine's emit callbacks (``emit`` and ``emit_batch``): converts regions to result rows,
    appends them to the RegionBuffer ``buf`` (if any) and, with ``keep``, holds them until
    :meth:`take` (the checkpoint journal commits them with their work item).  ``row_dtype``:
    :meth:`mpi_enum.io.buffer.RegionBuffer.dtype` of the problem."""

    def __init__(self, domain, row_dtype, buf=None, keep=True):
        self.dom = domain
        self.buf = buf
        self.keep = keep
        self.dtype = row_dtype
        self._rows = []

    def __call__(self, bits, yc, r, ranks):
        row = region_row(self.dom, bits, yc, r, ranks)
        if self.buf is not None:
            self.buf.append(*row)
        if self.keep:
            self._rows.append(tuple(np.asarray(a)[None] for a in row))

    def batch(self, bits, Y, r, ranks):
        """Many regions at once (the engines' ``emit_batch``)."""
        rows = region_rows(self.dom, bits, Y, r, ranks)
        if self.buf is not None:
            self.buf.extend(*rows)
        if self.keep:
            self._rows.append(rows)

    def take(self) -> np.ndarray:
        """The rows emitted since the last call, as a structured array; clears them."""
        n = sum(len(p[2]) for p in self._rows)
        rows = np.empty(n, dtype=self.dtype)
        if n:
            for j, name in enumerate(("pattern", "point", "radius", "rank")):
                rows[name] = np.concatenate([np.asarray(p[j]) for p in self._rows])
        self._rows = []
        return rows
