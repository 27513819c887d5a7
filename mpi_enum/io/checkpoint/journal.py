"""The per-rank append-only journal: checksummed frames, its writer (:class:`Journal`) and
its reader (:func:`read_journal`), which verifies every record and its rows."""
from __future__ import annotations

import json
import os
import zlib
from array import array
from dataclasses import dataclass, field

import numpy as np

from ...engine.work import WorkItem
from .layout import CheckpointError, FORMAT, FORMAT_VERSION, KIND_DONE, KIND_HEADER, KIND_SYNC, MAX_PAYLOAD, Shape, _DONE, _FRAME, _SYNC, encode_items, generation_dir, item_key, item_keys

# ----------------------------------------------------------------------------- the journal (writer)

def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class Journal:
    """One rank's append-only journal and regions file for one generation.

    Writes go straight to the OS (``os.write``, no user-space buffer), so a killed process loses
    nothing it has committed; :meth:`flush` adds the fsync (power loss) and a sync marker.

    ``defer``: the files are not created yet; the commits are encoded exactly as they would be
    written and held in memory (:attr:`pending_bytes`) until :meth:`materialize` (also called by
    :meth:`flush` and :meth:`close`) creates the files and writes them, regions before journal
    frames, after which writes go straight to the OS again.  ``close(discard=True)`` drops them
    unwritten (a complete run whose checkpoint is removed anyway).  Until then a killed process
    loses the deferred commits (a resume explores their items again: nothing is counted twice).
    """

    def __init__(self, ckdir, generation, rank, shape: Shape, defer=False):
        self.shape = shape
        self.generation = int(generation)
        self.rank = int(rank)
        gdir = generation_dir(ckdir, generation)
        self.journal_path = os.path.join(gdir, f"rank{rank}.journal")
        self.regions_path = os.path.join(gdir, f"rank{rank}.regions")
        self.dtype = shape.row_dtype
        self._rfd = self._jfd = None
        self._pending = ([], []) if defer else None  # (regions bytes, journal frames) not yet written
        self.pending_bytes = 0
        self.rows_written = 0
        self.records = 0
        self._dirty = False
        hdr = {"format": FORMAT + ".journal", "format_version": FORMAT_VERSION, "generation": self.generation,
               "rank": self.rank, "N": shape.N, "k": shape.k, "L": shape.L, "d": shape.d,
               "item_floats": shape.item_floats, "row_bytes": self.dtype.itemsize}
        self.broken = False  # a write failed (full disk, I/O error): nothing more is written
        if not defer:
            self._open()
        self._put(1, _frame(bytes([KIND_HEADER]) + json.dumps(hdr, sort_keys=True).encode()))

    def _open(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._rfd = os.open(self.regions_path, flags, 0o644)
        self._jfd = os.open(self.journal_path, flags, 0o644)

    @property
    def deferred(self) -> bool:
        """Commits are held in memory: the files do not exist yet."""
        return self._pending is not None

    def _put(self, which, data):
        """Append ``data`` to the regions file (``which`` 0) or the journal (1), or hold it."""
        if self._pending is not None:
            self._pending[which].append(data)
            self.pending_bytes += len(data)
        else:
            self._w(self._jfd if which else self._rfd, data)

    def materialize(self):
        """Create the files and write the deferred commits (no-op when not deferred)."""
        if self._pending is None:
            return
        rows, frames = self._pending
        self._pending = None
        self.pending_bytes = 0
        try:
            self._open()
        except OSError as exc:
            self.broken = True
            raise OSError(exc.errno, f"cannot write the checkpoint ({exc.strerror})", exc.filename) from None
        if rows:
            self._w(self._rfd, b"".join(rows))
        self._w(self._jfd, b"".join(frames))

    def _w(self, fd, data, sync=False):
        """Write (or fsync) ``fd``; an OSError names the file and stops all further writes, so
        that a torn frame stays the journal's last and the reader ignores it."""
        if self.broken:
            raise OSError(f"{self.journal_path}: the journal is closed after a write error")
        try:
            if sync:
                os.fsync(fd)
            else:
                _write_all(fd, data)
        except OSError as exc:
            self.broken = True
            path = self.regions_path if fd == self._rfd else self.journal_path
            raise OSError(exc.errno, f"cannot write the checkpoint ({exc.strerror})", path) from None

    # -- the two halves of a commit (kept separate so tests can kill in between)
    def append_rows(self, rows):
        """Append region rows; returns (row offset, count, crc32 of the bytes)."""
        off = self.rows_written
        if rows is None or len(rows) == 0:
            return off, 0, 0
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        self._put(0, data)
        n = len(rows)
        self.rows_written += n
        self._dirty = True
        return off, n, zlib.crc32(data)

    def append_record(self, done, children, row_off, n_rows, rows_crc, layer_counts_delta=None, stats_delta=None):
        sh = self.shape
        d_arr = encode_items(done, sh)
        c_arr = encode_items(children, sh)
        lc = np.zeros(sh.L, np.int64) if layer_counts_delta is None else np.asarray(layer_counts_delta, np.int64)
        if lc.shape != (sh.L,):
            raise ValueError(f"layer_counts_delta must have shape ({sh.L},), got {lc.shape}")
        st = json.dumps(stats_delta, sort_keys=True).encode() if stats_delta else b""
        payload = b"".join([_DONE.pack(KIND_DONE, len(d_arr), len(c_arr), len(st), int(row_off), int(n_rows),
                                       int(rows_crc)),
                            d_arr.tobytes(), c_arr.tobytes(), lc.tobytes(), st])
        self._put(1, _frame(payload))
        self.records += 1
        self._dirty = True

    def item_done(self, item, children, regions_rows=None, layer_counts_delta=None, stats_delta=None):
        """Commit a finished item (or a list of items, e.g. the static expansion's roots).

        ``children``: the unexplored frontier (they become open items); ``regions_rows``: the
        rows emitted while exploring it (structured array of :attr:`dtype`); the layer-count and
        stats deltas of this exploration.  Items listed both as done and as children cancel out.
        """
        single = isinstance(item, WorkItem)
        done = [item] if single else list(item)
        children = list(children)
        if not single and done and children:  # (a node is never its own child)
            dk = {item_key(it) for it in done}
            ck = {item_key(it) for it in children}
            both = dk & ck
            if both:
                done = [it for it in done if item_key(it) not in both]
                children = [it for it in children if item_key(it) not in both]
        n_rows = 0 if regions_rows is None else len(regions_rows)
        if not done and not children and n_rows == 0:
            return
        if not done:
            raise ValueError("a journal record needs at least one finished item")
        off, n, crc = self.append_rows(regions_rows)
        self.append_record(done, children, off, n, crc, layer_counts_delta, stats_delta)

    def flush(self, fsync=True):
        """Make everything durable: fsync the regions then the journal, then a sync marker
        (deferred commits are written first)."""
        if self._pending is not None and not self.broken:
            self.materialize()
        if not self._dirty or self._jfd is None or self.broken:
            return
        if fsync:
            self._w(self._rfd, None, sync=True)
            self._w(self._jfd, None, sync=True)
            self._w(self._jfd, _frame(_SYNC.pack(KIND_SYNC, self.rows_written)))
        self._dirty = False

    def close(self, fsync=True, discard=False):
        """Flush (``fsync``) and close.  ``discard``: deferred commits are dropped unwritten."""
        if self._pending is not None:
            if discard:
                self._pending = None
                self.pending_bytes = 0
                return
        if self._jfd is None and (self._pending is None or self.broken):
            return
        try:
            if not self.broken:
                self.flush(fsync)  # writes the deferred commits first
                if fsync:
                    self._w(self._jfd, None, sync=True)
        finally:
            self._pending = None
            for fd in (self._jfd, self._rfd):
                if fd is not None:
                    os.close(fd)
            self._jfd = self._rfd = None


# ----------------------------------------------------------------------------- the journal (reader)

class Records:
    """The committed records of one journal, column-wise, with just what the replay needs: no
    Python object per record, and items as keys (:func:`item_keys`), not rows, so that the
    10^5 records of a 10^8-region run replay in a few tens of MB.  Record ``j`` finished the
    items ``done_keys[done_ptr[j]:done_ptr[j + 1]]`` and created ``child_keys[child_ptr[j]:
    child_ptr[j + 1]]`` (each child's encoded row at byte ``child_pos`` of the journal:
    :meth:`child_rows`); its rows are ``row_off[j]``, ``n_rows[j]`` of the regions file, its
    layer counts ``lc[j]``, its statistics :meth:`stats` (JSON, parsed on demand)."""

    _COLS = ("index", "nd", "nc", "ns", "row_off", "n_rows", "items_at")

    def __init__(self, path, shape: Shape):
        self.path, self._nf, self._k, self._L = path, shape.item_floats, shape.k, shape.L
        self._done, self._children, self._lc, self._st = bytearray(), bytearray(), bytearray(), bytearray()
        self._cols = {c: array("q") for c in self._COLS}

    def add(self, payload, at, index):
        """Append the DONE record ``payload`` (a frame's payload found at byte ``at`` of the journal)."""
        _, nd, nc, ns, row_off, n_rows, _ = _DONE.unpack_from(payload, 0)
        nf, L = self._nf, self._L
        p = _DONE.size
        self._done += payload[p:p + 8 * nf * nd]
        p += 8 * nf * nd
        self._children += payload[p:p + 8 * nf * nc]
        p += 8 * nf * nc
        self._lc += payload[p:p + 8 * L]
        self._st += payload[p + 8 * L:p + 8 * L + ns]
        for c, v in zip(self._COLS, (index, nd, nc, ns, row_off, n_rows, at + _DONE.size + 8 * nf * nd)):
            self._cols[c].append(int(v))

    def finish(self):
        """Freeze into numpy arrays (called once, by :func:`read_journal`)."""
        nf = self._nf
        col = {c: np.array(a, np.int64) for c, a in self._cols.items()}
        self.n = len(col["index"])
        self.index, self.row_off, self.n_rows = col["index"], col["row_off"], col["n_rows"]
        self.done_ptr = np.concatenate([[0], np.cumsum(col["nd"])]).astype(np.int64)
        self.child_ptr = np.concatenate([[0], np.cumsum(col["nc"])]).astype(np.int64)
        self._st_ptr = np.concatenate([[0], np.cumsum(col["ns"])]).astype(np.int64)
        self.done_keys = item_keys(np.frombuffer(self._done, np.float64).reshape(-1, nf), self._k)
        self.child_keys = item_keys(np.frombuffer(self._children, np.float64).reshape(-1, nf), self._k)
        self.child_pos = (np.repeat(col["items_at"], col["nc"])
                          + 8 * nf * (np.arange(len(self.child_keys)) - np.repeat(self.child_ptr[:-1], col["nc"])))
        self.lc = np.frombuffer(self._lc, np.int64).reshape(-1, self._L)
        self._st = bytes(self._st)
        self._done = self._children = self._lc = self._cols = None
        return self

    def stats(self, j) -> dict:
        a, b = int(self._st_ptr[j]), int(self._st_ptr[j + 1])
        return json.loads(self._st[a:b].decode()) if b > a else {}

    def child_rows(self, which) -> np.ndarray:
        """The encoded rows of children ``which`` (indices into ``child_keys``), read again from
        the journal."""
        nb = 8 * self._nf
        out = np.zeros((len(which), self._nf))
        with open(self.path, "rb") as f:
            for i, pos in enumerate(self.child_pos[np.asarray(which, np.int64)].tolist()):
                f.seek(pos)
                buf = f.read(nb)
                if len(buf) != nb:
                    raise CheckpointError(f"{self.path}: the journal changed while the checkpoint was loaded")
                out[i] = np.frombuffer(buf, np.float64)
        return out


@dataclass
class JournalScan:
    path: str
    header: dict | None
    records: Records
    valid_bytes: int  # length of the committed prefix
    file_bytes: int
    notes: list = field(default_factory=list)


def _frames(f, limit):
    """Pass 1 over a journal: (start, length, kind) of each frame of the valid prefix (a bad
    length or crc ends it), reading one frame at a time."""
    starts, lens, kinds = array("q"), array("q"), array("B")
    pos = 0
    while limit is None or pos + _FRAME.size <= limit:
        head = f.read(_FRAME.size)
        if len(head) < _FRAME.size:
            break
        n, crc = _FRAME.unpack(head)
        end = pos + _FRAME.size + n
        if n == 0 or n > MAX_PAYLOAD or (limit is not None and end > limit):
            break
        payload = f.read(n)
        if len(payload) != n or zlib.crc32(payload) != crc:
            break
        starts.append(pos + _FRAME.size)
        lens.append(n)
        kinds.append(payload[0])
        pos = end
    return starts, lens, kinds


def read_journal(path, regions_path, shape: Shape, limit=None, verify="all") -> JournalScan:
    """Parse the committed prefix of one journal (at most ``limit`` bytes).

    A frame with a bad length or crc ends the prefix (a torn tail).  A record whose rows are not
    all in the regions file, or (``verify="tail"``: only after the last sync marker; ``"all"``, the default:
    everywhere) whose rows fail their crc, ends it too.  Reads a frame at a time (twice: to find
    the last sync marker, then to parse), never the whole journal.
    """
    try:
        size = os.path.getsize(path) if limit is None else min(int(limit), os.path.getsize(path))
        f = open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable journal ({exc.strerror})") from None
    try:
        rsize = os.path.getsize(regions_path)
    except OSError:
        rsize = 0
    itemsize = shape.row_dtype.itemsize
    rows_in_file = rsize // itemsize
    sh = shape
    nf = sh.item_floats
    records = Records(path, sh)
    scan = JournalScan(path, None, records, 0, size)
    rf = None
    try:
        starts, lens, kinds = _frames(f, None if limit is None else int(limit))
        if not starts or kinds[0] != KIND_HEADER:
            if size:
                scan.notes.append(f"{os.path.basename(path)}: no valid header; ignored ({size} bytes)")
            records.finish()
            return scan

        def payload(i):
            f.seek(starts[i])
            pl = f.read(lens[i])
            if len(pl) != lens[i]:
                raise CheckpointError(f"{path}: the journal shrank while it was read")
            return pl

        try:
            hdr = json.loads(payload(0)[1:].decode())
        except ValueError:
            raise CheckpointError(f"{path}: bad journal header") from None
        for key in ("N", "k", "L", "d"):
            if hdr.get(key) != getattr(sh, key):
                raise CheckpointError(f"{path}: journal header {key}={hdr.get(key)} differs from the problem's "
                                      f"{getattr(sh, key)}")
        scan.header = hdr
        valid_end = starts[0] + lens[0]
        last_sync = max([i for i, kd in enumerate(kinds) if kd == KIND_SYNC], default=-1)
        for i in range(1, len(starts)):
            kind, end = kinds[i], starts[i] + lens[i]
            if kind == KIND_SYNC:
                valid_end = end
                continue
            if kind != KIND_DONE:
                raise CheckpointError(f"{path}: unknown journal record kind {kind}")
            pl = payload(i)
            _, nd, nc, ns, row_off, n_rows, rows_crc = _DONE.unpack_from(pl, 0)
            if _DONE.size + 8 * nf * (nd + nc) + 8 * sh.L + ns != len(pl):
                raise CheckpointError(f"{path}: journal record {i} has a bad size")
            if row_off + n_rows > rows_in_file:
                scan.notes.append(f"{os.path.basename(path)}: record {i} points past the end of the regions "
                                  f"file; it and everything after it are ignored")
                break
            if n_rows and (verify == "all" or (verify == "tail" and i > last_sync)):
                if rf is None:
                    rf = open(regions_path, "rb")
                rf.seek(row_off * itemsize)
                if zlib.crc32(rf.read(n_rows * itemsize)) != rows_crc:
                    scan.notes.append(f"{os.path.basename(path)}: record {i} has damaged region rows; it and "
                                      f"everything after it are ignored")
                    break
            records.add(pl, starts[i], i)
            valid_end = end
    finally:
        f.close()
        if rf is not None:
            rf.close()
    records.finish()
    scan.valid_bytes = valid_end
    if valid_end < size:
        scan.notes.append(f"{os.path.basename(path)}: ignored an uncommitted tail of {size - valid_end} bytes")
    return scan
