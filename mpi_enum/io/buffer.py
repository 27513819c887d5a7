"""The per-rank region store: :class:`RegionBuffer`, append-only, with bounded memory.

Rows beyond ``spill_bytes`` go to a scratch file in ``spill_dir`` (default ``$TMPDIR``).  The
scratch file is *anonymous*: it is unlinked the moment it is created and read back through its
open descriptor, so it disappears with the process however the process ends (an error, an
MPI abort, ``kill -9``) and no ``mpi_enum_spill_*.bin`` is ever left behind.  A write error
(full disk, quota) raises OSError naming ``spill_dir``.

May import: numpy.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

BATCH = 1 << 16  # regions per batch of :meth:`RegionBuffer.batches` (and per collective write)


class RegionBuffer:
    """Append-only per-rank region store with bounded memory (spills to ``spill_dir``)."""

    def __init__(self, pattern_bytes, d, L, spill_dir=None, spill_bytes=16 << 20):
        self.pb, self.d, self.L = int(pattern_bytes), int(d), int(L)
        self.row_bytes = self.pb + 8 * self.d + 8 + 2 * self.L
        self.cap = max(1024, int(spill_bytes) // self.row_bytes)
        self._new_chunk()
        self.count = 0
        self.spill_dir = spill_dir
        self._spill_fd = None
        self._spill_where = None
        self.spilled = 0

    @classmethod
    def of_arrays(cls, pat, pts, rad, rank):
        """A buffer that holds these rows as they are (no copy, no spill file): for writing rows
        that are already in memory (the Python API's ``save``).  Not for appending.  ``pts``
        None: no points (``points="none"``; rows of zero width)."""
        pat = np.ascontiguousarray(pat, dtype=np.uint8)
        pts = np.ascontiguousarray(np.zeros((len(pat), 0)) if pts is None else pts, dtype=np.float64)
        rad = np.ascontiguousarray(rad, dtype=np.float64).reshape(-1)
        rank = np.ascontiguousarray(rank, dtype=np.int16)
        buf = cls.__new__(cls)
        buf.pb, buf.d, buf.L = pat.shape[1], pts.shape[1], rank.shape[1]
        buf.row_bytes = buf.pb + 8 * buf.d + 8 + 2 * buf.L
        buf.pat, buf.pts, buf.rad, buf.rank = pat, pts, rad, rank
        buf.cap = buf.n = buf.count = len(rad)
        buf.spill_dir = buf._spill_fd = buf._spill_where = None
        buf.spilled = 0
        return buf

    def _new_chunk(self):
        self.pat = np.zeros((self.cap, self.pb), np.uint8)
        self.pts = np.zeros((self.cap, self.d), np.float64)
        self.rad = np.zeros(self.cap, np.float64)
        self.rank = np.zeros((self.cap, self.L), np.int16)
        self.n = 0

    def append(self, packed_pattern, point, radius, ranks):
        i = self.n
        self.pat[i] = packed_pattern
        self.pts[i] = point
        self.rad[i] = radius
        self.rank[i] = ranks
        self.n += 1
        self.count += 1
        if self.n == self.cap:
            self._spill()

    def extend(self, pat, pts, rad, rank):
        """Append many rows at once (arrays of equal length)."""
        n, s = len(rad), 0
        while s < n:
            m = min(n - s, self.cap - self.n)
            i = self.n
            self.pat[i : i + m] = pat[s : s + m]
            self.pts[i : i + m] = pts[s : s + m]
            self.rad[i : i + m] = rad[s : s + m]
            self.rank[i : i + m] = rank[s : s + m]
            self.n += m
            self.count += m
            s += m
            if self.n == self.cap:
                self._spill()

    def _record(self, n):
        rec = np.empty(n, dtype=self.dtype())
        rec["pattern"] = self.pat[:n]
        rec["point"] = self.pts[:n]
        rec["radius"] = self.rad[:n]
        rec["rank"] = self.rank[:n]
        return rec

    def dtype(self):
        return np.dtype([("pattern", np.uint8, (self.pb,)), ("point", np.float64, (self.d,)),
                         ("radius", np.float64), ("rank", np.int16, (self.L,))])

    def _spill(self):
        if self.n == 0:
            return
        where = self.spill_dir or tempfile.gettempdir()
        try:
            if self._spill_fd is None:
                os.makedirs(where, exist_ok=True)
                fd, path = tempfile.mkstemp(prefix="mpi_enum_spill_", suffix=".bin", dir=where)
                os.unlink(path)  # anonymous from now on: gone with the process, whatever happens
                self._spill_fd, self._spill_where = fd, where
            data = memoryview(self._record(self.n).tobytes())
            while data:
                data = data[os.write(self._spill_fd, data):]
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write a spill file ({exc.strerror})", where) from None
        self.spilled += self.n
        self.n = 0

    def n_batches(self, size=BATCH):
        """How many batches :meth:`batches` yields: the spilled rows and the rows in memory are
        batched separately, so this can exceed ceil(count / size)."""
        return -(-self.spilled // size) + -(-self.n // size)

    def batches(self, size=BATCH):
        """Yield (pattern, point, radius, rank) arrays of at most ``size`` regions, in order
        (:meth:`n_batches` of them)."""
        if self._spill_fd is not None:
            dt = self.dtype()
            left, pos = self.spilled, 0
            while left > 0:
                m = min(size, left)
                nbytes = m * dt.itemsize
                raw = np.empty(nbytes, np.uint8)  # read straight into the batch: no intermediate copies
                view, got = memoryview(raw), 0
                while got < nbytes:
                    k = os.preadv(self._spill_fd, [view[got:]], pos + got)
                    if not k:
                        raise OSError(f"{self._spill_where}: the spill file is shorter than written")
                    got += k
                rec = raw.view(dt)
                pos += nbytes
                left -= m
                yield rec["pattern"], rec["point"], rec["radius"], rec["rank"]
        for s in range(0, self.n, size):
            e = min(self.n, s + size)
            yield self.pat[s:e], self.pts[s:e], self.rad[s:e], self.rank[s:e]

    def arrays(self):
        """Everything as four arrays (for tests and small results)."""
        parts = list(self.batches())
        if not parts:
            return (np.zeros((0, self.pb), np.uint8), np.zeros((0, self.d)), np.zeros(0),
                    np.zeros((0, self.L), np.int16))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))

    def close(self):
        """Release the scratch file (idempotent)."""
        if self._spill_fd is not None:
            try:
                os.close(self._spill_fd)
            except OSError:
                pass
            self._spill_fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
